"""POST /v1/responses as the openai SDK sees it (strict validation), streamed and not."""

from __future__ import annotations

import openai
import pytest
from openai.types.responses import ResponseCompletedEvent, ResponseIncompleteEvent, ResponseInputParam

from tests.stack import Stack


@pytest.fixture(scope="module")
def client(herd: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=herd.base_url + "/v1", api_key="unused", _strict_response_validation=True,
                         max_retries=0)


def test_response_with_instructions(client: openai.OpenAI, model_name: str) -> None:
    response = client.responses.create(model=model_name, instructions="Answer in one word.", input="Name a fruit.",
                                       temperature=0, max_output_tokens=16)
    assert response.object == "response"
    assert response.output_text
    assert response.status in {"completed", "incomplete"}
    assert response.usage is not None and response.usage.input_tokens > 0
    assert 0 < response.usage.output_tokens <= 16


def test_streamed_response_equals_unstreamed(client: openai.OpenAI, model_name: str) -> None:
    conversation: ResponseInputParam = [{"role": "user", "content": "Say something about rain."}]
    whole = client.responses.create(model=model_name, input=conversation, temperature=0, max_output_tokens=20)
    events = list(client.responses.create(model=model_name, input=conversation, temperature=0,
                                          max_output_tokens=20, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-1] in {"response.completed", "response.incomplete"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    assert isinstance(events[-1], ResponseCompletedEvent | ResponseIncompleteEvent)
    assert events[-1].response.output_text == text


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI, model_name: str) -> None:
    response = client.responses.create(model=model_name, input="Count to one hundred.", temperature=0,
                                       max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"


def test_stateless_and_unsupported_fields_are_400s(client: openai.OpenAI, model_name: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model_name, input="Hi", previous_response_id="resp_123")
    assert "stateless" in str(caught.value)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="Hi")
