"""How many CPUs this process may really use: the cgroup CPU quota when there is one, else the
CPU set it may run on. The default worker count and onnxruntime's intra-op threads follow it.

Kubernetes enforces `limits.cpu` as a CFS quota (cgroup v2 `cpu.max`, v1
`cpu.cfs_quota_us`/`cpu.cfs_period_us`), not as a CPU set: a 2-CPU pod on a 64-core node sees
64 CPUs in `os.sched_getaffinity`, and one worker per visible CPU would start 64 workers that
share two CPUs of quota. The quota is read as the kernel applies it: the cgroup of this
process (`/proc/self/cgroup`), found under the cgroup file system's mount point
(`/proc/self/mountinfo`), and the lowest limit of it and every parent cgroup up to that mount.

Every path is taken relative to `root` so that the tests can lay out fake cgroup files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class CgroupMount:
    version: int  # 1 or 2
    root: PurePosixPath  # the cgroup this mount shows as its top (mountinfo's 4th field)
    mount_point: PurePosixPath


def _mounts(mountinfo: str) -> Iterator[CgroupMount]:
    """cgroup2 mounts, and cgroup v1 mounts of the `cpu` controller."""
    for line in mountinfo.splitlines():
        left, separator, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if not separator or len(fields) < 5 or len(after) < 3:
            continue
        fs_type, super_options = after[0], after[2].split(",")
        if fs_type == "cgroup2":
            yield CgroupMount(2, PurePosixPath(fields[3]), PurePosixPath(fields[4]))
        elif fs_type == "cgroup" and "cpu" in super_options:
            yield CgroupMount(1, PurePosixPath(fields[3]), PurePosixPath(fields[4]))


def _own_cgroups(proc_cgroup: str) -> dict[int, PurePosixPath]:
    """This process's cgroup path per version: the `0::` line (v2), the line whose
    controllers include `cpu` (v1)."""
    paths: dict[int, PurePosixPath] = {}
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            paths[2] = PurePosixPath(path)
        elif "cpu" in controllers.split(","):
            paths[1] = PurePosixPath(path)
    return paths


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # missing (no such controller), or unreadable
        return None


def _limit_in(directory: Path, version: int) -> float | None:
    """The quota one cgroup folder sets, in CPUs; None when it sets none."""
    if version == 2:
        text = _read(directory / "cpu.max")
        if text is None:
            return None
        quota, _, period = text.partition(" ")
        if quota == "max":
            return None
        numerator, denominator = quota, period or "100000"
    else:
        numerator = _read(directory / "cpu.cfs_quota_us") or "-1"
        denominator = _read(directory / "cpu.cfs_period_us") or "100000"
    try:
        quota_us, period_us = int(numerator), int(denominator)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:  # v1 writes -1 for "no limit"
        return None
    return quota_us / period_us


def _cgroup_dirs(mount: CgroupMount, own: PurePosixPath, root: Path) -> Iterator[Path]:
    """The process's cgroup folder, then each parent up to the mount point."""
    base = root / mount.mount_point.relative_to("/")
    try:
        relative = own.relative_to(mount.root)
    except ValueError:  # the mount shows another part of the tree: only its top is ours
        relative = PurePosixPath()
    parts = relative.parts
    for depth in range(len(parts), -1, -1):
        yield base.joinpath(*parts[:depth])


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (2.5 for `250000 100000`), None when no
    cgroup sets one. cgroup v2 first; v1 (or the v1 `cpu` controller of a hybrid layout, whose
    cgroup2 mount has no `cpu.max`) after."""
    mountinfo = _read(root / "proc/self/mountinfo")
    proc_cgroup = _read(root / "proc/self/cgroup")
    if mountinfo is None or proc_cgroup is None:
        return None
    own = _own_cgroups(proc_cgroup)
    for version in (2, 1):
        if version not in own:
            continue
        limits = [
            limit
            for mount in _mounts(mountinfo)
            if mount.version == version
            for directory in _cgroup_dirs(mount, own[version], root)
            if (limit := _limit_in(directory, version)) is not None
        ]
        if limits:
            return min(limits)
    return None


def cpuset_count() -> int:
    """The CPUs this process may run on (a container's cpuset), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def usable_cpus(root: Path = Path("/"), cpuset: int | None = None) -> int:
    """Whole CPUs to size the service by: the quota rounded down (a sync worker that would need
    a fraction of a CPU gets throttled in the middle of an inference), at least 1, and never
    more than the CPU set."""
    visible = cpuset if cpuset is not None else cpuset_count()
    limit = cgroup_cpu_limit(root)
    if limit is None:
        return max(1, visible)
    return max(1, min(visible, math.floor(limit)))


def _positive(environ: Mapping[str, str], key: str) -> int | None:
    raw = environ.get(key, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r}: must be a positive integer") from None
    if value < 1:
        raise ValueError(f"{key}={raw!r}: must be a positive integer")
    return value


def default_workers(environ: Mapping[str, str], cpus: int) -> int:
    """gunicorn's worker count: WEB_CONCURRENCY when set, else one per usable CPU."""
    return _positive(environ, "WEB_CONCURRENCY") or cpus


def default_intra_op_threads(environ: Mapping[str, str], cpus: int) -> int:
    """onnxruntime threads per worker when INTRA_OP_THREADS is not set: the usable CPUs shared
    among the workers, so that workers x threads <= CPUs (1 with the default worker count)."""
    return max(1, cpus // default_workers(environ, cpus))
