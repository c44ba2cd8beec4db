"""Modelfiles parse like Ollama's parser, fail with line-numbered errors, and render back."""

from __future__ import annotations

import logging

import pytest

from herd.store.modelfile import Modelfile, ModelfileError, parse_modelfile, render_modelfile
from herd.store.options import (
    OPTIONS,
    OptionError,
    UnknownOption,
    coerce_option,
    default_options,
    known_option,
    parse_options,
)


def test_every_instruction_is_read() -> None:
    mf = parse_modelfile(
        "# a comment\n"
        "FROM ./model.gguf\n"
        "PARAMETER temperature 0.7\n"
        "PARAMETER num_ctx 4096\n"
        "PARAMETER use_mmap false\n"
        "PARAMETER stop <|im_end|>\n"
        "PARAMETER stop User:\n"
        "TEMPLATE {{ .Prompt }}\n"
        "SYSTEM You are a pirate.\n"
        "ADAPTER ./lora.gguf\n"
        "LICENSE MIT\n"
        "LICENSE Apache-2.0\n"
        "MESSAGE user Hi there\n"
        "MESSAGE assistant Ahoy!\n"
        "MESSAGE tool {\"ok\": true}\n"
        "REQUIRES 0.5.1\n"
    )
    assert mf.from_ == "./model.gguf"
    assert mf.parameters == {"temperature": 0.7, "num_ctx": 4096, "use_mmap": False,
                             "stop": ["<|im_end|>", "User:"]}
    assert mf.template == "{{ .Prompt }}"
    assert mf.system == "You are a pirate."
    assert mf.adapters == ["./lora.gguf"]
    assert mf.licenses == ["MIT", "Apache-2.0"]
    assert mf.messages == [("user", "Hi there"), ("assistant", "Ahoy!"), ("tool", '{"ok": true}')]
    assert mf.requires == "0.5.1"


def test_instructions_are_case_insensitive_and_whitespace_tolerant() -> None:
    mf = parse_modelfile("\ufeff  from\tllama3  \nParameter   top_k\t20\n\n\nsystem   hi   \n")
    assert mf.from_ == "llama3"
    assert mf.parameters == {"top_k": 20}
    assert mf.system == "hi"


def test_triple_quoted_values_span_lines_verbatim() -> None:
    mf = parse_modelfile('FROM x\nTEMPLATE """{{ if .System }}<|system|>\n{{ .System }}\n{{ end }}"""\nSYSTEM "a\nb"\n'
                         'MESSAGE assistant """one\n\ntwo"""\nPARAMETER stop """\n"""\n')
    assert mf.template == "{{ if .System }}<|system|>\n{{ .System }}\n{{ end }}"
    assert mf.system == "a\nb"
    assert mf.messages == [("assistant", "one\n\ntwo")]
    assert mf.parameters == {"stop": ["\n"]}


def test_quoted_values_may_hold_quotes_and_hashes() -> None:
    mf = parse_modelfile('FROM x\nSYSTEM """Say "hi"\n# not a comment\n"""\nPARAMETER stop "<|end|>"\n')
    assert mf.system == 'Say "hi"\n# not a comment\n'
    assert mf.parameters["stop"] == ["<|end|>"]


def test_windows_line_endings_and_a_utf16_file_are_read() -> None:
    text = "FROM x\r\nSYSTEM \"\"\"a\r\nb\"\"\"\r\n"
    assert parse_modelfile(text).system == "a\nb"
    assert parse_modelfile(text.encode("utf-16")).system == "a\nb"
    assert parse_modelfile(b"\xef\xbb\xbfFROM x\n").from_ == "x"


def test_a_comment_is_only_a_comment_at_line_start() -> None:
    mf = parse_modelfile("FROM x # not a comment\n   # a comment\n")
    assert mf.from_ == "x # not a comment"


