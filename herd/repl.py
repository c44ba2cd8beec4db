"""`herd run MODEL` on a terminal: Ollama's interactive chat and its slash commands."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from herd.store.options import OptionError, coerce_option

HELP = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command

Use \"\"\" to begin a multi-line message."""

SET_HELP = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats"""


class Session:
    """What one interactive chat accumulates: model, messages, system, options, modes."""

    def __init__(self, model: str, *, verbose: bool, keep_alive: str | None, format_json: bool) -> None:
        self.model = model
        self.messages: list[dict[str, str]] = []
        self.system: str | None = None
        self.options: dict[str, Any] = {}
        self.verbose = verbose
        self.keep_alive = keep_alive
        self.format_json = format_json

    def request(self) -> dict[str, Any]:
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + self.messages
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if self.options:
            body["options"] = self.options
        if self.keep_alive:
            body["keep_alive"] = self.keep_alive
        if self.format_json:
            body["format"] = "json"
        return body


def _read_message(first: str, read: Callable[[str], str]) -> str:
    """A line, or everything between a pair of triple quotes, like Ollama's REPL."""
    if not first.startswith('"""'):
        return first
    text = first[3:]
    lines: list[str] = []
    while True:
        if text.endswith('"""'):
            lines.append(text[:-3])
            return "\n".join(lines)
        lines.append(text)
        text = read("... ")


class Repl:
    def __init__(self, session: Session, *, chat: Callable[[Session], str], show: Callable[[str, str], str],
                 save: Callable[[Session, str], None], exists: Callable[[str], None]) -> None:
        self.session = session
        self._chat = chat
        self._show = show
        self._save = save
        self._exists = exists

    def run(self, read: Callable[[str], str] = input) -> None:
        _enable_history()
        while True:
            try:
                line = read(">>> ")
            except EOFError:
                print()
                return
            except KeyboardInterrupt:
                print("\nUse Ctrl + d or /bye to exit.")
                continue
            if not line.strip():
                continue
            if line.startswith("/"):
                if self._command(line.strip()):
                    return
                continue
            try:
                text = _read_message(line, read)
            except EOFError:
                return
            self.session.messages.append({"role": "user", "content": text})
            try:
                answer = self._chat(self.session)
            except Exception as exc:  # a failed answer ends neither the session nor the history
                self.session.messages.pop()
                print(f"Error: {exc}")
                continue
            self.session.messages.append({"role": "assistant", "content": answer})

    def _command(self, line: str) -> bool:
        """Run one slash command; True means leave. A failing command ends nothing."""
        try:
            return self._dispatch(line)
        except Exception as exc:
            print(f"Error: {exc}")
            return False

    def _dispatch(self, line: str) -> bool:
        words = line.split(maxsplit=2)
        name = words[0]
        if name in {"/bye", "/exit"}:
            return True
        if name in {"/?", "/help"}:
            print(SET_HELP if len(words) > 1 and words[1] == "set" else HELP)
        elif name == "/clear":
            self.session.messages.clear()
            print("Cleared session context")
        elif name == "/set":
            self._set(words[1:])
        elif name == "/show":
            print(self._show(self.session.model, words[1] if len(words) > 1 else "info"))
        elif name == "/load" and len(words) > 1:
            self._exists(words[1])
            self.session.model = words[1]
            self.session.messages.clear()
            print(f"Loading model '{words[1]}'")
        elif name == "/save" and len(words) > 1:
            self._save(self.session, words[1])
            print(f"Created new model '{words[1]}'")
        else:
            print(f"Unknown command '{name}'. Type /? for help")
        return False

    def _set(self, args: list[str]) -> None:
        if not args:
            print(SET_HELP)
            return
        what, rest = args[0], args[1] if len(args) > 1 else ""
        session = self.session
        if what == "parameter":
            parts = rest.split(maxsplit=1)
            if len(parts) != 2:
                print("Usage: /set parameter <name> <value>")
                return
            try:
                value = coerce_option(parts[0], parts[1] if parts[0] != "stop" else shlex.split(parts[1]),
                                      from_text=parts[0] != "stop")
            except OptionError as exc:
                print(f"Couldn't set parameter: {exc}")
                return
            session.options[parts[0]] = value
            print(f"Set parameter '{parts[0]}' to '{parts[1]}'")
        elif what == "system":
            session.system = rest.strip().strip('"') if not rest.startswith('"""') else rest.strip('"').strip()
            print("Set system message.")
        elif what in {"verbose", "quiet"}:
            session.verbose = what == "verbose"
            print("Set 'verbose' mode." if session.verbose else "Set 'quiet' mode.")
        elif what == "format" and rest == "json":
            session.format_json = True
            print("Set format to 'json' mode.")
        elif what == "noformat":
            session.format_json = False
            print("Disabled format.")
        elif what in {"history", "nohistory"}:
            print(f"Set '{what}' mode.")
        else:
            print(f"Unknown command '/set {what}'. Type /? for help")


def _enable_history() -> None:
    """Line editing and a history file, as Ollama keeps (~/.herd/history), unless disabled."""
    if os.environ.get("HERD_NOHISTORY") or os.environ.get("OLLAMA_NOHISTORY") or not sys.stdin.isatty():
        return
    with contextlib.suppress(ImportError, OSError):
        import atexit
        import readline

        path = Path("~/.herd/history").expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            readline.read_history_file(path)
        atexit.register(readline.write_history_file, path)
