"""Tool calls parsed from model text: recorded answers in the formats models write, whole and
streamed in every split, with content before a call kept and nothing shown twice or early."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from gateway.tool_calls import ParsedCall, PlainText, ToolCallParser, grouped, parse_text, split_whole

NAMES = {"get_weather", "get_time", "get"}

# (tag the template gives, what the model wrote, content expected, calls expected)
RECORDED: list[tuple[str, str, str, list[tuple[str, dict[str, Any]]]]] = [
    # Qwen 2.5 / Hermes: <tool_call> around each call, several in one answer
    ("<tool_call>", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
                    '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
     "", [("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]),
    # ... with text first: that text is content
    ("<tool_call>", 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
     "Let me check.\n", [("get_weather", {"city": "Oslo"})]),
    # Llama 3.1: bare JSON with "parameters"
    ("", '{"name": "get_weather", "parameters": {"city": "Lima", "days": 3}}',
     "", [("get_weather", {"city": "Lima", "days": 3})]),
    # Mistral: [TOOL_CALLS] and a list; arguments given as a JSON string
    ("[TOOL_CALLS] [", '[TOOL_CALLS] [{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}, '
                      '{"name": "get_time", "arguments": {}}]',
     "", [("get_weather", {"city": "Rome"}), ("get_time", {})]),
    ("[TOOL_CALLS]", '[TOOL_CALLS][{"name": "get_time", "arguments": {"zone": "UTC"}}]',
     "", [("get_time", {"zone": "UTC"})]),
    # Command R: a fenced list of {"tool_name", "parameters"}
    ("Action: ```json\n[", 'Action: ```json\n[\n    {\n        "tool_name": "get_weather",\n        '
                           '"parameters": {"city": "Kyiv"}\n    }\n]```',
     "", [("get_weather", {"city": "Kyiv"})]),
    # OpenAI's own shape, and a tool's name as the key
    ("", '{"type": "function", "function": {"name": "get_time", "arguments": {"zone": "PST"}}}',
     "", [("get_time", {"zone": "PST"})]),
    ("", '{"get_weather": {"city": "Bern"}}', "", [("get_weather", {"city": "Bern"})]),
    # Functionary / Llama 3.2 custom: the name before a bare object of arguments
    ("<function=", '<function=get_weather>{"city": "Quito"}</function>', "", [("get_weather", {"city": "Quito"})]),
    # Braces and quotes inside strings do not end the object; no arguments at all is {}
    ("<tool_call>", '<tool_call>{"name": "get_weather", "arguments": {"city": "P}a\\"r{is"}}</tool_call>'
                    '<tool_call>{"name": "get_time"}</tool_call>',
     "", [("get_weather", {"city": 'P}a"r{is'}), ("get_time", {})]),
    # The longest name wins over a prefix of it
    ("", '{"name": "get", "arguments": {"x": 1}}', "", [("get", {"x": 1})]),
    # Not calls: plain text, JSON that names no tool, a tag with nothing parseable after it
    ("<tool_call>", "The weather is nice today.", "The weather is nice today.", []),
    ("", '{"answer": 42}', '{"answer": 42}', []),
    ("", 'Sure: {"name": "get_weather", "arguments": {}}', 'Sure: {"name": "get_weather", "arguments": {}}', []),
    ("<tool_call>", '<tool_call>\n{"name": "launch_rocket", "arguments": {}}\n</tool_call>',
     '<tool_call>\n{"name": "launch_rocket", "arguments": {}}\n</tool_call>', []),
    ("<tool_call>", "I will use <tool_call> {broken json", "I will use <tool_call> {broken json", []),
    # A partial tag at the very end is content after all
    ("<tool_call>", "Almost <tool_ca", "Almost <tool_ca", []),
    # Text after the calls is dropped, as Ollama drops it
    ("<tool_call>", '<tool_call>{"name": "get_time", "arguments": {}}</tool_call> Done, I called it.',
     "", [("get_time", {})]),
]


def _calls(calls: list[ParsedCall]) -> list[tuple[str, dict[str, Any]]]:
    return [(c.name, c.arguments) for c in calls]


@pytest.mark.parametrize(("tag", "text", "content", "calls"), RECORDED)
def test_recorded_answers_parse_whole(tag: str, text: str, content: str,
                                      calls: list[tuple[str, dict[str, Any]]]) -> None:
    got_content, got_calls = parse_text(text, NAMES, tag)
    assert got_content == content
    assert _calls(got_calls) == calls
    assert [c.index for c in got_calls] == list(range(len(calls)))
    assert len({c.id for c in got_calls}) == len(calls) and all(c.id.startswith("call_") for c in got_calls)


def _streamed(text: str, tag: str, cuts: tuple[int, ...]) -> list[str | ParsedCall]:
    parser = ToolCallParser(NAMES, tag)
    bounds = [0, *cuts, len(text)]
    pieces: list[str | ParsedCall] = []
    for a, b in itertools.pairwise(bounds):
        pieces += parser.feed(text[a:b])
    return pieces + parser.finish()


@pytest.mark.parametrize(("tag", "text", "content", "calls"), RECORDED)
def test_streaming_in_any_two_cuts_gives_the_same_answer(tag: str, text: str, content: str,
                                                          calls: list[tuple[str, dict[str, Any]]]) -> None:
    for cuts in itertools.combinations(range(1, len(text)), 2):
        pieces = _streamed(text, tag, cuts)
        assert "".join(p for p in pieces if isinstance(p, str)) == content, cuts
        assert _calls([p for p in pieces if isinstance(p, ParsedCall)]) == calls, cuts


@pytest.mark.parametrize(("tag", "text", "content", "calls"), RECORDED)
def test_streaming_token_by_token(tag: str, text: str, content: str,
                                  calls: list[tuple[str, dict[str, Any]]]) -> None:
    pieces = _streamed(text, tag, tuple(range(1, len(text))))
    assert "".join(p for p in pieces if isinstance(p, str)) == content
    assert _calls([p for p in pieces if isinstance(p, ParsedCall)]) == calls


def test_content_before_the_tag_goes_out_at_once_and_the_tag_never_does() -> None:
    parser = ToolCallParser(NAMES, "<tool_call>")
    assert parser.feed("Checking the weather") == ["Checking the weather"]
    assert parser.feed(" now <tool") == [" now "]  # "<tool" may begin the tag: held back
    assert parser.feed("_call>\n{\"name\": \"get_weather\", ") == []
    [call] = parser.feed('"arguments": {"city": "Paris"}}')  # the call, as soon as its JSON closes
    assert isinstance(call, ParsedCall) and call.arguments == {"city": "Paris"}
    assert parser.feed("\n</tool_call>") == [] and parser.finish() == []
    assert parser.calls == 1


def test_held_text_that_is_not_the_tag_is_released() -> None:
    parser = ToolCallParser(NAMES, "<tool_call>")
    assert parser.feed("a <to") == ["a "]
    assert parser.feed("day") == ["<today"]


def test_bare_json_answers_hold_only_while_they_may_be_a_call() -> None:
    parser = ToolCallParser(NAMES)
    assert parser.feed("  ") == []  # leading whitespace: not yet known
    assert parser.feed("Hello") == ["  Hello"]  # not JSON: content, and stays content
    assert parser.feed(' {"name": "get_time"}') == [' {"name": "get_time"}']
    json_answer = ToolCallParser(NAMES)
    assert json_answer.feed('{"colour": ') == []
    assert json_answer.feed('"red"} and more') == ['{"colour": "red"} and more']


def test_parallel_calls_off_keeps_the_first_call() -> None:
    text = '[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "X"}}]'
    content, calls = parse_text(text, NAMES, max_calls=1)
    assert content == "" and _calls(calls) == [("get_time", {})]


def test_a_cut_off_call_is_content_when_no_call_completed() -> None:
    assert parse_text('<tool_call>\n{"name": "get_weather", "argum', NAMES, "<tool_call>") == (
        '<tool_call>\n{"name": "get_weather", "argum', [])
    content, calls = parse_text('<tool_call>{"name": "get_time"}</tool_call><tool_call>{"name": "get_w',
                                NAMES, "<tool_call>")
    assert content == "" and _calls(calls) == [("get_time", {})]


def test_arguments_are_sent_as_a_json_string_to_openai() -> None:
    _, [call] = parse_text('{"name": "get_weather", "arguments": {"city": "Zürich", "n": [1, 2]}}', NAMES)
    assert json.loads(call.arguments_json()) == {"city": "Zürich", "n": [1, 2]}
    assert "Zürich" in call.arguments_json()


def test_plain_text_passes_every_piece_through_unchanged() -> None:
    text = PlainText()
    assert text.feed("") == [""] and text.feed('<tool_call>{"a"') == ['<tool_call>{"a"'] and text.finish() == []
    assert split_whole("hello", PlainText()) == ("hello", [])


def test_consecutive_calls_are_grouped_for_one_chunk() -> None:
    a, b = ParsedCall("get", {}, 0, "call_a"), ParsedCall("get", {}, 1, "call_b")
    assert grouped(["x", a, b, "y", a]) == ["x", [a, b], "y", [a]]
