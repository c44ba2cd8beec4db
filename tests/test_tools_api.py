"""Tools end to end, on the real stack, in both dialects and through the clients people use.

The demo model's own template has no tools, so these tests create `tooly`: the demo GGUF with a
Hermes-style Modelfile TEMPLATE that renders `.Tools` and `.ToolCalls` (tests/templates/), and
`tooly-jinja`: the demo GGUF whose `tokenizer.chat_template` is such a Jinja template. With one
example turn in the history, the 135M model answers the next question with a well-formed call
by itself (greedy), so `auto` is proven for real; `required` and a named function are forced by
a grammar (Job.format, compiled by the worker), so they ask with no example at all.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest

from herd.demo import demo_gguf
from herd.store.gguf import read_gguf
from tests.gguf_writer import STRING, gguf_string
from tests.stack import Stack

TEMPLATES = Path(__file__).parent / "templates"
PARAMETERS: dict[str, Any] = {"type": "object", "properties": {
    "city": {"type": "string", "description": "The city"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}
WEATHER: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city", "parameters": PARAMETERS}}
TIME: dict[str, Any] = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
GREEDY: dict[str, Any] = {"temperature": 0, "num_predict": 60}
PARIS: dict[str, Any] = {"city": "Paris", "unit": "celsius"}


def is_paris_call(arguments: dict[str, Any] | str) -> bool:
    """The model's own (unforced) call: the city it was asked about, arguments valid for the schema.
    Which unit it picks is the model's choice, and greedy decoding differs between CPUs."""
    parsed: dict[str, object] = json.loads(arguments) if isinstance(arguments, str) else arguments
    jsonschema.validate(parsed, PARAMETERS)
    return parsed["city"] == "Paris"

# One example turn, then the question: the model imitates the example's call.
OLLAMA_HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "What is the weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}}]},
    {"role": "user", "content": "What is the weather in Paris?"},
]
OPENAI_HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "What is the weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_oslo", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Oslo", "unit": "celsius"}'}}]},
    {"role": "user", "content": "What is the weather in Paris?"},
]
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def http(herd: Stack) -> httpx.Client:
    return httpx.Client(base_url=herd.base_url, timeout=180)


@pytest.fixture(scope="module")
def tooly(http: httpx.Client) -> Iterator[str]:
    created = http.post("/api/create", json={"model": "tooly", "from": "smollm2:135m", "stream": False,
                                             "template": (TEMPLATES / "qwen-tools.gotmpl").read_text()})
    assert created.json() == {"status": "success"}
    yield "tooly"
    http.request("DELETE", "/api/delete", json={"model": "tooly"})


def gguf_with_chat_template(directory: Path, template: str) -> Path:
    """The demo GGUF with another tokenizer.chat_template. The template is padded (inside a Jinja
    comment) so the header grows by a multiple of the alignment and the tensor data stays aligned."""
    data = demo_gguf().read_bytes()
    old = read_gguf(str(demo_gguf())).chat_template
    assert old is not None
    key = gguf_string("tokenizer.chat_template") + struct.pack("<I", STRING)
    pad = (len(old.encode()) - len(template.encode()) - 4) % 32
    new = template + "{#" + " " * pad + "#}"
    assert data.count(key + gguf_string(old)) == 1
    path = directory / "tool-template.gguf"
    path.write_bytes(data.replace(key + gguf_string(old), key + gguf_string(new)))
    return path


@pytest.fixture(scope="module")
def tooly_jinja(http: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = gguf_with_chat_template(tmp_path_factory.mktemp("gguf"), (TEMPLATES / "qwen2.5.jinja").read_text())
    data = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
    created = http.post("/api/create", json={"model": "tooly-jinja", "files": {"model.gguf": digest}, "stream": False})
    assert created.json() == {"status": "success"}
    assert http.post("/api/show", json={"model": "tooly-jinja"}).json()["template_source"] == "gguf"
    yield "tooly-jinja"
    http.request("DELETE", "/api/delete", json={"model": "tooly-jinja"})


@pytest.fixture(scope="module")
def client(herd: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", _strict_response_validation=True,
                         max_retries=0)


def _ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line]


# --- validation, in each dialect's error shape --------------------------------------------------

