"""A job's events reach its client exactly once even when the worker's events connection to
Redis is cut mid-answer: what was in flight is sent again, and readers skip what they saw."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import redis

from tests.stack import ENDLESS, running_stack
from worker.event_writer import CLIENT_NAME


def _stream(base_url: str, model: str, on_line: threading.Event | None = None) -> tuple[str, dict[str, object]]:
    body = {"model": model, **ENDLESS, "options": {**ENDLESS["options"], "num_predict": 150}}  # type: ignore[dict-item]
    text: list[str] = []
    with httpx.stream("POST", base_url + "/api/generate", json=body, timeout=120) as response:
        for line in response.iter_lines():
            message = json.loads(line)
            text.append(message.get("response", ""))
            if on_line is not None and len(text) == 10:
                on_line.set()
    return "".join(text), message


def test_cutting_the_events_connection_loses_and_repeats_nothing(tmp_path: Path, model_name: str) -> None:
    with running_stack(tmp_path, num_parallel=1) as stack:
        expected, _ = _stream(stack.base_url, model_name)
        admin = redis.Redis.from_url(stack.redis_url)
        tenth_line = threading.Event()
        killed: list[int] = []

        def cut() -> None:
            tenth_line.wait(60)
            for _ in range(3):  # three times, a few steps apart
                for client in admin.client_list():
                    if client.get("name") == CLIENT_NAME:
                        admin.client_kill_filter(_id=client["id"])
                        killed.append(int(client["id"]))
                time.sleep(0.05)

        cutter = threading.Thread(target=cut)
        cutter.start()
        text, final = _stream(stack.base_url, model_name, tenth_line)
        cutter.join()
        assert len(killed) == 3, "the events connection was not found to cut"
        assert final["done"] is True and final["eval_count"] == 150
        assert text == expected
