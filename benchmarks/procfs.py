"""CPU time and resident memory of a process tree, read from Linux's /proc.

A gunicorn service is one master and its workers: `tree_cpu_seconds` sums user and system time
over the master and all its living descendants, plus what the master has reaped from children
that exited (`cutime`/`cstime`), so a worker that died during a phase is still counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat that the bench uses; times in clock ticks."""

    pid: int
    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int


def parse_stat(text: str) -> ProcStat:
    """Parse one /proc/<pid>/stat line. The command name is in parentheses and may itself
    contain spaces and parentheses, so the fields are counted from the last ')'."""
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    pid = int(text[:open_paren].strip())
    comm = text[open_paren + 1 : close_paren]
    # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    fields = text[close_paren + 2 :].split()
    return ProcStat(
        pid=pid,
        comm=comm,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def parse_status_rss_kib(text: str) -> int:
    """VmRSS from /proc/<pid>/status, in KiB (0 for a kernel thread or a zombie)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def clock_ticks_per_second() -> int:
    return os.sysconf("SC_CLK_TCK")


def read_stat(pid: int) -> ProcStat | None:
    """None when the process has gone."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def rss_kib(pid: int) -> int:
    try:
        return parse_status_rss_kib((PROC / str(pid) / "status").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return 0


def all_stats() -> list[ProcStat]:
    stats = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                stats.append(stat)
    return stats


def descendants(root: int, stats: list[ProcStat]) -> list[int]:
    """Every process below `root` (children, their children, ...), in breadth-first order."""
    children: dict[int, list[int]] = {}
    for stat in stats:
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop(0)
        for child in sorted(children.get(parent, [])):
            found.append(child)
            frontier.append(child)
    return found


def tree_cpu_ticks(root: int, stats: list[ProcStat]) -> int:
    """utime+stime of `root` and its descendants, plus the root's reaped children's times."""
    by_pid = {stat.pid: stat for stat in stats}
    total = 0
    root_stat = by_pid.get(root)
    if root_stat is not None:
        total += root_stat.utime + root_stat.stime + root_stat.cutime + root_stat.cstime
    for pid in descendants(root, stats):
        stat = by_pid[pid]
        total += stat.utime + stat.stime
    return total


def tree_cpu_seconds(root: int) -> float:
    return tree_cpu_ticks(root, all_stats()) / clock_ticks_per_second()


def worker_pids(master: int) -> list[int]:
    """The master's direct children: gunicorn's workers."""
    return [stat.pid for stat in all_stats() if stat.ppid == master]
