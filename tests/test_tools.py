"""Tools in requests: validation, tool_choice, the schema that forces a call, tool turns in the
conversation as both template kinds see them, and the opener each template writes before a call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.chat_template import render_jinja
from gateway.errors import ApiError
from gateway.tool_calls import PlainText, ToolCallParser, split_whole
from gateway.tool_template import go_call_opener, jinja_call_opener
from gateway.tools import ToolTurns, call_schema, read_plan, read_tools
from herd.chat_prompt import render_ollama_template, templates_dir

WEATHER: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}}, "required": ["city"]}}}
TIME: dict[str, Any] = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
NOW: dict[str, Any] = {"type": "function", "function": {"name": "now"}}  # no parameters at all

TEMPLATES = Path(__file__).parent / "templates"


def _error(call: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 400
    return caught.value


# --- validation -------------------------------------------------------------------------------


def test_tools_are_read_in_both_shapes() -> None:
    nested = read_tools([WEATHER, NOW])
    assert [t.name for t in nested] == ["get_weather", "now"]
    assert nested[1].parameters == {"type": "object", "properties": {}}
    assert nested[0].for_template() == WEATHER  # templates get what the client sent
    flat = read_tools([{"type": "function", "name": "get_time", "parameters": TIME["function"]["parameters"],
                        "strict": True}], flat=True)
    assert flat[0].for_template() == {"type": "function", "function": {
        "name": "get_time", "parameters": TIME["function"]["parameters"], "strict": True}}
    assert read_tools(None) == [] and read_tools([]) == []


@pytest.mark.parametrize(("tools", "param", "words"), [
    ([{"type": "function"}], "tools[0].function", "required"),
    ([{"type": "function", "function": {"description": "no name"}}], "tools[0].function.name", "name"),
    ([{"type": "function", "function": {"name": "has space"}}], "tools[0].function.name", "name"),
    ([WEATHER, {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
     "tools[1].function.parameters", "object"),
    ([{"type": "function", "function": {"name": "f", "parameters": "{}"}}], "tools[0].function.parameters", "object"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": []}}}],
     "tools[0].function.parameters", "object"),
    ([WEATHER, WEATHER], "tools[1].function.name", "twice"),
    ([{"type": "web_search"}], "tools[0].type", "only function tools"),
    (["get_weather"], "tools[0]", "object"),
])
def test_malformed_tools_are_a_400_naming_the_field(tools: list[Any], param: str, words: str) -> None:
    error = _error(read_tools, tools)
    assert error.param == param
    assert param in error.message and words in error.message


def test_flat_tools_name_their_own_fields() -> None:
    assert _error(read_tools, [{"type": "function", "parameters": {}}], flat=True).param == "tools[0].name"


@pytest.mark.parametrize(("choice", "words"), [
    ("sometimes", "must be"),
    ({"type": "function", "function": {"name": "launch"}}, "not one of the request's tools"),
    ({"type": "function", "name": "launch"}, "not one of"),
    ({"type": "custom", "name": "x"}, "only function tools"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "maybe", "tools": []}}, "allowed_tools"),
])
def test_bad_tool_choice_is_a_400(choice: Any, words: str) -> None:
    error = _error(read_plan, read_tools([WEATHER]), choice)
    assert error.param is not None and error.param.startswith("tool_choice") and words in error.message


def test_tool_choice_without_tools_is_a_400() -> None:
    for choice in ("auto", "none", "required"):
        assert "only allowed when 'tools'" in _error(read_plan, [], choice).message


# --- tool_choice --------------------------------------------------------------------------------


def test_auto_is_the_default_with_tools_and_none_without() -> None:
    tools = read_tools([WEATHER, TIME])
    plan = read_plan(tools, None)
    assert plan.mode == "auto" and not plan.forced and plan.output_format() is None
    assert plan.offered() == [WEATHER, TIME]
    assert isinstance(plan.splitter("<tool_call>"), ToolCallParser)
    assert read_plan([], None).mode == "none" and read_plan([], None).offered() is None


def test_none_offers_no_tools_and_parses_nothing() -> None:
    plan = read_plan(read_tools([WEATHER]), "none")
    assert plan.offered() is None and plan.output_format() is None
    assert isinstance(plan.splitter("<tool_call>"), PlainText)


def test_required_forces_one_call_of_any_tool() -> None:
    plan = read_plan(read_tools([WEATHER, TIME]), "required")
    fmt = plan.output_format()
    assert plan.forced and fmt is not None and fmt.json_schema == call_schema(read_tools([WEATHER, TIME]))
    assert plan.offered() == [WEATHER, TIME]
    # the forced answer is the JSON itself, whatever the template's tag
    _, [call] = split_whole('{"name": "get_time", "arguments": {"zone": "UTC"}}', plan.splitter("<tool_call>"))
    assert call.name == "get_time"


@pytest.mark.parametrize("choice", [{"type": "function", "function": {"name": "get_time"}},
                                    {"type": "function", "name": "get_time"}])
def test_a_named_function_forces_that_one(choice: dict[str, Any]) -> None:
    plan = read_plan(read_tools([WEATHER, TIME]), choice)
    fmt = plan.output_format()
    assert plan.mode == "function" and plan.allowed == ("get_time",)
    assert fmt is not None and fmt.json_schema == call_schema(read_tools([TIME]))
    # a call of another tool is not this request's call
    assert split_whole('{"name": "get_weather", "arguments": {"city": "X"}}', plan.splitter(""))[1] == []


def test_allowed_tools_narrows_the_tools_in_both_shapes() -> None:
    tools = read_tools([WEATHER, TIME, NOW])
    chat = read_plan(tools, {"type": "allowed_tools", "allowed_tools": {
        "mode": "required", "tools": [{"type": "function", "function": {"name": "now"}}]}})
    assert chat.mode == "required" and chat.allowed == ("now",) and chat.offered() == [NOW]
    responses = read_plan(tools, {"type": "allowed_tools", "mode": "auto", "tools": [
        {"type": "function", "name": "get_time"}, {"type": "function", "name": "now"}]})
    assert responses.mode == "auto" and responses.allowed == ("get_time", "now")


def test_parallel_tool_calls_false_keeps_one_call() -> None:
    plan = read_plan(read_tools([WEATHER, TIME]), "auto", parallel=False)
    text = '[{"name": "get_time", "arguments": {"zone": "A"}}, {"name": "get_time", "arguments": {"zone": "B"}}]'
    assert [c.arguments for c in split_whole(text, plan.splitter(""))[1]] == [{"zone": "A"}]


# --- the schema of a forced call ----------------------------------------------------------------


def test_call_schema_accepts_exactly_valid_calls() -> None:
    schema = call_schema(read_tools([WEATHER, TIME, NOW]))
    jsonschema.Draft202012Validator.check_schema(schema)
    valid: list[Any] = [{"name": "get_weather", "arguments": {"city": "Paris"}},
             {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}},
             {"name": "get_time", "arguments": {"zone": "UTC"}},
             {"name": "now", "arguments": {}}]
    invalid: list[Any] = [{"name": "get_weather", "arguments": {}},  # city is required
               {"name": "get_weather", "arguments": {"city": "Paris", "unit": "K"}},
               {"name": "get_time", "arguments": {"zone": 3}},
               {"name": "launch", "arguments": {}},
               {"name": "now"},
               {"name": "now", "arguments": {}, "extra": 1},
               [{"name": "now", "arguments": {}}]]
    for call in valid:
        jsonschema.validate(call, schema)
    for call in invalid:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(call, schema)


def test_one_tool_needs_no_anyof_and_keeps_property_order() -> None:
    schema = call_schema(read_tools([TIME]))
    assert "anyOf" not in schema and list(schema["properties"]) == ["name", "arguments"]
    assert schema["properties"]["name"] == {"const": "get_time"}


def test_defs_move_to_the_root_and_refs_follow() -> None:
    person = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    tools = read_tools([
        {"type": "function", "function": {"name": "greet", "parameters": {
            "type": "object", "properties": {"who": {"$ref": "#/$defs/Person"}}, "required": ["who"],
            "$defs": {"Person": person}}}},
        {"type": "function", "function": {"name": "meet", "parameters": {
            "type": "object", "properties": {"people": {"type": "array", "items": {"$ref": "#/definitions/Person"}}},
            "definitions": {"Person": {"type": "string"}}}}},
    ])
    schema = call_schema(tools)
    assert set(schema["$defs"]) == {"greet.Person", "meet.Person"}
    jsonschema.validate({"name": "greet", "arguments": {"who": {"name": "Ada"}}}, schema)
    jsonschema.validate({"name": "meet", "arguments": {"people": ["Ada", "Bob"]}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "greet", "arguments": {"who": {}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "meet", "arguments": {"people": [{"name": "Ada"}]}}, schema)
    assert "$defs" in tools[0].parameters  # the client's own schema is left as it was


# --- tool turns ---------------------------------------------------------------------------------


def test_openai_turns_carry_arguments_as_objects_and_results_carry_names() -> None:
    turns = ToolTurns()
    assistant = turns.message("assistant", "", tool_calls=[
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}])
    result = turns.message("tool", "sunny", tool_call_id="call_1")
    assert assistant["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert result == {"role": "tool", "content": "sunny", "tool_call_id": "call_1", "tool_name": "get_weather",
                      "name": "get_weather"}
    plain = turns.message("user", "hi")
    assert plain == {"role": "user", "content": "hi"}  # no tool keys: templates test `'tool_calls' in message`


def test_ollama_turns_name_their_tool() -> None:
    turns = ToolTurns()
    assistant = turns.message("assistant", "", tool_calls=[
        {"function": {"name": "get_time", "arguments": {"zone": "UTC"}, "index": 0}}])
    assert assistant["tool_calls"][0]["function"] == {"name": "get_time", "arguments": {"zone": "UTC"}, "index": 0}
    assert turns.message("tool", "12:00", tool_name="get_time")["name"] == "get_time"


def test_a_call_without_a_name_is_a_400() -> None:
    _error(ToolTurns().message, "assistant", "", tool_calls=[{"id": "x", "function": {"arguments": "{}"}}])


# --- templates ----------------------------------------------------------------------------------


def test_openers_of_go_templates() -> None:
    assert go_call_opener((TEMPLATES / "qwen-tools.gotmpl").read_text()) == "<tool_call>\n"
    assert go_call_opener((templates_dir() / "command-r.gotmpl").read_text()).strip() == "Action: ```json\n["
    assert go_call_opener((templates_dir() / "chatml.gotmpl").read_text()) == ""  # renders no calls
    assert go_call_opener("{{ .Prompt }}") == ""


def test_openers_of_jinja_templates() -> None:
    assert jinja_call_opener((TEMPLATES / "qwen2.5.jinja").read_text()) == "<tool_call>\n"
    llama31 = next(e["template"] for e in json.loads((templates_dir() / "index.json").read_text())
                   if "tool_calls" in e["template"])
    assert jinja_call_opener(llama31, "<|begin_of_text|>") == ""  # bare {"name", "parameters"} JSON
    assert jinja_call_opener("{% for m in messages %}{{ m.content }}{% endfor %}") == ""
    assert jinja_call_opener("{{ raise_exception('no') }}") == ""


def test_a_whole_tool_conversation_renders_in_both_template_kinds() -> None:
    turns = ToolTurns()
    messages = [
        turns.message("user", "Weather in Paris?"),
        turns.message("assistant", "", tool_calls=[{"id": "call_9", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]),
        turns.message("tool", "sunny, 21C", tool_call_id="call_9"),
    ]
    tools = read_plan(read_tools([WEATHER]), None).offered()
    go = render_ollama_template((TEMPLATES / "qwen-tools.gotmpl").read_text(), messages, tools=tools)
    jinja = render_jinja((TEMPLATES / "qwen2.5.jinja").read_text(), messages, tools=tools)
    for prompt in (go, jinja):
        assert '"name":"get_weather"' in prompt.replace(" ", "")  # the tool, offered
        assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}' in prompt.replace(
            '{"city":"Paris"}', '{"city": "Paris"}')
        assert "<tool_response>\nsunny, 21C\n</tool_response>" in prompt
        assert prompt.endswith("<|im_start|>assistant\n")
