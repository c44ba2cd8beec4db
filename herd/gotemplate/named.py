"""Ollama's named templates (template.Named): the Go template whose Jinja twin is nearest a GGUF's."""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


def levenshtein(a: str, b: str) -> int:
    """Edit distance in code points (Go runes), by Hyyrö's bit-parallel algorithm."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    masks: dict[str, int] = {}
    for i, c in enumerate(b):
        masks[c] = masks.get(c, 0) | (1 << i)
    full = (1 << len(b)) - 1
    top = 1 << (len(b) - 1)
    pv, mv, score = full, 0, len(b)
    for c in a:
        eq = masks.get(c, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return score


def _lower_bound(a: str, ca: Counter[str], b: str, cb: Counter[str]) -> int:
    """A cheap floor under levenshtein(a, b): the length gap, and the characters one lacks."""
    return max(abs(len(a) - len(b)), sum((ca - cb).values()), sum((cb - ca).values()))


@dataclass(frozen=True)
class NamedTemplate:
    name: str
    jinja: str  # the GGUF chat template this entry stands for
    source: str  # the Go template
    stop: tuple[str, ...]  # its default stop parameters


@functools.lru_cache(maxsize=4)
def load_named_templates(directory: Path) -> tuple[NamedTemplate, ...]:
    """index.json's entries in order, each with its NAME.gotmpl (CRLF normalised) and NAME.json stops."""
    entries = json.loads((directory / "index.json").read_text(encoding="utf-8"))
    named = []
    for entry in entries:
        name = entry["name"]
        source = (directory / f"{name}.gotmpl").read_bytes().replace(b"\r\n", b"\n").decode("utf-8")
        params = directory / f"{name}.json"
        stop = json.loads(params.read_text(encoding="utf-8")).get("stop") or [] if params.exists() else []
        named.append(NamedTemplate(name, entry["template"], source, tuple(stop)))
    return tuple(named)


def match_named_template(jinja_template: str, directory: Path) -> NamedTemplate | None:
    """template.Named: the first entry at the smallest edit distance, if that distance is below 100."""
    if not (directory / "index.json").is_file():
        return None
    best: NamedTemplate | None = None
    bound = 100  # only a distance below this, and below the best so far, can change the answer
    counts = Counter(jinja_template)
    for entry in load_named_templates(directory):
        if _lower_bound(jinja_template, counts, entry.jinja, Counter(entry.jinja)) >= bound:
            continue
        distance = levenshtein(jinja_template, entry.jinja)
        if distance < bound:
            best, bound = entry, distance
    return best
