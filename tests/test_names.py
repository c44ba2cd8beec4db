"""Model names and digests parse exactly as Ollama's, and nothing unsafe gets through."""

from __future__ import annotations

import pytest

from herd.store.names import (
    InvalidDigest,
    InvalidModelName,
    ModelName,
    digest_hex,
    parse_digest,
    parse_name,
)

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("smollm2", ("registry.ollama.ai", "library", "smollm2", "latest")),
        ("smollm2:135m", ("registry.ollama.ai", "library", "smollm2", "135m")),
        ("llama3.2:3b-instruct-q4_K_M", ("registry.ollama.ai", "library", "llama3.2", "3b-instruct-q4_K_M")),
        ("me/foo", ("registry.ollama.ai", "me", "foo", "latest")),
        ("example.com/me/foo:v1", ("example.com", "me", "foo", "v1")),
        ("localhost:5000/me/foo", ("localhost:5000", "me", "foo", "latest")),
        ("localhost:5000/me/foo:7b", ("localhost:5000", "me", "foo", "7b")),
        ("https://example.com/me/foo:v1", ("example.com", "me", "foo", "v1")),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
         ("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M")),
        ("_x/_y:_z", ("registry.ollama.ai", "_x", "_y", "_z")),
        ("a" * 80 + ":" + "b" * 80, ("registry.ollama.ai", "library", "a" * 80, "b" * 80)),
    ],
)
def test_valid_names_fill_ollama_defaults(text: str, parts: tuple[str, str, str, str]) -> None:
    assert parse_name(text).manifest_parts() == parts


@pytest.mark.parametrize(
    "text",
    [
        "",
        "..",
        ".",
        "../../etc/passwd",
        "/etc/passwd",
        "..%2f",
        "%2e%2e/x",
        "a\\b",
        "foo\x00bar",
        "foo:\x00",
        "\uff0e\uff0e\uff0fx",  # fullwidth dots and slash
        "-rf",
        "foo:",
        ":tag",
        "/foo",
        "me/",
        "a/b/c/d",
        "a//b",
        "me.space/foo",  # namespaces have no dots
        "foo bar",
        "foo\n",
        "foo:tag\n",
        "foo:bar:baz",
        "a" * 81,
        "foo:" + "b" * 81,
        "x" * 10_000,
        "ftp://host/me/foo",
        "https://foo",
        "foo@sha256:" + HEX,
        "ns/.hidden",
        "ns/foo:.tag",
    ],
)
def test_invalid_names_are_refused(text: str) -> None:
    with pytest.raises(InvalidModelName):
        parse_name(text)


def test_host_may_be_up_to_350_characters() -> None:
    host = "h" * 350
    assert parse_name(f"{host}/ns/m").host == host
    with pytest.raises(InvalidModelName):
        parse_name(f"{host}h/ns/m")


def test_error_message_names_the_bad_part_visibly() -> None:
    with pytest.raises(InvalidModelName) as err:
        parse_name("foo\x00bar")
    assert "\\u0000" in str(err.value)
    assert "model" in str(err.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("smollm2:135m", "smollm2:135m"),
        ("smollm2", "smollm2:latest"),
        ("me/foo", "me/foo:latest"),
        ("Registry.Ollama.AI/Library/foo", "foo:latest"),
        ("example.com/library/foo:v1", "example.com/library/foo:v1"),
    ],
)
def test_display_is_ollamas_shortest_form(text: str, shown: str) -> None:
    assert parse_name(text).display() == shown
    assert str(parse_name(text)) == shown


def test_full_form_always_has_every_part() -> None:
    assert parse_name("foo").full() == "registry.ollama.ai/library/foo:latest"


def test_names_compare_case_insensitively_but_keep_their_case() -> None:
    upper, lower = parse_name("Me/Foo:Latest"), parse_name("me/foo")
    assert upper.same_model(lower)
    assert upper.model == "Foo"
    assert upper != lower


def test_model_name_constructor_validates_parts() -> None:
    with pytest.raises(InvalidModelName):
        ModelName("registry.ollama.ai", "..", "foo", "latest")
    with pytest.raises(InvalidModelName):
        ModelName("registry.ollama.ai", "library", "foo", "a/b")


def test_scheme_is_kept_but_not_part_of_identity() -> None:
    name = parse_name("http://localhost:5000/me/foo")
    assert name.scheme == "http"
    assert name == parse_name("localhost:5000/me/foo")


@pytest.mark.parametrize("text", [f"sha256:{HEX}", f"sha256-{HEX}", f"sha256:{HEX.upper()}"])
def test_valid_digests_are_canonicalised(text: str) -> None:
    assert parse_digest(text) == f"sha256:{HEX}"
    assert digest_hex(text) == HEX


@pytest.mark.parametrize(
    "text",
    [
        "",
        HEX,
        f"sha256:{HEX[:63]}",
        f"sha256:{HEX}a",
        f"sha256:../{HEX[:61]}",
        "sha256:../x",
        f"sha512:{HEX}",
        f"sha256_{HEX}",
        f"sha256:{HEX}\n",
        f"sha256:{'g' * 64}",
        f" sha256:{HEX}",
    ],
)
def test_invalid_digests_are_refused(text: str) -> None:
    with pytest.raises(InvalidDigest):
        parse_digest(text)
