"""Function calls in OpenAI's Responses API: the `function_call` and `function_call_output`
input items (a previous turn's calls and their results), and `function_call` output items."""

from __future__ import annotations

import secrets
from typing import Any, Literal

import msgspec

from gateway.errors import bad_request
from gateway.tool_calls import ParsedCall
from gateway.tools import ToolTurns


class FunctionCallInput(msgspec.Struct, forbid_unknown_fields=True):
    """A call the model made in an earlier turn, sent back as the conversation's history."""

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputInput(msgspec.Struct, forbid_unknown_fields=True):
    """The result of a call: becomes a `tool` message."""

    type: Literal["function_call_output"]
    call_id: str
    output: str | list[dict[str, Any]]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(msgspec.Struct):
    """An output item: one call of a function tool."""

    id: str
    call_id: str
    name: str
    arguments: str  # a JSON string
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    type: Literal["function_call"] = "function_call"


def function_call_item(call: ParsedCall, status: Literal["in_progress", "completed"] = "completed",
                       item_id: str | None = None) -> FunctionCallItem:
    return FunctionCallItem(id=item_id or f"fc_{secrets.token_hex(16)}", call_id=call.id, name=call.name,
                            arguments=call.arguments_json() if status == "completed" else "", status=status)


def decode_item(raw: dict[str, Any], index: int) -> FunctionCallInput | FunctionCallOutputInput:
    kind: type[FunctionCallInput | FunctionCallOutputInput] = (
        FunctionCallInput if raw.get("type") == "function_call" else FunctionCallOutputInput)
    try:
        item: FunctionCallInput | FunctionCallOutputInput = msgspec.convert(raw, type=kind)
        return item
    except msgspec.ValidationError as exc:
        raise bad_request(f"{exc} (in input[{index}])", param=f"input[{index}]") from exc


def add_tool_item(messages: list[dict[str, Any]], item: FunctionCallInput | FunctionCallOutputInput,
                  turns: ToolTurns) -> None:
    """Fold an item into the chat messages templates see: consecutive calls (and the assistant
    text just before them) make one assistant turn; each output is a `tool` turn."""
    if isinstance(item, FunctionCallOutputInput):
        output = item.output if isinstance(item.output, str) else "".join(
            str(part.get("text", "")) for part in item.output if isinstance(part, dict))
        messages.append(turns.message("tool", output, tool_call_id=item.call_id))
        return
    call = turns.message("assistant", "", tool_calls=[
        {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}])
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).extend(call["tool_calls"])
    else:
        messages.append(call)
