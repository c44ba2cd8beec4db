"""HERD_API_KEYS on a real stack: every route but `/` asks for a key, in each dialect's shape,
through the clients people use (openai SDK, ollama client, the herd CLI) and raw HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from gateway.api_keys import key_accepted, presented_key
from tests.stack import Stack, running_stack

KEYS = ("key-one-0123456789", "key-two-abcdefghij")


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("locked"), api_keys=",".join(KEYS)) as stack:
        yield stack


def _get(stack: Stack, path: str, headers: dict[str, str] | list[tuple[str, str]] | None = None) -> httpx.Response:
    return httpx.get(stack.base_url + path, headers=headers, timeout=30)


@pytest.mark.parametrize("headers", [
    None,
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Basic {KEYS[0]}"},
    {"Authorization": f"Bearer {KEYS[0][:-1]}"},  # a prefix
    {"Authorization": f"Bearer {KEYS[0]}x"},  # a longer key
    {"Authorization": KEYS[0]},
    [("Authorization", f"Bearer {KEYS[0]}"), ("Authorization", f"Bearer {KEYS[1]}")],  # two headers
    {"Authorization": "Bearer " + "x" * 100_000},
])
def test_wrong_or_missing_keys_get_401_in_each_dialect(locked: Stack, headers: object) -> None:
    ollama_answer = _get(locked, "/api/tags", headers)  # type: ignore[arg-type]
    assert ollama_answer.status_code == 401 and ollama_answer.json()["error"].startswith("unauthorized")
    openai_answer = _get(locked, "/v1/models", headers)  # type: ignore[arg-type]
    assert openai_answer.status_code == 401 and openai_answer.headers["www-authenticate"].startswith("Bearer")
    assert openai_answer.json()["error"]["type"] == "authentication_error"


def test_every_route_but_the_root_asks_for_a_key(locked: Stack, model_name: str) -> None:
    assert _get(locked, "/").text == "Ollama is running"
    for method, path in [("POST", "/api/generate"), ("POST", "/api/show"), ("GET", "/api/ps"),
                         ("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings"), ("GET", "/metrics"),
                         ("HEAD", "/api/blobs/sha256:" + "0" * 64), ("GET", "/no/such/route")]:
        answer = httpx.request(method, locked.base_url + path, json={"model": model_name}, timeout=30)
        assert answer.status_code == 401, path
    assert _get(locked, f"/api/tags?api_key={KEYS[0]}").status_code == 401  # not in the query string


def test_either_key_in_any_scheme_case_opens_every_route(locked: Stack, model_name: str) -> None:
    for key, scheme in ((KEYS[0], "Bearer"), (KEYS[1], "bearer")):
        assert _get(locked, "/api/tags", {"Authorization": f"{scheme} {key}"}).status_code == 200
    shown = httpx.post(locked.base_url + "/api/show", json={"model": model_name}, timeout=30,
                       headers={"Authorization": f"Bearer {KEYS[1]}"})
    assert shown.status_code == 200


def test_cors_preflight_needs_no_key(locked: Stack) -> None:
    answer = httpx.options(locked.base_url + "/api/chat", timeout=30, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"})
    assert answer.status_code in (200, 204)


def test_the_clients_send_their_key(locked: Stack, model_name: str) -> None:
    sdk = openai.OpenAI(base_url=locked.base_url + "/v1", api_key=KEYS[0], _strict_response_validation=True,
                        max_retries=0)
    assert model_name in [m.id for m in sdk.models.list()]
    reply = sdk.chat.completions.create(model=model_name, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert reply.choices[0].message.content is not None
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=locked.base_url + "/v1", api_key="wrong", max_retries=0).models.list()
    client = ollama.Client(host=locked.base_url, headers={"Authorization": f"Bearer {KEYS[1]}"})
    assert client.generate(model=model_name, prompt="Hi", options={"num_predict": 3}).done
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=locked.base_url).list()
    assert refused.value.status_code == 401


def test_the_cli_sends_herd_api_key(locked: Stack, model_name: str) -> None:
    refused = locked.herd("list", check=False)
    assert refused.returncode == 1 and "HERD_API_KEY" in refused.stderr
    locked.env["HERD_API_KEY"] = KEYS[0]
    try:
        assert model_name in locked.herd("list").stdout
        assert locked.herd("run", locked.bounded_model(), "Say hi").stdout.strip()
    finally:
        del locked.env["HERD_API_KEY"]


def test_presented_key_reading() -> None:
    assert presented_key([(b"authorization", b"Bearer abc")]) == "abc"
    assert presented_key([(b"authorization", b"BEARER abc")]) == "abc"
    assert presented_key([(b"authorization", b"Bearer")]) is None
    assert presented_key([]) is None
    assert key_accepted("abc", ("x", "abc")) and not key_accepted("ab", ("abc",)) and not key_accepted(None, ("a",))
