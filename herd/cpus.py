"""How many llama.cpp threads a worker should run when HERD_NUM_THREAD is 0 (auto).

One thread per physical core this process may use: hyperthread siblings share a core's
vector units (llama.cpp and Ollama count physical cores too), and a container's CPU quota or
affinity mask counts, not the host's size. Workers that share a machine must share its cores:
two processes each spinning as many OpenMP threads as there are cores decode several times
slower together than one alone (measured: 2 cores, 2 workers of 2 threads: 12 tok/s each,
against 133 for one), so `herd serve` divides the cores among the workers it starts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _allowed_cpus() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def _physical_cores(cpus: set[int], cpuinfo: str) -> int:
    """Distinct (package, core) pairs among `cpus`, from /proc/cpuinfo's text; 0 if unknown."""
    cores: set[tuple[str, str]] = set()
    processor: int | None = None
    package = ""
    for line in [*cpuinfo.splitlines(), ""]:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            processor, package = int(value), ""
        elif key == "physical id":
            package = value
        elif key == "core id" and processor in cpus:
            cores.add((package, value))
    return len(cores)


def _quota_cpus(cgroup_root: Path) -> float:
    """The cgroup v2 CPU quota in CPUs (`cpu.max`), inf when there is none."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return math.inf
    return math.inf if quota == "max" else int(quota) / int(period)


def usable_cores(*, cpuinfo_path: Path = Path("/proc/cpuinfo"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Physical cores this process may run on, at least 1."""
    cpus = _allowed_cpus()
    try:
        cores = _physical_cores(cpus, cpuinfo_path.read_text()) or len(cpus)
    except OSError:
        cores = len(cpus)
    quota = _quota_cpus(cgroup_root)
    return max(1, cores if math.isinf(quota) else min(cores, math.ceil(quota)))


def threads_per_worker(workers: int) -> int:
    """The auto thread count for each of `workers` worker processes on this machine."""
    return max(1, usable_cores() // max(1, workers))
