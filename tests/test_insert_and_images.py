"""`suffix` (fill in the middle) and images, in every route that takes them.

`suffix` works as in Ollama: a model whose TEMPLATE uses `.Suffix` has the `insert` capability
and the template is run with only `.Prompt` and `.Suffix`; any other model answers 400. SmolLM2's
vocabulary has StarCoder's `<fim_prefix>`/`<fim_suffix>`/`<fim_middle>` tokens, so `fimmy` (the
demo weights with a Qwen2.5-Coder-style template) is a real FIM prompt. Herd loads no image
projectors, so images are a 400 naming the model, in each dialect's error shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.stack import Stack

FIM_TEMPLATE = ("{{- if .Suffix }}<fim_prefix>{{ .Prompt }}<fim_suffix>{{ .Suffix }}<fim_middle>"
                "{{- else }}{{ .Prompt }}{{- end }}")
PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(2, 3))  # prints the sum of the two numbers\n"
GREEDY: dict[str, Any] = {"temperature": 0, "num_predict": 8}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def http(herd: Stack) -> httpx.Client:
    return httpx.Client(base_url=herd.base_url, timeout=120)


@pytest.fixture(scope="module")
def fimmy(http: httpx.Client) -> Iterator[str]:
    created = http.post("/api/create", json={"model": "fimmy", "from": "smollm2:135m", "template": FIM_TEMPLATE,
                                             "stream": False})
    assert created.json() == {"status": "success"}
    yield "fimmy"
    http.request("DELETE", "/api/delete", json={"model": "fimmy"})


@pytest.fixture(scope="module")
def client(herd: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", _strict_response_validation=True,
                         max_retries=0)


def _generate(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/api/generate", json={"stream": False, "options": GREEDY, **body})


def test_a_suffix_template_gives_the_insert_capability(http: httpx.Client, fimmy: str) -> None:
    assert http.post("/api/show", json={"model": fimmy}).json()["capabilities"] == ["completion", "insert"]
    assert "insert" not in http.post("/api/show", json={"model": "smollm2:135m"}).json()["capabilities"]


def test_suffix_is_placed_by_the_template(http: httpx.Client, fimmy: str) -> None:
    plain = _generate(http, model=fimmy, prompt=PREFIX).json()
    filled = _generate(http, model=fimmy, prompt=PREFIX, suffix=SUFFIX).json()
    assert filled["done"] is True and filled["eval_count"] > 0
    # The three FIM tokens and the suffix's tokens are in the prompt; the plain prompt is bare.
    assert filled["prompt_eval_count"] >= plain["prompt_eval_count"] + 3 + 15
    streamed = [line for line in http.post("/api/generate", json={
        "model": fimmy, "prompt": PREFIX, "suffix": SUFFIX, "options": GREEDY}).iter_lines() if line]
    assert len(streamed) >= 2


def test_a_request_template_with_suffix_works_on_any_model(http: httpx.Client, fimmy: str) -> None:
    by_model = _generate(http, model=fimmy, prompt=PREFIX, suffix=SUFFIX).json()
    by_request = _generate(http, model="smollm2:135m", prompt=PREFIX, suffix=SUFFIX, template=FIM_TEMPLATE).json()
    assert by_request["response"] == by_model["response"]
    assert by_request["prompt_eval_count"] == by_model["prompt_eval_count"]


def test_suffix_without_insert_is_a_400(http: httpx.Client) -> None:
    answer = _generate(http, model="smollm2:135m", prompt=PREFIX, suffix=SUFFIX)
    assert answer.status_code == 400
    assert answer.json() == {"error": '"smollm2:135m" does not support insert'}
    raw = _generate(http, model="smollm2:135m", prompt=PREFIX, suffix=SUFFIX, raw=True)
    assert raw.status_code == 400 and "raw mode does not support suffix" in raw.json()["error"]


def test_openai_completions_suffix(client: openai.OpenAI, http: httpx.Client, fimmy: str) -> None:
    completion = client.completions.create(model=fimmy, prompt=PREFIX, suffix=SUFFIX, max_tokens=8, temperature=0)
    expected = _generate(http, model=fimmy, prompt=PREFIX, suffix=SUFFIX).json()
    assert completion.choices[0].text == expected["response"]
    assert completion.usage is not None and completion.usage.prompt_tokens == expected["prompt_eval_count"]
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model="smollm2:135m", prompt=PREFIX, suffix=SUFFIX, max_tokens=8)
    assert refused.value.body["param"] == "suffix"  # type: ignore[index]
    assert "does not support insert" in refused.value.message


def test_images_are_a_400_in_ollama_routes(http: httpx.Client) -> None:
    generate = _generate(http, model="smollm2:135m", prompt="What is this?", images=[PIXEL])
    chat = http.post("/api/chat", json={"model": "smollm2:135m", "stream": False, "messages": [
        {"role": "user", "content": "What is this?", "images": [PIXEL]}]})
    for answer in (generate, chat):
        assert answer.status_code == 400
        assert answer.json()["error"].startswith('"smollm2:135m" does not support vision')


def test_images_are_a_400_in_openai_routes(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model="smollm2:135m", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]}])
    assert "does not support vision" in chat.value.message
    with pytest.raises(openai.BadRequestError) as responses:
        client.responses.create(model="smollm2:135m", input=[{"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}", "detail": "auto"}]}])
    assert "does not support vision" in responses.value.message
