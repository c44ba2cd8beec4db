"""The `herd` command: Ollama's verbs, talking to the server at HERD_HOST like `ollama` does."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from herd import __version__
from herd.config import Config, settings_table
from herd.repl import Repl, Session
from herd.show_info import render_info, render_section


class CliError(Exception):
    """A failure to report in one line, exit status 1."""


def _client(config: Config) -> httpx.Client:
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else None
    return httpx.Client(base_url=config.base_url, timeout=httpx.Timeout(10.0, read=None), headers=headers)


def _request(config: Config, method: str, path: str, body: Any = None) -> Any:
    try:
        with _client(config) as client:
            response = client.request(method, path, json=body)
    except httpx.ConnectError:
        raise CliError(f"could not connect to herd at {config.base_url}; is `herd serve` running?") from None
    if response.status_code >= 400:
        raise CliError(_error_text(response.content))
    return response.json() if response.content else None


def _error_text(content: bytes) -> str:
    try:
        error = json.loads(content)["error"]
    except (ValueError, KeyError, TypeError):
        return content.decode(errors="replace") or "request failed"
    return str(error["message"] if isinstance(error, dict) else error)


def _stream(config: Config, path: str, body: Any) -> Iterator[dict[str, Any]]:
    try:
        with _client(config) as client, client.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                raise CliError(_error_text(response.read()))
            for line in response.iter_lines():
                if line:
                    item = json.loads(line)
                    if "error" in item:
                        raise CliError(str(item["error"]))
                    yield item
    except httpx.ConnectError:
        raise CliError(f"could not connect to herd at {config.base_url}; is `herd serve` running?") from None


def _human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _ago(stamp: str) -> str:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    for unit, span in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= span:
            count = seconds // span
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "Less than a minute ago" if seconds > 1 else "Just now"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("    ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


# ---- verbs ---------------------------------------------------------------------------------


def cmd_serve(config: Config, _: argparse.Namespace) -> None:
    from herd.serve import serve

    serve(config)


def cmd_gateway(config: Config, _: argparse.Namespace) -> None:
    from gateway.__main__ import main

    main()


def cmd_worker(config: Config, _: argparse.Namespace) -> None:
    from worker.__main__ import main

    main()


def _upload_blob(config: Config, path: Path) -> str:
    """Send a local file to the server's store (unless it has it already); its digest."""
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    digest = f"sha256:{hasher.hexdigest()}"
    try:
        with _client(config) as client:
            if client.head(f"/api/blobs/{digest}").status_code == 200:
                return digest
            print(f"copying file {digest} 100%")
            with path.open("rb") as f:
                response = client.post(f"/api/blobs/{digest}", content=iter(lambda: f.read(1 << 20), b""))
    except httpx.ConnectError:
        raise CliError(f"could not connect to herd at {config.base_url}; is `herd serve` running?") from None
    if response.status_code >= 400:
        raise CliError(_error_text(response.content))
    return digest


