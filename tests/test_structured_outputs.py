"""Structured outputs end to end: every dialect's way of asking for JSON, through the clients
people use, on the real stack. Each answer must parse and validate against its schema."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import jsonschema
import ollama
import openai
import pytest
from pydantic import BaseModel, Field

from tests.stack import Stack

MODEL = "smollm2:135m"
LIMIT = 120  # tokens: every answer below is complete well within this

# Strings carry maxLength: a 135M model can go on inside a string until num_predict.
PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
                   "is_student": {"type": "boolean"}},
    "required": ["name", "age", "is_student"],
}
SCHEMAS: dict[str, tuple[dict[str, Any], str]] = {
    "person": (PERSON, "Describe a fictional person as JSON with name, age and is_student."),
    "nested": ({
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 30},
            "author": {"type": "object", "properties": {"first": {"type": "string", "maxLength": 15},
                                                        "last": {"type": "string", "maxLength": 15}},
                       "required": ["first", "last"]},
        },
        "required": ["title", "author"],
    }, "Give me a book as JSON with its title and author."),
    "array": ({
        "type": "object",
        "properties": {"colors": {"type": "array", "items": {"type": "string", "maxLength": 12},
                                  "minItems": 2, "maxItems": 3}},
        "required": ["colors"],
    }, "List some colors as JSON."),
    "enum": ({
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
                       "confidence": {"type": "number"}},
        "required": ["sentiment", "confidence"],
    }, "Classify the sentiment of 'I love this!' as JSON."),
    "tool-call": ({  # the shape a forced tool call takes: $defs/$ref, oneOf, const
        "$defs": {"Args": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                           "required": ["city"], "additionalProperties": False}},
        "oneOf": [{"type": "object", "properties": {"name": {"const": "get_weather"},
                                                    "arguments": {"$ref": "#/$defs/Args"}},
                   "required": ["name", "arguments"]}],
    }, "What is the weather in Paris? Call get_weather as JSON."),
}


class Author(BaseModel):
    first: str = Field(max_length=15)
    last: str = Field(max_length=15)


class Book(BaseModel):
    title: str = Field(max_length=30)
    year: int
    in_print: bool
    author: Author  # pydantic writes it as a $ref into $defs
    genres: list[Literal["fiction", "history", "science"]] = Field(min_length=1, max_length=2)


BOOK_PROMPT = "Describe a famous book as JSON: title, year, whether it is in print, author and genres."


@pytest.fixture(scope="module")
def http(herd: Stack) -> httpx.Client:
    return httpx.Client(base_url=herd.base_url, timeout=300)


@pytest.fixture(scope="module")
def sdk(herd: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", _strict_response_validation=True,
                         max_retries=0, timeout=300)


def valid(text: str, schema: dict[str, Any]) -> Any:
    value = json.loads(text)
    jsonschema.validate(value, schema)
    return value


# -- Ollama ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_ollama_chat_format_schema(http: httpx.Client, name: str) -> None:
    schema, prompt = SCHEMAS[name]
    body = {"model": MODEL, "stream": False, "format": schema, "messages": [{"role": "user", "content": prompt}],
            "options": {"temperature": 0, "num_predict": LIMIT}}
    reply = http.post("/api/chat", json=body).json()
    assert reply["done_reason"] == "stop"  # the grammar let end-of-generation through once the JSON was done
    valid(reply["message"]["content"], schema)


def test_ollama_generate_streamed_format_json_is_an_object(http: httpx.Client) -> None:
    body = {"model": MODEL, "format": "json", "prompt": "Give me a fictional person as JSON with name and age.",
            "options": {"temperature": 0, "num_predict": LIMIT}}
    with http.stream("POST", "/api/generate", json=body) as response:
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] and lines[-1]["done_reason"] == "stop"
    assert isinstance(json.loads("".join(line["response"] for line in lines)), dict)


def test_ollama_client_with_a_pydantic_schema(herd: Stack) -> None:
    client = ollama.Client(host=herd.base_url, timeout=300)
    options = {"temperature": 0, "num_predict": LIMIT}
    reply = client.chat(model=MODEL, messages=[{"role": "user", "content": BOOK_PROMPT}],
                        format=Book.model_json_schema(), options=options)
    book = Book.model_validate_json(reply.message.content or "")
    streamed = "".join(part.message.content or "" for part in client.chat(
        model=MODEL, messages=[{"role": "user", "content": BOOK_PROMPT}], format=Book.model_json_schema(),
        options=options, stream=True))
    assert Book.model_validate_json(streamed) == book
    generated = client.generate(model=MODEL, prompt=BOOK_PROMPT, format=Book.model_json_schema(), options=options)
    assert generated.response is not None
    Book.model_validate_json(generated.response)


def test_a_cut_json_ends_with_length(http: httpx.Client) -> None:
    body = {"model": MODEL, "stream": False, "format": PERSON, "prompt": "A person as JSON.",
            "options": {"temperature": 0, "num_predict": 3}}
    reply = http.post("/api/generate", json=body).json()
    assert reply["done_reason"] == "length" and reply["response"].startswith("{")


@pytest.mark.parametrize(
    ("fmt", "needle"),
    [
        ("yaml", 'invalid format: expected "json" or a valid JSON Schema object'),
        ({"type": "strng"}, "invalid JSON schema"),
        ({"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}, "only local references"),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "[a-z]+"}}}, "must start with '^'"),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 2}, "less than"),
    ],
)
def test_ollama_bad_format_is_a_400(http: httpx.Client, fmt: Any, needle: str) -> None:
    for route, extra in (("/api/generate", {"prompt": "Hi"}), ("/api/chat", {"messages": [{"role": "user",
                                                                                             "content": "Hi"}]})):
        response = http.post(route, json={"model": MODEL, "format": fmt, **extra})
        assert response.status_code == 400, response.text
        assert needle in response.json()["error"]


# -- OpenAI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["person", "array", "tool-call"])
def test_openai_response_format_json_schema(sdk: openai.OpenAI, name: str) -> None:
    schema, prompt = SCHEMAS[name]
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    messages: Any = [{"role": "user", "content": prompt}]
    reply = sdk.chat.completions.create(model=MODEL, messages=messages, response_format=response_format,
                                        temperature=0, max_tokens=LIMIT)
    assert reply.choices[0].finish_reason == "stop"
    value = valid(reply.choices[0].message.content or "", schema)
    stream = sdk.chat.completions.create(model=MODEL, messages=messages, response_format=response_format,
                                         temperature=0, max_tokens=LIMIT, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert valid(streamed, schema) == value


def test_openai_json_object_and_text(sdk: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Give me a fictional person as JSON with name and age."}]
    reply = sdk.chat.completions.create(model=MODEL, messages=messages, response_format={"type": "json_object"},
                                        temperature=0, max_tokens=LIMIT)
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    text = sdk.chat.completions.create(model=MODEL, messages=messages, response_format={"type": "text"},
                                       temperature=0, max_tokens=8)
    assert text.choices[0].message.content


def test_openai_parse_with_a_pydantic_model(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.parse(model=MODEL, messages=[{"role": "user", "content": BOOK_PROMPT}],
                                            response_format=Book, temperature=0, max_tokens=LIMIT)
    book = completion.choices[0].message.parsed
    assert isinstance(book, Book) and 1 <= len(book.genres) <= 2


def test_responses_text_format(sdk: openai.OpenAI) -> None:
    schema, prompt = SCHEMAS["person"]
    text: Any = {"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}}
    response = sdk.responses.create(model=MODEL, input=prompt, text=text, temperature=0, max_output_tokens=LIMIT)
    assert response.status == "completed"
    valid(response.output_text, schema)
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    parsed = sdk.responses.parse(model=MODEL, input=BOOK_PROMPT, text_format=Book, temperature=0,
                                 max_output_tokens=LIMIT)
    assert isinstance(parsed.output_parsed, Book)
    with sdk.responses.stream(model=MODEL, input=prompt, text=text, temperature=0,
                              max_output_tokens=LIMIT) as stream:
        final = stream.get_final_response()
    valid(final.output_text, schema)


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
         "response_format.json_schema.schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}},
         "response_format.json_schema.schema"),
    ],
)
def test_openai_bad_response_format_is_a_400(sdk: openai.OpenAI, response_format: Any, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                    response_format=response_format, max_tokens=4)
    assert caught.value.body is not None
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_responses_bad_text_format_is_a_400(sdk: openai.OpenAI) -> None:
    text: Any = {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object", "properties": {
        "a": {"type": "string", "pattern": "[a-z]+"}}}}}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model=MODEL, input="Hi", text=text, max_output_tokens=4)
    assert caught.value.body is not None and caught.value.body["param"] == "text.format.schema"  # type: ignore[index]


# -- LangChain ------------------------------------------------------------------------------


def test_langchain_chat_ollama_structured_output(herd: Stack) -> None:
    from langchain_ollama import ChatOllama

    llm = ChatOllama(model=MODEL, base_url=herd.base_url, temperature=0, num_predict=LIMIT)
    structured = llm.with_structured_output(Book, method="json_schema")
    book = structured.invoke(BOOK_PROMPT)
    assert isinstance(book, Book)
    chunks = list(structured.stream(BOOK_PROMPT))
    assert chunks and chunks[-1] == book


def test_langchain_chat_openai_structured_output(herd: Stack) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=herd.base_url + "/v1", api_key="unused",  # type: ignore[arg-type]
                     temperature=0, max_tokens=LIMIT, max_retries=0)  # type: ignore[call-arg]
    structured = llm.with_structured_output(Book, method="json_schema")
    book = structured.invoke(BOOK_PROMPT)
    assert isinstance(book, Book)
    chunks = list(structured.stream(BOOK_PROMPT))
    assert chunks and chunks[-1] == book