BAD_TOOLS = [
    ({"tools": [{"type": "function", "function": {"parameters": PARAMETERS}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "launch"}}},
     "tool_choice.function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
]


@pytest.mark.parametrize(("extra", "field"), BAD_TOOLS)
def test_bad_tools_are_400s_naming_the_field(http: httpx.Client, tooly: str, extra: dict[str, Any],
                                             field: str) -> None:
    ollama_answer = http.post("/api/chat", json={"model": tooly, "messages": QUESTION, **extra})
    assert ollama_answer.status_code == 400 and field in ollama_answer.json()["error"]
    openai_answer = http.post("/v1/chat/completions", json={"model": tooly, "messages": QUESTION, **extra})
    assert openai_answer.status_code == 400
    assert openai_answer.json()["error"]["param"] == field and field in openai_answer.json()["error"]["message"]


def test_bad_responses_tools_are_400s(client: openai.OpenAI, tooly: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=tooly, input="Hi", tools=[{"type": "function", "name": "f",  # type: ignore[list-item]
                                                                "parameters": {"type": "string"}}])
    assert "tools[0].parameters" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=tooly, input="Hi", tools=[{"type": "web_search"}])
    assert "only function tools" in str(caught.value)


# --- Ollama's API -------------------------------------------------------------------------------


def test_show_lists_the_tools_capability_of_templates_that_use_tools(http: httpx.Client, tooly: str,
                                                                      tooly_jinja: str) -> None:
    for name in (tooly, tooly_jinja):
        assert http.post("/api/show", json={"model": name}).json()["capabilities"] == ["completion", "tools"]
    assert http.post("/api/show", json={"model": "smollm2:135m"}).json()["capabilities"] == ["completion"]


def test_ollama_auto_call_streamed_and_not(http: httpx.Client, tooly: str) -> None:
    body = {"model": tooly, "messages": OLLAMA_HISTORY, "tools": [WEATHER], "options": GREEDY}
    whole = http.post("/api/chat", json={**body, "stream": False}).json()
    [call] = whole["message"]["tool_calls"]
    assert call["function"]["index"] == 0 and call["function"]["name"] == "get_weather"
    assert is_paris_call(call["function"]["arguments"])
    assert call["id"].startswith("call_") and whole["message"]["content"] == ""
    assert whole["done"] is True and whole["done_reason"] == "stop"

    lines = _ndjson(http.post("/api/chat", json={**body, "stream": True}))
    with_calls = [line for line in lines if line["message"].get("tool_calls")]
    assert len(with_calls) == 1 and not with_calls[0]["done"]
    assert [c["function"] for c in with_calls[0]["message"]["tool_calls"]] == [call["function"]]
    assert "".join(line["message"]["content"] for line in lines) == ""  # the call's text is never shown
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == whole["eval_count"]


def test_tools_reach_the_template_unless_tool_choice_is_none(http: httpx.Client, tooly: str) -> None:
    def ask(**extra: Any) -> dict[str, Any]:
        answer: dict[str, Any] = http.post("/api/chat", json={
            "model": tooly, "messages": OLLAMA_HISTORY, "stream": False, "options": GREEDY, **extra}).json()
        return answer

    offered, refused, bare = ask(tools=[WEATHER, TIME]), ask(tools=[WEATHER, TIME], tool_choice="none"), ask()
    assert offered["prompt_eval_count"] > refused["prompt_eval_count"] == bare["prompt_eval_count"]
    assert "tool_calls" not in refused["message"]  # none: not parsed either
    assert refused["message"]["content"] == bare["message"]["content"]


def test_tool_results_flow_back_into_the_prompt(http: httpx.Client, tooly: str) -> None:
    first = http.post("/api/chat", json={"model": tooly, "messages": OLLAMA_HISTORY, "tools": [WEATHER],
                                         "stream": False, "options": GREEDY}).json()
    turn = [*OLLAMA_HISTORY, first["message"]]

    def answer(result: str) -> dict[str, Any]:
        reply: dict[str, Any] = http.post("/api/chat", json={
            "model": tooly, "tools": [WEATHER], "stream": False, "options": GREEDY,
            "messages": [*turn, {"role": "tool", "content": result, "tool_name": "get_weather"}]}).json()
        return reply

    short, long = answer("sunny"), answer("sunny, 24 degrees, light wind from the west, no rain expected today")
    assert long["prompt_eval_count"] > short["prompt_eval_count"] > first["prompt_eval_count"]
    assert short["done"] is True


