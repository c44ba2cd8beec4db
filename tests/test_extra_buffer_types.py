"""llama.cpp's extra buffer types: off on AMX CPUs (their kernels crash there), on elsewhere,
where a repackable model (Q4_0 here, requantized from the demo's Q4_1) must decode the same
text alone and batched."""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp.llama_cpp as llama
import pytest

from herd.demo import demo_gguf
from tests.test_engine import STORY, chat, finished, greedy, run
from worker.engine import Engine
from worker.llama_model import cpu_has_amx

INTEL_AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile amx_int8\n"
AMD_EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16\n"


@pytest.mark.parametrize(("cpuinfo", "amx"), [(INTEL_AMX, True), (AMD_EPYC, False)])
def test_amx_is_read_from_the_cpu_flags(tmp_path: Path, cpuinfo: str, amx: bool) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert cpu_has_amx(str(path)) is amx


def test_an_unreadable_cpuinfo_counts_as_amx(tmp_path: Path) -> None:
    assert cpu_has_amx(str(tmp_path / "missing")) is True


@pytest.fixture(scope="module")
def q4_0_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    params = llama.llama_model_quantize_default_params()
    params.ftype = 2  # LLAMA_FTYPE_MOSTLY_Q4_0: what the CPU repack kernels take
    params.allow_requantize = True
    params.nthread = 2
    out = tmp_path_factory.mktemp("q4_0") / "smollm2-q4_0.gguf"
    assert llama.llama_model_quantize(str(demo_gguf()).encode(), str(out).encode(), ctypes.byref(params)) == 0
    return str(out)


def test_a_repackable_model_decodes_the_same_alone_and_batched(q4_0_model: str) -> None:
    engine = Engine(q4_0_model, n_parallel=4, ctx_per_seq=256, n_threads=2)
    try:
        alone = run(engine, {"alone": (STORY, greedy(32))})["alone"]
        assert finished(alone).eval_count == 32 and alone.text
        others = {f"other{i}": (chat(f"Count to {i + 5}."), greedy(40)) for i in range(3)}
        batched = run(engine, {"story": (STORY, greedy(32)), **others})
        assert batched["story"].text == alone.text
    finally:
        engine.close()
