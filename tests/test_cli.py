"""The `herd` CLI verbs against a running stack, as a user types them."""

from __future__ import annotations

from pathlib import Path

from herd.processes import free_port
from tests.stack import Stack


def test_list_shows_the_demo_model(herd: Stack, model_name: str) -> None:
    out = herd.herd("list").stdout
    assert out.splitlines()[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert any(line.startswith(model_name) for line in out.splitlines()[1:])
    assert herd.herd("ls").stdout == out


def test_show_prints_details_and_sections(herd: Stack, model_name: str) -> None:
    out = herd.herd("show", model_name).stdout
    assert "architecture        llama" in out
    assert "Q4_1" in out
    assert "FROM" in herd.herd("show", model_name, "--modelfile").stdout


def test_run_one_shot_prints_the_answer(herd: Stack, model_name: str) -> None:
    result = herd.herd("run", model_name, "Say hi")
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
