"""The `herd` CLI verbs against a running stack, as a user types them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from herd.processes import free_port
from tests.stack import Stack


def test_list_shows_the_demo_model(herd: Stack, model_name: str) -> None:
    out = herd.herd("list").stdout
    assert out.splitlines()[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert any(line.startswith(model_name) for line in out.splitlines()[1:])
    # The same table (MODIFIED is relative: "Just now" may turn into "Less than a minute ago").
    assert [line.split()[:4] for line in herd.herd("ls").stdout.splitlines()] == [
        line.split()[:4] for line in out.splitlines()]


def test_show_prints_details_and_sections(herd: Stack, model_name: str) -> None:
    out = herd.herd("show", model_name).stdout
    assert "architecture        llama" in out
    assert "Q4_1" in out
    assert "FROM" in herd.herd("show", model_name, "--modelfile").stdout


def test_run_one_shot_prints_the_answer(herd: Stack) -> None:
    result = herd.herd("run", herd.bounded_model(), "Say hi")
    assert result.stdout.strip()


def test_create_then_rm(herd: Stack, model_name: str, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {model_name}\nSYSTEM You are terse.\nPARAMETER temperature 0.2\n")
    assert "success" in herd.herd("create", "terse:latest", "-f", str(modelfile)).stdout
    assert "You are terse." in herd.herd("show", "terse", "--system").stdout
    assert "deleted 'terse'" in herd.herd("rm", "terse").stdout
    assert "terse" not in herd.herd("list").stdout


def test_bad_modelfile_names_the_line(herd: Stack, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM ./missing.gguf\nBOGUS thing\n")
    result = herd.herd("create", "broken", "-f", str(modelfile), check=False)
    assert result.returncode == 1
    assert "line 2" in result.stderr


def test_unknown_model_is_a_friendly_error(herd: Stack) -> None:
    result = herd.herd("show", "nothing-like-it", check=False)
    assert result.returncode == 1
    assert "not found" in result.stderr


def test_no_server_is_a_friendly_error(herd: Stack) -> None:
    env_host = f"127.0.0.1:{free_port()}"
    original = herd.env["HERD_HOST"]
    herd.env["HERD_HOST"] = env_host
    try:
        result = herd.herd("list", check=False)
    finally:
        herd.env["HERD_HOST"] = original
    assert result.returncode == 1
    assert "herd serve" in result.stderr


VERBS = ["serve", "gateway", "worker", "create", "cp", "list", "ls", "show", "rm", "ps", "stop", "run", "pull",
         "push", "config"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(herd: Stack, verb: str) -> None:
    result = herd.herd(verb, "--help")
    shown = {"ls": "list"}.get(verb, verb)  # an alias prints its verb's usage, as in ollama
    assert result.stdout.startswith(f"usage: herd {shown}") and "-h, --help" in result.stdout


def test_cp_then_show_sections(herd: Stack, model_name: str, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f'FROM {model_name}\nPARAMETER stop "<|im_end|>"\nPARAMETER top_k 7\n'
                         'LICENSE """Apache 2.0\nsee the text"""\n')
    herd.herd("create", "licensed", "-f", str(modelfile))
    assert "copied 'licensed' to 'licensed-copy'" in herd.herd("cp", "licensed", "licensed-copy").stdout
    try:
        parameters = herd.herd("show", "licensed-copy", "--parameters").stdout
        assert "top_k" in parameters and '"<|im_end|>"' in parameters
        assert "{{" in herd.herd("show", "licensed-copy", "--template").stdout
        assert herd.herd("show", "licensed-copy", "--license").stdout.strip() == "Apache 2.0\nsee the text"
    finally:
        herd.herd("rm", "licensed", "licensed-copy")
    assert "licensed" not in herd.herd("list").stdout


def _loaded(stack: Stack) -> int:
    return len(httpx.get(stack.base_url + "/api/ps", timeout=10).json()["models"])


def test_run_with_format_json_and_keepalive(herd: Stack) -> None:
    # The demo's weights, with an answer's length bounded; room enough for a small object.
    bounded = herd.bounded_model(num_predict=400)
    herd.herd("run", bounded, "Hi")  # the weights are loaded (named after whoever loaded them first)
    loaded = _loaded(herd)
    result = herd.herd("run", bounded, "--format", "json", "--keepalive", "0", "--verbose",
                       "Give a JSON object with a key name and a value.")
    eval_count = int(re.search(r"^eval count:\s+(\d+)", result.stderr, re.M).group(1))  # type: ignore[union-attr]
    if eval_count < 400:
        json.loads(result.stdout)  # grammar-constrained: a complete answer always parses
    else:  # sampling rambled on (a 135M model, temperature 0.8) until num_predict cut it
        assert result.stdout.lstrip().startswith("{")
    deadline = time.monotonic() + 20
    while _loaded(herd) != loaded - 1:  # keepalive 0: unloaded once the answer is done
        assert time.monotonic() < deadline, "keepalive 0 left the model loaded"
        time.sleep(0.2)
