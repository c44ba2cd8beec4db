"""CPU time used by the processes of a run, to show where the cores went, and by everything
else on the machine (the benchmark shares it).

Linux only: utime + stime from /proc/PID/stat (whole process, all threads) and the busy time
of all CPUs from /proc/stat.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: the fields after it start past the last ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent on anything but idle/iowait since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / _TICK  # user..steal; guest time is already in user


@dataclass
class CpuMeter:
    """CPU seconds of each named process between `start()` and `stop()`, plus "others": what
    the rest of the machine used meanwhile."""

    pids: Mapping[str, int]

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._busy_before = machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        used = {name: cpu_seconds(pid) - self._before[name] for name, pid in self.pids.items()}
        used["others"] = max(0.0, machine_busy_seconds() - self._busy_before - sum(used.values()))
        return used


def share_of_wall(used: Mapping[str, float], wall_s: float) -> str:
    """'gateway 0.41, worker 1.20' : cores used on average, per process."""
    return ", ".join(f"{name} {seconds / wall_s:.2f}" for name, seconds in used.items())


def others_busy(exclude: Mapping[str, int], interval_s: float) -> float:
    """Cores the rest of the machine (every process but `exclude`) kept busy over interval_s."""
    meter = CpuMeter(exclude)
    meter.start()
    time.sleep(interval_s)
    return meter.stop()["others"] / interval_s


def wait_for_quiet(exclude: Mapping[str, int], *, threshold: float = 0.25, max_wait_s: float = 60.0) -> float:
    """Wait (up to max_wait_s) until the rest of the machine uses under `threshold` cores for two
    seconds in a row; return what it used in the last second looked at."""
    deadline = time.monotonic() + max_wait_s
    quiet = 0
    busy = 0.0
    while time.monotonic() < deadline and quiet < 2:
        busy = others_busy(exclude, 1.0)
        quiet = quiet + 1 if busy < threshold else 0
    return busy
