"""Run coroutines together and fail like one: the first error cancels the rest and is raised as is."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]


async def run_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """A TaskGroup whose failure is the first real exception, not an ExceptionGroup (so callers
    and clients see `digest mismatch ...` rather than `unhandled errors in a TaskGroup`)."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as errors:
        raise _first(errors) from None