def test_control_characters_are_dropped_from_values() -> None:
    assert parse_modelfile("FROM x\nSYSTEM a\x00b\x1bc\n").system == "abc"


def test_later_template_and_system_replace_earlier_ones() -> None:
    mf = parse_modelfile("FROM x\nSYSTEM one\nSYSTEM two\nPARAMETER seed 1\nPARAMETER seed 2\n")
    assert mf.system == "two"
    assert mf.parameters == {"seed": 2}


def test_deprecated_parameters_warn_and_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        mf = parse_modelfile("FROM x\nPARAMETER penalize_newline true\nPARAMETER use_mlock true\n")
    assert mf.parameters == {}
    assert mf.warnings == ["parameter penalize_newline is deprecated", "parameter use_mlock is deprecated"]
    assert "penalize_newline" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no FROM line"),
        ("# only a comment\nSYSTEM hi\n", "no FROM line"),
        ("FROM x\nFOO bar\n", '(line 2): command must be one of "from", "license", "template", "system", '
                              '"adapter", "parameter", "message", or "requires"'),
        ("FROM x\nFROM:y\n", "(line 2): command must be one of"),
        ("FROM x\n1FROM y\n", "(line 2): command must be one of"),
        ("FROM\n", "(line 1): missing value for FROM"),
        ("FROM \n", "(line 1): FROM needs a model name or a path"),
        ("FROM x\nFROM y\n", "(line 2): only one FROM line is allowed (first on line 1)"),
        ("FROM x\nMESSAGE robot hi\n", '(line 2): message role must be one of "system", "user", "assistant", '
                                       'or "tool"'),
        ("FROM x\nMESSAGE User hi\n", "(line 2): message role must be one of"),
        ("FROM x\nMESSAGE user\n", "(line 2): message role must be one of"),
        ("FROM x\nPARAMETER\n", "(line 2): missing value for PARAMETER"),
        ("FROM x\nPARAMETER temperature\n", "(line 2): missing value for parameter temperature"),
        ("FROM x\nPARAMETER temp-erature 1\n", "(line 2): invalid parameter name 'temp-erature'"),
        ("FROM x\nPARAMETER foo 1\n", "(line 2): unknown parameter 'foo'"),
        ("FROM x\nPARAMETER top_k high\n", '(line 2): option "top_k" must be of type integer'),
        ("FROM x\nPARAMETER top_k 1.5\n", '(line 2): option "top_k" must be of type integer'),
        ("FROM x\nPARAMETER temperature hot\n", '(line 2): option "temperature" must be of type float32'),
        ("FROM x\nPARAMETER temperature nan\n", '(line 2): option "temperature" must be of type float32'),
        ("FROM x\nPARAMETER use_mmap maybe\n", '(line 2): option "use_mmap" must be of type boolean'),
        ("FROM x\nPARAMETER seed 99999999999999999999\n", '(line 2): option "seed" is out of range'),
        ('FROM x\nSYSTEM """never closed\nstill going\n', "(line 2): unterminated quoted value"),
        ('FROM x\n\nTEMPLATE "open\n', "(line 3): unterminated quoted value"),
        ('FROM x\nSYSTEM "a" b\n', "(line 2): unterminated quoted value"),
        ("FROM x\nADAPTER \n", "(line 2): ADAPTER needs a path"),
        ("FROM x\nREQUIRES latest\n", "(line 2): requires must be a valid semver"),
    ],
)
def test_bad_modelfiles_fail_with_the_line(text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as err:
        parse_modelfile(text)
    assert str(err.value).startswith(message)


def test_invalid_utf8_is_reported() -> None:
    with pytest.raises(ModelfileError, match="not valid UTF-8"):
        parse_modelfile(b"FROM x\nSYSTEM \xff\n")


def test_rendered_modelfile_parses_back_to_the_same_model() -> None:
    original = Modelfile(
        from_="/blobs/sha256-abc",
        parameters={"stop": ["<|im_end|>", "\n\n", " User:"], "temperature": 0.7, "top_k": 20,
                    "num_ctx": 4096, "use_mmap": True, "repeat_penalty": 1.0},
        template='{{ if .System }}"{{ .System }}"{{ end }}\n{{ .Prompt }}',
        system="  padded  ",
        adapters=["/blobs/sha256-def"],
        licenses=["MIT\nPermission is hereby granted", '"quoted"'],
        messages=[("user", "hi"), ("assistant", 'He said "yes"\nand left')],
        requires="0.6.0",
    )
    text = render_modelfile(original)
    assert parse_modelfile(text) == original


def test_rendering_follows_ollama_show_layout() -> None:
    text = render_modelfile(
        Modelfile(from_="/b/sha256-1", parameters={"stop": ["a", "b"], "temperature": 1.0},
                  template="{{ .Prompt }}", system="Be brief.", messages=[("user", "x y")]),
        show_name="smollm2:135m",
    )
    assert text == (
        '# Modelfile generated by "herd show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        "# FROM smollm2:135m\n"
        "\n"
        "FROM /b/sha256-1\n"
        "TEMPLATE {{ .Prompt }}\n"
        "SYSTEM Be brief.\n"
        "PARAMETER stop a\n"
        "PARAMETER stop b\n"
        "PARAMETER temperature 1\n"
        "MESSAGE user x y\n"
    )


# -- options (shared by the Modelfile and the API) ------------------------------------------


def test_api_options_are_coerced_like_ollama_from_map() -> None:
    assert coerce_option("top_k", 40) == 40
    assert coerce_option("top_k", 40.9) == 40  # JSON numbers truncate, as Go's int64(f)
    assert coerce_option("temperature", 1) == 1.0
    assert isinstance(coerce_option("temperature", 1), float)
    assert coerce_option("use_mmap", False) is False
    assert coerce_option("stop", ["a", "b"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("top_k", "40", 'option "top_k" must be of type integer'),
        ("top_k", True, 'option "top_k" must be of type integer'),
        ("temperature", "0.7", 'option "temperature" must be of type float32'),
        ("temperature", float("inf"), 'option "temperature" must be a finite number'),
        ("use_mmap", 1, 'option "use_mmap" must be of type boolean'),
        ("stop", "x", 'option "stop" must be of type array'),
        ("stop", ["x", 1], 'option "stop" must be of an array of strings'),
        ("num_predict", 2**63, 'option "num_predict" is out of range'),
    ],
)
def test_api_option_type_errors_use_ollamas_words(name: str, value: object, message: str) -> None:
    with pytest.raises(OptionError) as err:
        coerce_option(name, value)
    assert str(err.value) == message


def test_api_ignores_unknown_and_deprecated_options_but_checks_known_ones() -> None:
    assert not known_option("penalize_newline")
    assert known_option("mirostat")
    assert parse_options({"top_k": 5, "bogus": 1, "penalize_newline": True, "seed": None}) == {"top_k": 5}
    with pytest.raises(UnknownOption, match="unknown parameter 'bogus'"):
        coerce_option("bogus", 1)
    with pytest.raises(OptionError):
        parse_options({"top_k": "many"})


def test_defaults_match_ollamas_table() -> None:
    defaults = default_options()
    assert defaults["temperature"] == 0.8
    assert defaults["top_k"] == 40
    assert defaults["top_p"] == 0.9
    assert defaults["repeat_penalty"] == 1.0
    assert defaults["num_predict"] == -1
    assert defaults["stop"] == []
    assert "num_ctx" not in defaults  # decided at load time
    stop = defaults["stop"]
    assert isinstance(stop, list)
    stop.append("x")
    assert default_options()["stop"] == []
    assert set(OPTIONS) >= {"num_ctx", "min_p", "typical_p", "num_gpu", "main_gpu", "num_thread", "seed"}
