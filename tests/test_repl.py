"""`herd run` on a real pseudo-terminal: multi-line input, /set, /show, /save, /clear, /bye."""

from __future__ import annotations

import sys

import httpx
import pexpect

from tests.stack import Stack


def test_interactive_session(herd: Stack) -> None:
    child = pexpect.spawn(sys.executable, ["-m", "herd", "run", "smollm2:135m"], env=herd.env,
                          encoding="utf-8", timeout=120)
    try:
        child.expect_exact(">>> ")
        child.sendline("/set parameter num_predict 6")
        child.expect_exact("Set parameter 'num_predict' to '6'")
        child.sendline("/set parameter top_k lots")
        child.expect_exact("Couldn't set parameter")
        child.sendline("/set system You are terse.")
        child.expect_exact("Set system message.")
        child.sendline("/show info")
        child.expect_exact("architecture        llama")
        child.sendline('"""Say hello')
        child.expect_exact("... ")
        child.sendline('in two words."""')
        child.expect_exact(">>> ")
        child.sendline("/save terse-session")
        child.expect_exact("Created new model 'terse-session'")
        child.sendline("/load no-such-model")
        child.expect_exact("Error:")
        child.sendline("/clear")
        child.expect_exact("Cleared session context")
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    shown = httpx.post(herd.base_url + "/api/show", json={"model": "terse-session"}, timeout=30).json()
    assert shown["system"] == "You are terse."
    assert "num_predict" in shown["parameters"]
    modelfile = shown["modelfile"]
    assert "MESSAGE user" in modelfile and "Say hello\nin two words." in modelfile  # the multi-line turn
    assert "MESSAGE assistant" in modelfile
    httpx.request("DELETE", herd.base_url + "/api/delete", json={"model": "terse-session"}, timeout=30)


def test_one_shot_reads_piped_stdin(herd: Stack) -> None:
    import subprocess

    result = subprocess.run([sys.executable, "-m", "herd", "run", herd.bounded_model(), "--verbose"], env=herd.env,
                            input="Say hi.", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip()
    assert "eval rate:" in result.stderr
