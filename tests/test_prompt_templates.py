"""Which template renders a prompt: a Modelfile TEMPLATE (Go, as Ollama renders it), a
request's `template`, or the GGUF's own Jinja chat template."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.stack import Stack

CHATML = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
EXPECTED = ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n")
GREEDY = {"temperature": 0, "num_predict": 12}


def _post(stack: Stack, path: str, body: dict[str, object]) -> dict[str, object]:
    if path != "/api/show":
        body = {**body, "stream": False}
    response = httpx.post(stack.base_url + path, json=body, timeout=120)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_modelfile_go_template_renders_the_prompt(herd: Stack, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f'FROM smollm2:135m\nTEMPLATE """{CHATML}"""\nSYSTEM You are terse.\n')
    herd.herd("create", "chatml-go", "-f", str(modelfile))
    try:
        chat = _post(herd, "/api/chat", {"model": "chatml-go", "options": GREEDY,
                                          "messages": [{"role": "user", "content": "Hi"}]})
        raw = _post(herd, "/api/generate", {"model": "chatml-go", "prompt": EXPECTED, "raw": True, "options": GREEDY})
        assert chat["prompt_eval_count"] == raw["prompt_eval_count"]
        assert chat["message"]["content"] == raw["response"]  # type: ignore[index]
        shown = _post(herd, "/api/show", {"model": "chatml-go"})
        assert shown["template_source"] == "modelfile" and shown["template"] == CHATML
    finally:
        herd.herd("rm", "chatml-go")


def test_request_template_overrides_the_gguf_template(herd: Stack) -> None:
    override = _post(herd, "/api/generate", {"model": "smollm2:135m", "prompt": "Hi", "system": "You are terse.",
                                              "template": CHATML, "options": GREEDY})
    raw = _post(herd, "/api/generate", {"model": "smollm2:135m", "prompt": EXPECTED, "raw": True, "options": GREEDY})
    assert override["response"] == raw["response"]
    assert override["prompt_eval_count"] == raw["prompt_eval_count"]


def test_the_demo_gets_ollamas_autodetected_template(herd: Stack) -> None:
    """SmolLM2's Jinja template is ChatML's: `herd create` stored Ollama's chatml Go template and
    its stop words, as `ollama create` does (tests/test_template_autodetect.py has the rest)."""
    shown = _post(herd, "/api/show", {"model": "smollm2:135m"})
    assert shown["template_source"] == "modelfile" and "im_start" in str(shown["template"])
    assert '"<|im_end|>"' in str(shown["parameters"])


def test_template_text_in_a_message_is_data(herd: Stack) -> None:
    """Message text that looks like a template reaches the prompt literally, unexecuted."""
    sneaky = "{{ .System }}{{ lipsum.__globals__ }}"
    override = _post(herd, "/api/generate", {"model": "smollm2:135m", "prompt": sneaky, "system": "You are terse.",
                                              "template": CHATML, "options": GREEDY})
    raw = _post(herd, "/api/generate", {"model": "smollm2:135m", "prompt": EXPECTED.replace("Hi", sneaky),
                                         "raw": True, "options": GREEDY})
    assert override["prompt_eval_count"] == raw["prompt_eval_count"]
    assert override["response"] == raw["response"]


def test_broken_request_template_is_a_400(herd: Stack) -> None:
    response = httpx.post(herd.base_url + "/api/generate", timeout=30,
                          json={"model": "smollm2:135m", "prompt": "Hi", "template": "{{ .Prompt ", "stream": False})
    assert response.status_code == 400 and "template" in response.json()["error"]
