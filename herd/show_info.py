"""`herd show MODEL` as `ollama show` prints it (cmd/cmd.go showInfo): titled tables, each row
indented by one empty cell, every cell padded to its column and followed by four spaces (Go's
tablewriter with no borders), and a blank line after each table."""

from __future__ import annotations

from typing import Any

from herd.store.gguf import human_number

_PAD = "    "


def _table(title: str, rows: list[list[str]]) -> str:
    cells = [["", *row] for row in rows]
    columns = max(len(row) for row in cells)
    cells = [row + [""] * (columns - len(row)) for row in cells]
    widths = [max(len(row[i]) for row in cells) for i in range(columns)]
    lines = ["".join(cell.ljust(width) + _PAD for cell, width in zip(row, widths, strict=True)) for row in cells]
    return f"  {title}\n" + "".join(line + "\n" for line in lines) + "\n"


def _number(value: Any) -> str | None:
    """A number as Go's FormatFloat(v, 'f', -1, 64) prints it; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return str(int(value))


def _head(text: str, n: int) -> list[list[str]]:
    """The first n non-blank lines, trimmed, then `...` if there were more."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [[line] for line in lines[:n]] + ([["..."]] if len(lines) > n else [])


def _model_rows(info: dict[str, Any]) -> list[list[str]]:
    details = info.get("details") or {}
    model_info = info.get("model_info")
    rows: list[list[str]] = []
    if model_info:
        arch = model_info.get("general.architecture")
        if isinstance(arch, str) and arch:
            rows.append(["architecture", arch])
        count = _number(model_info.get("general.parameter_count"))
        parameters = details.get("parameter_size") or (human_number(int(count)) if count else "")
        if parameters:
            rows.append(["parameters", parameters])
        for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
            value = _number(model_info.get(f"{arch}.{key}"))
            if value is not None:
                rows.append([label, value])
    else:
        rows += [["architecture", details.get("family", "")], ["parameters", details.get("parameter_size", "")]]
    rows.append(["quantization", details.get("quantization_level", "")])
    if info.get("requires"):
        rows.append(["requires", str(info["requires"])])
    return rows


def render_info(info: dict[str, Any]) -> str:
    """The whole `ollama show MODEL` text for an /api/show response."""
    out = _table("Model", _model_rows(info))
    if info.get("capabilities"):
        out += _table("Capabilities", [[str(c)] for c in info["capabilities"]])
    if info.get("parameters"):
        out += _table("Parameters", [line.split() for line in str(info["parameters"]).splitlines() if line.strip()])
    if info.get("system"):
        out += _table("System", _head(str(info["system"]), 2))
    if info.get("license"):
        out += _table("License", _head(str(info["license"]), 2))
    return out


def render_section(info: dict[str, Any], section: str) -> str:
    """`ollama show --license` and friends: license, modelfile and parameters end with a newline
    (Println), system and template are printed as they are (Print)."""
    text = str(info.get(section) or "")
    return text if section in ("system", "template") else text + "\n"
