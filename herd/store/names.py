"""Model names and blob digests, validated at the parse boundary.

Names follow Ollama's `types/model/name.go`: `[scheme://][host/][namespace/]model[:tag]` with
defaults `registry.ollama.ai`, `library`, `latest`. Every part is checked against an anchored,
ASCII-only pattern, so a valid name can always be used as path components under the store
(no `..`, no separators, no NUL). Digests follow `manifest/paths.go`; accepting any other
shape is what made CVE-2024-37032 ("Probllama") a path traversal.
"""

from __future__ import annotations

import dataclasses
import json
import re

DEFAULT_SCHEME = "https"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

# A part starts with a letter, digit or underscore, so `.`/`..` and hidden files are impossible.
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}")
_MODEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_TAG = _MODEL
_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")

# Longest valid name: scheme + host + namespace + model + tag + separators; anything longer is
# rejected before any pattern runs.
_MAX_NAME_LEN = len("https://") + 350 + 1 + 80 + 1 + 80 + 1 + 80

_RULES = {
    "host": (_HOST, "1-350 characters from [A-Za-z0-9_.:-]"),
    "namespace": (_NAMESPACE, "1-80 characters from [A-Za-z0-9_-]"),
    "model": (_MODEL, "1-80 characters from [A-Za-z0-9_.-]"),
    "tag": (_TAG, "1-80 characters from [A-Za-z0-9_.-]"),
}


class InvalidModelName(ValueError):
    """A model name that Ollama's rules reject."""


class InvalidDigest(ValueError):
    """A blob digest that is not `sha256:<64 hex>` (or `sha256-<64 hex>`)."""


def _shown(text: str) -> str:
    # JSON quoting makes NUL, newlines and other control characters visible in messages.
    return json.dumps(text if len(text) <= 100 else text[:100] + "...")


def _check_part(kind: str, value: str, original: str) -> None:
    pattern, rule = _RULES[kind]
    if not pattern.fullmatch(value):
        raise InvalidModelName(
            f"invalid model name {_shown(original)}: {kind} {_shown(value)} must be {rule}, "
            "starting with a letter, digit or underscore"
        )


@dataclasses.dataclass(frozen=True)
class ModelName:
    """A fully qualified model name; the constructor validates every part."""

    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = dataclasses.field(default=DEFAULT_SCHEME, compare=False)

    def __post_init__(self) -> None:
        for kind in ("host", "namespace", "model", "tag"):
            _check_part(kind, getattr(self, kind), self.full())
        if self.scheme not in ("http", "https"):
            raise InvalidModelName(f"invalid model name {_shown(self.full())}: scheme must be http or https")

    def display(self) -> str:
        """Ollama's DisplayShortest: drop the default host, then the default namespace."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def full(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def manifest_parts(self) -> tuple[str, str, str, str]:
        """Path components of the manifest under `manifests/`."""
        return (self.host, self.namespace, self.model, self.tag)

    def fold(self) -> tuple[str, str, str, str]:
        """Case-folded parts: Ollama treats `Mistral` and `mistral` as the same model."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def same_model(self, other: ModelName) -> bool:
        return self.fold() == other.fold()

    def __str__(self) -> str:
        return self.display()


def _cut_last(text: str, sep: str) -> tuple[str, str] | None:
    i = text.rfind(sep)
    return None if i < 0 else (text[:i], text[i + len(sep) :])


def parse_name(text: str) -> ModelName:
    """Parse `[scheme://][host/][namespace/]model[:tag]`, filling Ollama's defaults.

    An explicit separator with nothing on one side (`foo:`, `/foo`) is an error, as in Ollama.
    """
    if not isinstance(text, str) or not text:
        raise InvalidModelName("invalid model name: the name is empty")
    if len(text) > _MAX_NAME_LEN:
        raise InvalidModelName(f"invalid model name {_shown(text)}: longer than {_MAX_NAME_LEN} characters")
    rest, tag = text, DEFAULT_TAG
    # The tag is only what follows a ':' after the last '/', so a host port is not a tag.
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag = rest.rsplit(":", 1)
    namespace, host, scheme = DEFAULT_NAMESPACE, DEFAULT_HOST, DEFAULT_SCHEME
    cut = _cut_last(rest, "/")
    if cut is None:
        model = rest
    else:
        rest, model = cut
        cut = _cut_last(rest, "/")
        if cut is None:
            namespace = rest
        else:
            host, namespace = cut
            if "://" in host:
                scheme, host = host.split("://", 1)
    for kind, value in (("host", host), ("namespace", namespace), ("model", model), ("tag", tag)):
        _check_part(kind, value, text)
    return ModelName(host, namespace, model, tag, scheme=scheme)


def parse_digest(text: str) -> str:
    """Validate a blob digest and return its canonical form `sha256:<64 lowercase hex>`."""
    match = _DIGEST.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidDigest(f"invalid digest {_shown(str(text))}: expected sha256:<64 hex digits>")
    return "sha256:" + match.group(1).lower()


def digest_hex(text: str) -> str:
    """The 64 hex digits of a validated digest."""
    return parse_digest(text)[len("sha256:") :]
