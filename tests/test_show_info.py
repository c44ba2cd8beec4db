"""`herd show` prints what `ollama show` prints for the same /api/show answer (the expected
texts are those of Ollama's cmd tests for showInfo)."""

from __future__ import annotations

import subprocess
import sys

from herd.show_info import render_info, render_section

DETAILS = {"family": "test", "parameter_size": "7B", "quantization_level": "FP16"}


def test_bare_details() -> None:
    assert render_info({"details": DETAILS}) == (
        "  Model\n"
        "    architecture    test    \n"
        "    parameters      7B      \n"
        "    quantization    FP16    \n"
        "\n")


def test_model_info_rows() -> None:
    info = {"details": DETAILS, "model_info": {"general.architecture": "test", "general.parameter_count": 7e9,
                                               "test.context_length": 0, "test.embedding_length": 0}}
    assert render_info(info) == (
        "  Model\n"
        "    architecture        test    \n"
        "    parameters          7B      \n"
        "    context length      0       \n"
        "    embedding length    0       \n"
        "    quantization        FP16    \n"
        "\n")


def test_parameters_capabilities_system_and_license() -> None:
    info = {"details": DETAILS, "capabilities": ["vision", "tools"],
            "parameters": "\n\t\t\tstop never\n\t\t\tstop gonna\n\t\t\ttemperature 99",
            "system": "You are a pirate!\nAhoy, matey!\nWeigh anchor!\n\t\t\t",
            "license": "MIT License\nCopyright (c) Ollama\n"}
    assert render_info(info) == (
        "  Model\n"
        "    architecture    test    \n"
        "    parameters      7B      \n"
        "    quantization    FP16    \n"
        "\n"
        "  Capabilities\n"
        "    vision    \n"
        "    tools     \n"
        "\n"
        "  Parameters\n"
        "    stop           never    \n"
        "    stop           gonna    \n"
        "    temperature    99       \n"
        "\n"
        "  System\n"
        "    You are a pirate!    \n"
        "    Ahoy, matey!         \n"
        "    ...                  \n"
        "\n"
        "  License\n"
        "    MIT License             \n"
        "    Copyright (c) Ollama    \n"
        "\n")


def test_single_sections_print_like_ollama() -> None:
    info = {"license": "MIT\nsecond line", "system": "Be brief.", "template": "{{ .Prompt }}", "modelfile": "FROM x"}
    assert render_section(info, "license") == "MIT\nsecond line\n"  # fmt.Println
    assert render_section(info, "modelfile") == "FROM x\n"
    assert render_section(info, "system") == "Be brief."  # fmt.Print
    assert render_section(info, "template") == "{{ .Prompt }}"
    assert render_section({}, "license") == "\n"


def test_only_one_section_flag() -> None:
    result = subprocess.run([sys.executable, "-m", "herd", "show", "m", "--license", "--system"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "only one of '--license', '--modelfile', '--parameters', '--system', or '--template'" in result.stderr
