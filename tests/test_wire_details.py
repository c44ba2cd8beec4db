"""Wire details checked with raw HTTP: NDJSON lines, SSE framing, status codes, error bodies."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.stack import Stack


@pytest.fixture(scope="module")
def http(herd: Stack) -> httpx.Client:
    return httpx.Client(base_url=herd.base_url, timeout=60)


def test_root_answers_like_ollama(http: httpx.Client) -> None:
    assert http.get("/").text == "Ollama is running"
    assert http.head("/").status_code == 200
    assert "version" in http.get("/api/version").json()


def test_ndjson_stream_is_one_object_per_line(http: httpx.Client, model_name: str) -> None:
    body = {"model": model_name, "prompt": "Hello", "options": {"num_predict": 8, "temperature": 0}}
    with http.stream("POST", "/api/generate", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert all(line["done"] is False for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True and final["response"] == ""
    for field in ("done_reason", "total_duration", "load_duration", "prompt_eval_count",
                  "prompt_eval_duration", "eval_count", "eval_duration"):
        assert isinstance(final[field], int | str), field
    assert final["eval_count"] == 8 and final["done_reason"] == "length"
    assert final["created_at"].endswith("Z")


def test_stream_false_is_one_json_object(http: httpx.Client, model_name: str) -> None:
    response = http.post("/api/chat", json={"model": model_name, "stream": False,
                                            "messages": [{"role": "user", "content": "Hi"}],
                                            "options": {"num_predict": 4}})
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["done"] is True and body["message"]["role"] == "assistant"


def test_sse_stream_is_framed_and_ends_with_done(http: httpx.Client, model_name: str) -> None:
    body = {"model": model_name, "stream": True, "max_tokens": 6,
            "messages": [{"role": "user", "content": "Hi"}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == ""
    events = events[:-1]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event[len("data: "):]) for event in events[:-1]]
    assert len({chunk["id"] for chunk in chunks}) == 1
    # Sampled at /v1's default temperature, "Hi" may be answered within 6 tokens ("stop") or not.
    reasons = [chunk["choices"][0]["finish_reason"] for chunk in chunks]
    assert reasons[-1] in {"stop", "length"} and all(r is None for r in reasons[:-1])


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_malformed_json_is_a_400_in_ollama_shape(http: httpx.Client, path: str) -> None:
    response = http.post(path, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


def test_wrong_type_names_the_field(http: httpx.Client, model_name: str) -> None:
    response = http.post("/api/generate", json={"model": model_name, "prompt": 12})
    assert response.status_code == 400
    assert "prompt" in response.json()["error"]
    response = http.post("/v1/chat/completions", json={"model": model_name, "messages": "hi"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "messages" in error["message"]


def test_missing_model_and_unknown_fields_are_400s(http: httpx.Client, model_name: str) -> None:
    response = http.post("/api/chat", json={"messages": []})
    assert response.status_code == 400 and "model" in response.json()["error"]
    response = http.post("/api/generate", json={"model": model_name, "prompt": "x", "bogus": 1})
    assert response.status_code == 400 and "bogus" in response.json()["error"]
    response = http.post("/api/generate", json={"model": model_name, "prompt": "x", "options": {"top_k": "a"}})
    assert response.status_code == 400 and "top_k" in response.json()["error"]
    response = http.post("/api/generate", content=b"")
    assert response.status_code == 400


def test_unknown_model_404_in_both_shapes(http: httpx.Client) -> None:
    ollama_style = http.post("/api/generate", json={"model": "nope", "prompt": "x"})
    assert ollama_style.status_code == 404 and ollama_style.json() == {"error": "model 'nope' not found"}
    openai_style = http.post("/v1/completions", json={"model": "nope", "prompt": "x"})
    assert openai_style.status_code == 404
    assert openai_style.json()["error"]["type"] == "not_found_error"


def test_unknown_route_is_a_404_in_the_dialect_shape(http: httpx.Client) -> None:
    assert "error" in http.get("/api/nothing-here").json()
    assert http.get("/v1/nothing-here").json()["error"]["message"]


def test_invalid_model_name_is_a_400(http: httpx.Client) -> None:
    response = http.post("/api/chat", json={"model": "../../etc/passwd", "messages": []})
    assert response.status_code == 400


def test_bad_keep_alive_is_a_400(http: httpx.Client, model_name: str) -> None:
    response = http.post("/api/generate", json={"model": model_name, "prompt": "x", "keep_alive": "soon"})
    assert response.status_code == 400 and "keep_alive" in response.text