def cmd_create(config: Config, args: argparse.Namespace) -> None:
    """Like `ollama create`: parse the Modelfile here, upload local files, create on the server."""
    from herd.store.modelfile import ModelfileError, parse_modelfile

    path = Path(args.file).expanduser()
    try:
        modelfile = parse_modelfile(path.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except ModelfileError as exc:
        raise CliError(str(exc)) from None
    body: dict[str, Any] = {
        "model": args.model, "stream": True, "parameters": modelfile.parameters, "template": modelfile.template,
        "system": modelfile.system, "license": modelfile.licenses or None,
        "messages": [{"role": role, "content": content} for role, content in modelfile.messages] or None,
    }
    print("gathering model components")
    if not _server_up(config):
        _create_locally(config, args.model, modelfile, path.parent, args.quantize)
        return
    source = Path(modelfile.from_).expanduser()
    source = source if source.is_absolute() else path.parent / source
    if source.is_file():
        body["files"] = {source.name: _upload_blob(config, source)}
    else:
        body["from"] = modelfile.from_
    body["adapters"] = _upload_adapters(config, modelfile.adapters, path.parent) or None
    body["quantize"] = args.quantize
    shown = ""
    for item in _stream(config, "/api/create", {k: v for k, v in body.items() if v is not None}):
        if item.get("status", "") != shown:  # a progress bar's updates repeat their status
            shown = item.get("status", "")
            print(shown)


def _upload_adapters(config: Config, adapters: list[str], base_dir: Path) -> dict[str, str]:
    """ADAPTER files, uploaded like FROM's: file name -> blob digest."""
    uploaded: dict[str, str] = {}
    for adapter in adapters:
        if adapter.startswith("sha256:"):
            uploaded[adapter] = adapter
            continue
        path = Path(adapter).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise CliError(f"ADAPTER {adapter}: no such file")
        uploaded[path.name] = _upload_blob(config, path)
    return uploaded


def _server_up(config: Config) -> bool:
    try:
        with _client(config) as client:
            client.head("/")
    except httpx.ConnectError:
        return False
    return True


def _create_locally(config: Config, name: str, modelfile: Any, base_dir: Path, quantize: str | None) -> None:
    """No server: write the model straight into the local store (e.g. preparing a host)."""
    from herd.store.store import ModelStore, StoreError

    print(f"herd is not running at {config.base_url}: creating in the store {config.models}")
    shown: list[str] = []

    def show(progress: Any) -> None:
        if progress.status not in shown[-1:]:  # a progress bar's updates repeat their status
            shown.append(progress.status)
            print(progress.status)

    try:
        record = ModelStore(config.models).create(name, modelfile, base_dir=base_dir.resolve(), quantize=quantize,
                                                  progress=show)
    except (StoreError, ValueError, OSError) as exc:
        raise CliError(str(exc)) from None
    print(f"success: created {record.name.display()}")


def cmd_cp(config: Config, args: argparse.Namespace) -> None:
    _request(config, "POST", "/api/copy", {"source": args.source, "destination": args.destination})
    print(f"copied '{args.source}' to '{args.destination}'")


def cmd_list(config: Config, _: argparse.Namespace) -> None:
    models = _request(config, "GET", "/api/tags")["models"]
    rows = [["NAME", "ID", "SIZE", "MODIFIED"]]
    rows += [[m["name"], m["digest"][:12], _human_size(m["size"]), _ago(m["modified_at"])] for m in models]
    print(_table(rows))


def _show_text(info: dict[str, Any], section: str) -> str:
    """One section of a model's details (`modelfile`, `parameters`, ...) or the summary (`info`)."""
    if section != "info":
        return str(info.get(section) or "")
    return render_info(info).rstrip("\n")


def cmd_show(config: Config, args: argparse.Namespace) -> None:
    sections = [f for f in ("license", "modelfile", "parameters", "system", "template") if getattr(args, f)]
    if len(sections) > 1:
        raise CliError("only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be "
                       "specified")
    info = _request(config, "POST", "/api/show", {"model": args.model})
    sys.stdout.write(render_section(info, sections[0]) if sections else render_info(info))


def _until(stamp: str) -> str:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = int((when - datetime.now(UTC)).total_seconds())
    if seconds > 100 * 365 * 86400:
        return "Forever"
    if seconds <= 1:
        return "Stopping..."
    for unit, span in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= span:
            count = seconds // span
            return f"{count} {unit}{'s' if count > 1 else ''} from now"
    raise AssertionError("unreachable")


def cmd_ps(config: Config, _: argparse.Namespace) -> None:
    models = _request(config, "GET", "/api/ps")["models"]
    rows = [["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "REPLICAS", "UNTIL"]]
    rows += [[m["name"], m["digest"][:12], _human_size(m["size"]), "100% CPU", str(m["context_length"]),
              str(m.get("replicas", 1)), _until(m["expires_at"])] for m in models]
    print(_table(rows))


def cmd_stop(config: Config, args: argparse.Namespace) -> None:
    _request(config, "POST", "/api/generate", {"model": args.model, "keep_alive": 0, "stream": False})


def cmd_rm(config: Config, args: argparse.Namespace) -> None:
    for name in args.models:
        _request(config, "DELETE", "/api/delete", {"model": name})
        print(f"deleted '{name}'")


def _chat(config: Config, session: Session) -> str:
    """Stream one answer to the terminal; return its text."""
    parts: list[str] = []
    final: dict[str, Any] = {}
    for item in _stream(config, "/api/chat", session.request()):
        text = item.get("message", {}).get("content", "")
        parts.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()
        if item.get("done"):
            final = item
    sys.stdout.write("\n\n" if sys.stdout.isatty() else "\n")
    if session.verbose and final:
        _print_stats(final)
    return "".join(parts)


def _print_stats(final: dict[str, Any]) -> None:
    def rate(count: int, ns: int) -> str:
        return f"{count / (ns / 1e9):.2f} tokens/s" if ns else "n/a"

    print(f"total duration:       {final['total_duration'] / 1e9:.6f}s", file=sys.stderr)
    print(f"load duration:        {final['load_duration'] / 1e9:.6f}s", file=sys.stderr)
    print(f"prompt eval count:    {final['prompt_eval_count']} token(s)", file=sys.stderr)
    print(f"prompt eval rate:     {rate(final['prompt_eval_count'], final['prompt_eval_duration'])}",
          file=sys.stderr)
    print(f"eval count:           {final['eval_count']} token(s)", file=sys.stderr)
    print(f"eval rate:            {rate(final['eval_count'], final['eval_duration'])}", file=sys.stderr)


def _save_session(config: Config, session: Session, name: str) -> None:
    body: dict[str, Any] = {"model": name, "from": session.model, "stream": False,
                            "messages": session.messages or None, "system": session.system,
                            "parameters": session.options or None}
    _request(config, "POST", "/api/create", {k: v for k, v in body.items() if v is not None})


def cmd_pull(config: Config, args: argparse.Namespace) -> None:
    from herd.transfer_cli import transfer

    transfer(config, "pull", args.model, insecure=args.insecure)


def cmd_push(config: Config, args: argparse.Namespace) -> None:
    from herd.transfer_cli import transfer

    transfer(config, "push", args.model, insecure=args.insecure)


def cmd_run(config: Config, args: argparse.Namespace) -> None:
    from herd.transfer_cli import ensure_model

    ensure_model(config, args.model, insecure=args.insecure)
    session = Session(args.model, verbose=args.verbose, keep_alive=args.keepalive, format_json=args.format == "json")
    prompt = " ".join(args.prompt)
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        prompt = f"{prompt}\n\n{piped}".strip() if prompt else piped.strip()
    if prompt:
        session.messages.append({"role": "user", "content": prompt})
        _chat(config, session)
        return
    _request(config, "POST", "/api/chat", {"model": args.model, "messages": [], "stream": False})  # load it now
    Repl(
        session,
        chat=lambda s: _chat(config, s),
        show=lambda model, section: _show_text(_request(config, "POST", "/api/show", {"model": model}), section),
        save=lambda s, name: _save_session(config, s, name),
        exists=lambda model: _request(config, "POST", "/api/show", {"model": model}),
    ).run()


def cmd_config(config: Config, args: argparse.Namespace) -> None:
    if args.markdown:
        print(settings_table(), end="")
        return
    for name, value in sorted(config.to_env().items()):
        print(f"{name}={value}")


# ---- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herd", description="Large language model runner for a team")
    parser.add_argument("-v", "--version", action="version", version=f"herd version {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")

    def verb(name: str, handler: Callable[[Config, argparse.Namespace], None], help_text: str,
             aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text, aliases=list(aliases))
        sub.set_defaults(handler=handler)
        return sub

    verb("serve", cmd_serve, "Start Redis (embedded unless HERD_REDIS_URL), workers and the gateway",
         aliases=("start",))
    verb("gateway", cmd_gateway, "Run one gateway against HERD_REDIS_URL")
    verb("worker", cmd_worker, "Run one worker against HERD_REDIS_URL")
    create = verb("create", cmd_create, "Create a model from a Modelfile")
    create.add_argument("model", metavar="MODEL")
    create.add_argument("-f", "--file", default="Modelfile", help="Name of the Modelfile (default: Modelfile)")
    create.add_argument("-q", "--quantize", help="Quantize model to this level (e.g. q4_K_M)")
    cp = verb("cp", cmd_cp, "Copy a model")
    cp.add_argument("source", metavar="SOURCE")
    cp.add_argument("destination", metavar="DESTINATION")
    verb("list", cmd_list, "List models", aliases=("ls",))
    show = verb("show", cmd_show, "Show information for a model")
    show.add_argument("model", metavar="MODEL")
    for flag in ("modelfile", "parameters", "template", "system", "license"):
        show.add_argument(f"--{flag}", action="store_true", help=f"Show the model's {flag}")
    rm = verb("rm", cmd_rm, "Remove a model")
    rm.add_argument("models", metavar="MODEL", nargs="+")
    verb("ps", cmd_ps, "List running models")
    stop = verb("stop", cmd_stop, "Stop a running model")
    stop.add_argument("model", metavar="MODEL")
    run = verb("run", cmd_run, "Run a model")
    run.add_argument("model", metavar="MODEL")
    run.add_argument("prompt", metavar="PROMPT", nargs="*")
    run.add_argument("--verbose", action="store_true", help="Show timings for the response")
    run.add_argument("--keepalive", help="Duration to keep the model loaded (e.g. 5m)")
    run.add_argument("--format", choices=["json"], help="Response format")
    run.add_argument("--insecure", action="store_true", help="Use an insecure registry (plain http) to pull it")
    for name, handler, text in (("pull", cmd_pull, "Pull a model from a registry"),
                                ("push", cmd_push, "Push a model to a registry")):
        transfer = verb(name, handler, text)
        transfer.add_argument("model", metavar="MODEL")
        transfer.add_argument("--insecure", action="store_true", help="Use an insecure registry (plain http)")
    config = verb("config", cmd_config, "Print the settings in effect")
    config.add_argument("--markdown", action="store_true", help="Print the table of every setting")
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Flags may come anywhere, as with `ollama` (`herd run MODEL --format json PROMPT`):
    argparse stops filling PROMPT at the first flag, so the words after it are added back."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "prompt", None) is not None and not any(word.startswith("-") for word in extra):
        args.prompt = [*args.prompt, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        build_parser().print_help()
        return
    config = Config.from_env()
    logging.basicConfig(level=logging.DEBUG if config.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: noise under a verb's own output (kept with HERD_DEBUG).
    logging.getLogger("httpx").setLevel(logging.DEBUG if config.debug else logging.WARNING)
    try:
        handler(config, args)
    except CliError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
