"""/api/pull and /api/push through real stacks and a real registry: the shared stack pushes the
demo model, a second stack with an empty store pulls it and generates with it; the `ollama`
client, the `herd pull`/`push` CLI, and `herd run` pulling a model it lacks."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import ollama
import pexpect
import pytest

from herd.demo import DEMO_NAME
from tests.registry import DockerRegistry
from tests.stack import Stack, running_stack


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second Herd (own Redis, own store) whose store starts empty."""
    with running_stack(tmp_path_factory.mktemp("fresh")) as stack:
        stack.herd("rm", DEMO_NAME)
        assert not list((stack.models / "blobs").iterdir())
        yield stack


@pytest.fixture
def publish(herd: Stack, registry: DockerRegistry) -> Iterator[Callable[..., str]]:
    """Copies the demo model, in the shared stack, to a name in the loopback registry (not pushed
    yet); the copies are removed afterwards, so other tests see the shared store as it was."""
    names: list[str] = []

    def publish(tag: str, source: str = DEMO_NAME) -> str:
        names.append(f"{registry.host}/team/smol:{tag}")
        herd.herd("cp", source, names[-1])
        return names[-1]

    yield publish
    herd.herd("rm", *names)


def _lines(stack: Stack, path: str, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    with httpx.stream("POST", stack.base_url + path, json=body, timeout=300) as response:
        return response.status_code, [json.loads(line) for line in response.iter_lines() if line]


def _tags(stack: Stack) -> dict[str, str]:
    models = httpx.get(stack.base_url + "/api/tags", timeout=30).json()["models"]
    return {m["name"]: m["digest"] for m in models}


def test_push_then_pull_into_an_empty_store_and_generate(herd: Stack, fresh: Stack,
                                                         publish: Callable[..., str]) -> None:
    name = publish("api")
    status, pushed = _lines(herd, "/api/push", {"model": name, "insecure": True})
    assert status == 200
    statuses = [item["status"] for item in pushed]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
    layer = next(item for item in pushed if item["status"].startswith("pushing ") and "digest" in item)
    assert layer["status"] == f"pushing {layer['digest'][7:19]}" and layer["total"] > 0

    assert name not in _tags(fresh)
    status, pulled = _lines(fresh, "/api/pull", {"model": name, "insecure": True})
    assert status == 200
    statuses = list(dict.fromkeys(item["status"] for item in pulled))
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    weights = max((item for item in pulled if "digest" in item), key=lambda item: item["total"])
    done = [item for item in pulled if item.get("digest") == weights["digest"]][-1]
    assert done["completed"] == done["total"] > 90_000_000
    assert _tags(fresh)[name] == _tags(herd)[name]  # the same manifest, byte for byte

    reply = httpx.post(fresh.base_url + "/api/generate", timeout=180, json={
        "model": name, "prompt": "Say hi", "stream": False, "options": {"num_predict": 4, "temperature": 0}})
    assert reply.status_code == 200 and reply.json()["done"] is True


def test_ollama_client_push_and_pull_stream_or_not(herd: Stack, fresh: Stack,
                                                   publish: Callable[..., str]) -> None:
    name = publish("client")
    pusher = ollama.Client(host=herd.base_url)
    assert pusher.push(name, insecure=True).status == "success"
    assert [p.status for p in pusher.push(name, insecure=True, stream=True)][-1] == "success"
    puller = ollama.Client(host=fresh.base_url)
    progress = list(puller.pull(name, insecure=True, stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    assert any(p.digest and p.total for p in progress)
    assert puller.pull(name, insecure=True).status == "success"
    assert name in [m.model for m in puller.list().models]


def test_unknown_model_is_ollamas_error_streamed_or_not(fresh: Stack, registry: DockerRegistry) -> None:
    model = f"{registry.host}/team/nothing-here"
    body = {"model": model, "insecure": True}
    assert _lines(fresh, "/api/pull", body) == (200, [
        {"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}])
    reply = httpx.post(fresh.base_url + "/api/pull", json={**body, "stream": False}, timeout=60)
    assert reply.status_code == 500 and reply.json() == {"error": "pull model manifest: file does not exist"}
    with pytest.raises(ollama.ResponseError, match="pull model manifest: file does not exist"):
        ollama.Client(host=fresh.base_url).pull(model, insecure=True)
    _, lines = _lines(fresh, "/api/push", {"model": "not-here-at-all", "insecure": True})
    assert lines[-1] == {"error": 'model "not-here-at-all" not found'}
    reply = httpx.post(fresh.base_url + "/api/pull", json={"model": "../x"}, timeout=60)
    assert reply.status_code == 400 and "model" in reply.json()["error"]


def test_plain_http_needs_insecure(fresh: Stack, registry: DockerRegistry) -> None:
    reply = httpx.post(fresh.base_url + "/api/pull", timeout=60,
                       json={"model": f"{registry.host}/team/smol:api", "stream": False})
    assert reply.status_code == 500
    assert reply.json()["error"].startswith(f'pull model manifest: GET "https://{registry.host}/v2/team/smol/')


def test_cli_push_and_pull(herd: Stack, fresh: Stack, registry: DockerRegistry,
                           publish: Callable[..., str]) -> None:
    name = publish("cli")
    pushed = herd.herd("push", "--insecure", name)
    assert pushed.stderr.splitlines()[0] == "retrieving manifest"
    assert pushed.stderr.splitlines()[-2:] == ["pushing manifest", "success"]
    pulled = fresh.herd("pull", "--insecure", name).stderr.splitlines()  # not a terminal: plain lines
    assert pulled[0] == "pulling manifest" and pulled[-3:] == ["verifying sha256 digest", "writing manifest",
                                                               "success"]
    assert any(line.startswith("pulling ") and line.endswith(": 100% 98 MB") for line in pulled)
    failed = fresh.herd("pull", "--insecure", f"{registry.host}/team/nothing-here", check=False)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1] == "Error: pull model manifest: file does not exist"


def test_run_pulls_a_model_the_server_lacks(herd: Stack, fresh: Stack, publish: Callable[..., str]) -> None:
    name = publish("run", herd.bounded_model())  # `run` answers at once, whatever it samples
    herd.herd("push", "--insecure", name)
    assert name not in _tags(fresh)
    result = fresh.herd("run", "--insecure", name, "Say hi")
    assert "pulling manifest" in result.stderr and "success" in result.stderr
    assert result.stdout.strip()
    assert name in _tags(fresh)


def test_cli_draws_bars_on_a_terminal(herd: Stack, publish: Callable[..., str]) -> None:
    name = publish("tty")
    child = pexpect.spawn(sys.executable, ["-m", "herd", "push", "--insecure", name], env=herd.env,
                          encoding="utf-8", timeout=120)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    output = child.before
    assert output is not None  # set by expect(EOF): all the output
    # One bar a blob, redrawn in place (cursor up), the size at the end.
    assert "\x1b[" in output and "100% ▕█████████████████████████▏  98 MB" in output
    assert output.rstrip().endswith("success")