def test_ollama_named_tool_choice_is_grammar_forced(http: httpx.Client, tooly: str) -> None:
    answer = http.post("/api/chat", json={
        "model": tooly, "messages": QUESTION, "tools": [TIME, WEATHER], "stream": False, "options": GREEDY,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}).json()
    [call] = answer["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(call["function"]["arguments"], PARAMETERS)


def get_weather(city: str, unit: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city
        unit: celsius or fahrenheit
    """
    return f"sunny in {city}"


def test_ollama_client_chat_with_a_python_function_and_a_second_turn(herd: Stack, tooly: str) -> None:
    client = ollama.Client(host=herd.base_url)
    messages: list[Any] = list(OLLAMA_HISTORY)
    reply = client.chat(model=tooly, messages=messages, tools=[get_weather], options=GREEDY)
    [call] = reply.message.tool_calls or []
    assert call.function.name == "get_weather" and is_paris_call(dict(call.function.arguments))
    messages += [reply.message, {"role": "tool", "content": get_weather(**call.function.arguments),
                                 "tool_name": call.function.name}]
    second = client.chat(model=tooly, messages=messages, tools=[get_weather], options=GREEDY)
    assert second.done and second.prompt_eval_count and second.prompt_eval_count > (reply.prompt_eval_count or 0)
    streamed = list(client.chat(model=tooly, messages=OLLAMA_HISTORY, tools=[get_weather], options=GREEDY,
                                stream=True))
    assert [c.function.name for part in streamed for c in part.message.tool_calls or []] == ["get_weather"]


# --- OpenAI's chat completions ------------------------------------------------------------------


def _chat(client: openai.OpenAI, model: str, messages: list[dict[str, Any]], stream: bool,
          **extra: Any) -> tuple[str | None, list[tuple[str, str]], str]:
    """content, [(name, arguments)], finish_reason: from one answer or a whole stream."""
    common: dict[str, Any] = {"model": model, "messages": messages, "tools": [WEATHER, TIME], "temperature": 0,
                              "max_tokens": 60, **extra}
    if not stream:
        reply = client.chat.completions.create(**common)
        choice = reply.choices[0]
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []
                 if c.type == "function"]
        assert all(c.id.startswith("call_") for c in choice.message.tool_calls or [])
        return choice.message.content, calls, choice.finish_reason
    content, finish = "", ""
    by_index: dict[int, tuple[str, str]] = {}
    for chunk in client.chat.completions.create(**common, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for call in delta.tool_calls or []:
            assert call.function is not None
            name, arguments = by_index.get(call.index, ("", ""))
            by_index[call.index] = (name + (call.function.name or ""), arguments + (call.function.arguments or ""))
        finish = chunk.choices[0].finish_reason or finish
    return content or None, [by_index[i] for i in sorted(by_index)], finish


@pytest.mark.parametrize("stream", [False, True])
def test_openai_auto_calls_a_tool(client: openai.OpenAI, tooly: str, stream: bool) -> None:
    content, calls, finish = _chat(client, tooly, OPENAI_HISTORY, stream)
    [(name, arguments)] = calls
    assert name == "get_weather" and is_paris_call(arguments)
    assert arguments == json.dumps(json.loads(arguments), separators=(",", ":"))  # compact, like OpenAI
    assert finish == "tool_calls" and content is None


@pytest.mark.parametrize("stream", [False, True])
def test_openai_tool_choice_none_answers_in_text(client: openai.OpenAI, tooly: str, stream: bool) -> None:
    content, calls, finish = _chat(client, tooly, OPENAI_HISTORY, stream, tool_choice="none")
    assert calls == [] and finish in ("stop", "length") and content


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_openai_forced_calls_validate_against_the_schema(client: openai.OpenAI, tooly: str, stream: bool,
                                                         choice: Any) -> None:
    content, calls, finish = _chat(client, tooly, QUESTION, stream, tool_choice=choice)
    assert finish == "tool_calls" and len(calls) == 1 and not content
    name, arguments = calls[0]
    if isinstance(choice, dict):
        assert name == "get_weather"
    tool = {"get_weather": WEATHER, "get_time": TIME}[name]
    jsonschema.validate(json.loads(arguments), tool["function"]["parameters"])


def test_openai_second_turn_with_a_tool_result(client: openai.OpenAI, tooly: str) -> None:
    _, [(name, arguments)], _ = _chat(client, tooly, OPENAI_HISTORY, False)
    messages = [*OPENAI_HISTORY,
                {"role": "assistant", "content": None, "tool_calls": [{"id": "call_paris", "type": "function",
                                                                       "function": {"name": name,
                                                                                    "arguments": arguments}}]},
                {"role": "tool", "tool_call_id": "call_paris", "content": "sunny, 24C"}]
    reply = client.chat.completions.create(model=tooly, messages=messages, tools=[WEATHER],  # type: ignore[arg-type, list-item]
                                           temperature=0, max_tokens=30)
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert reply.usage is not None and reply.usage.prompt_tokens > 0


def test_openai_auto_through_a_gguf_jinja_template(client: openai.OpenAI, tooly_jinja: str) -> None:
    content, calls, finish = _chat(client, tooly_jinja, OPENAI_HISTORY, False)
    assert [name for name, _ in calls] == ["get_weather"] and finish == "tool_calls" and content is None
    assert json.loads(calls[0][1])["city"] == "Paris"


# --- OpenAI's Responses API ---------------------------------------------------------------------

FLAT_WEATHER: dict[str, Any] = {"type": "function", "name": "get_weather",
                                "description": "Get the current weather in a city", "parameters": PARAMETERS}
RESPONSES_HISTORY: list[Any] = [
    {"role": "user", "content": "What is the weather in Oslo?"},
    {"type": "function_call", "call_id": "call_oslo", "name": "get_weather",
     "arguments": '{"city": "Oslo", "unit": "celsius"}'},
    {"role": "user", "content": "What is the weather in Paris?"},
]


def test_responses_function_call_streamed_and_not(client: openai.OpenAI, tooly: str) -> None:
    common: dict[str, Any] = {"model": tooly, "input": RESPONSES_HISTORY, "tools": [FLAT_WEATHER],
                              "temperature": 0, "max_output_tokens": 60}
    response = client.responses.create(**common)
    [item] = response.output
    assert item.type == "function_call" and item.name == "get_weather" and is_paris_call(item.arguments)
    assert response.status == "completed" and response.tool_choice == "auto"
    events = list(client.responses.create(**common, stream=True))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    assert events[-1].type == "response.completed"
    [final] = events[-1].response.output
    assert final.type == "function_call" and final.arguments == item.arguments


def test_responses_second_turn_with_a_function_call_output(client: openai.OpenAI, tooly: str) -> None:
    response = client.responses.create(model=tooly, tools=[FLAT_WEATHER], temperature=0, max_output_tokens=30,  # type: ignore[list-item]
                                       input=[*RESPONSES_HISTORY,
                                              {"type": "function_call", "call_id": "call_p", "name": "get_weather",
                                               "arguments": json.dumps(PARIS)},
                                              {"type": "function_call_output", "call_id": "call_p",
                                               "output": "sunny, 24C"}])
    assert response.status in ("completed", "incomplete") and response.output


def test_responses_named_function_is_grammar_forced(client: openai.OpenAI, tooly: str) -> None:
    response = client.responses.create(model=tooly, input="What is the weather in Paris?", tools=[FLAT_WEATHER],  # type: ignore[call-overload]
                                       tool_choice={"type": "function", "name": "get_weather"}, temperature=0,
                                       max_output_tokens=60)
    [item] = response.output
    assert item.type == "function_call" and item.name == "get_weather"
    jsonschema.validate(json.loads(item.arguments), PARAMETERS)


# --- LangChain ----------------------------------------------------------------------------------


def test_langchain_chat_ollama_bind_tools(herd: Stack, tooly: str) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langchain_ollama import ChatOllama

    llm = ChatOllama(model=tooly, base_url=herd.base_url, temperature=0, num_predict=60).bind_tools([get_weather])
    history = [HumanMessage("What is the weather in Oslo?"),
               AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo", "unit": "celsius"},
                                          "id": "call_oslo"}]),
               HumanMessage("What is the weather in Paris?")]
    reply = llm.invoke(history)
    assert isinstance(reply, AIMessage)
    assert [c["name"] for c in reply.tool_calls] == ["get_weather"] and is_paris_call(reply.tool_calls[0]["args"])
    then = llm.invoke([*history, reply, ToolMessage("sunny", tool_call_id=reply.tool_calls[0]["id"] or "")])
    assert isinstance(then, AIMessage)


def test_langchain_chat_openai_bind_tools(herd: Stack, tooly: str) -> None:
    from langchain_core.messages import AIMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=tooly, base_url=herd.base_url + "/v1", api_key="unused",  # type: ignore[arg-type]
                     temperature=0, max_tokens=60, max_retries=0)  # type: ignore[call-arg]
    auto = llm.bind_tools([get_weather]).invoke(OPENAI_HISTORY)
    assert isinstance(auto, AIMessage) and [c["name"] for c in auto.tool_calls] == ["get_weather"]
    assert is_paris_call(auto.tool_calls[0]["args"])
    forced = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert isinstance(forced, AIMessage) and [c["name"] for c in forced.tool_calls] == ["get_weather"]
    jsonschema.validate(forced.tool_calls[0]["args"], PARAMETERS)
