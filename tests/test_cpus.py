"""The auto thread count: physical cores this process may use, shared among local workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from herd import cpus


def _cpuinfo(pairs: list[tuple[int, int]]) -> str:
    """/proc/cpuinfo text for logical CPUs 0.. with these (package, core) pairs."""
    return "\n\n".join(f"processor\t: {i}\nvendor_id\t: x\nphysical id\t: {package}\ncore id\t\t: {core}\n"
                       for i, (package, core) in enumerate(pairs))


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """8 logical CPUs: 2 packages of 2 cores, each core with 2 hyperthreads."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    (tmp_path / "cpuinfo").write_text(_cpuinfo([(0, 0), (0, 1), (1, 0), (1, 1)] * 2))
    (tmp_path / "cgroup").mkdir()
    return tmp_path


def _cores(machine: Path) -> int:
    return cpus.usable_cores(cpuinfo_path=machine / "cpuinfo", cgroup_root=machine / "cgroup")


def test_hyperthreads_count_once(machine: Path) -> None:
    assert _cores(machine) == 4


def test_affinity_mask_limits_the_cores(machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 4})  # both threads of one core
    assert _cores(machine) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    assert _cores(machine) == 3


def test_cgroup_quota_limits_the_cores(machine: Path) -> None:
    (machine / "cgroup" / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert _cores(machine) == 2
    (machine / "cgroup" / "cpu.max").write_text("max 100000\n")
    assert _cores(machine) == 4


def test_without_core_ids_every_allowed_cpu_counts(machine: Path) -> None:
    (machine / "cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 50\n\nprocessor\t: 1\nBogoMIPS\t: 50\n")  # arm64
    assert _cores(machine) == 8


def test_workers_share_the_cores() -> None:
    cores = cpus.usable_cores()
    assert cpus.threads_per_worker(1) == cores
    assert cpus.threads_per_worker(2) == max(1, cores // 2)
    assert cpus.threads_per_worker(cores * 4) == 1
