"""cpu_quota on fake cgroup trees: v2 `cpu.max`, v1 CFS files, hybrid layouts, nested limits,
containers whose mount shows only their own cgroup; and the worker and thread defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpu_quota import cgroup_cpu_limit, default_intra_op_threads, default_workers, usable_cpus

V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
V1_MOUNTS = (
    "31 23 0:28 / /sys/fs/cgroup tmpfs rw - tmpfs tmpfs rw\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
)
# A hybrid host: v1 controllers, and a cgroup2 mount that has no cpu controller.
HYBRID_MOUNTS = V1_MOUNTS + "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"


def _tree(root: Path, mountinfo: str, proc_cgroup: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    (root / "proc/self/cgroup").write_text(proc_cgroup)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CASES = [
    # no cgroup files at all (not Linux, or /proc hidden): no quota
    pytest.param(None, "", {}, None, id="no-proc"),
    # cgroup v2 in a container (cgroup namespace: our cgroup is the mount's root)
    pytest.param(V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "200000 100000\n"}, 2.0, id="v2"),
    # v2 without a limit
    pytest.param(V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "max 100000\n"}, None, id="v2-max"),
    # v2 fractional quota, as Kubernetes writes for limits.cpu: 1500m
    pytest.param(V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "150000 100000"}, 1.5, id="v2-1.5"),
    # v2 on a host: our cgroup is nested; the lowest limit on the way up applies
    pytest.param(
        V2_MOUNT,
        "0::/kubepods/pod1/c1\n",
        {
            "sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "max 100000",
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "300000 100000",
            "sys/fs/cgroup/kubepods/cpu.max": "800000 100000",
        },
        3.0,
        id="v2-nested-parent-limit",
    ),
    # v1 with a quota
    pytest.param(
        V1_MOUNTS,
        "4:memory:/\n3:cpu,cpuacct:/\n",
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "400000",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000",
        },
        4.0,
        id="v1",
    ),
    # v1 without a quota (-1)
    pytest.param(
        V1_MOUNTS,
        "3:cpu,cpuacct:/\n",
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000",
        },
        None,
        id="v1-unlimited",
    ),
    # v1, an old container runtime: /proc/self/cgroup names the host's path, the mount shows
    # that same cgroup as its root
    pytest.param(
        "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        "3:cpu,cpuacct:/docker/abc\n",
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "250000",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000",
        },
        2.5,
        id="v1-mount-root-is-our-cgroup",
    ),
    # hybrid: the cgroup2 mount has no cpu.max, the v1 cpu controller has the quota
    pytest.param(
        HYBRID_MOUNTS,
        "3:cpu,cpuacct:/\n0::/\n",
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "100000",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "50000",
        },
        2.0,
        id="hybrid-v1-quota",
    ),
    # garbage in a file: no quota rather than a crash
    pytest.param(V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "lots 100000"}, None, id="garbage"),
]


@pytest.mark.parametrize(("mountinfo", "proc_cgroup", "files", "expected"), CASES)
def test_cgroup_cpu_limit(
    tmp_path: Path,
    mountinfo: str | None,
    proc_cgroup: str,
    files: dict[str, str],
    expected: float | None,
) -> None:
    root = tmp_path if mountinfo is None else _tree(tmp_path, mountinfo, proc_cgroup, files)
    assert cgroup_cpu_limit(root) == expected


@pytest.mark.parametrize(
    ("quota", "cpuset", "expected"),
    [
        # the case: a 2-CPU limit on a 64-core node
        pytest.param("200000 100000", 64, 2, id="quota-below-cpuset"),
        # a fraction rounds down (a worker needing a fraction of a CPU gets throttled)...
        pytest.param("250000 100000", 64, 2, id="fraction-rounds-down"),
        # ...but never below one worker
        pytest.param("50000 100000", 64, 1, id="half-cpu-is-one"),
        # the CPU set caps a quota larger than it
        pytest.param("800000 100000", 4, 4, id="cpuset-below-quota"),
        pytest.param("max 100000", 3, 3, id="no-quota-cpuset"),
    ],
)
def test_usable_cpus(tmp_path: Path, quota: str, cpuset: int, expected: int) -> None:
    root = _tree(tmp_path, V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": quota})
    assert usable_cpus(root, cpuset=cpuset) == expected


@pytest.mark.parametrize(
    ("environ", "cpus", "workers", "threads"),
    [
        # one worker per CPU, one thread each
        pytest.param({}, 4, 4, 1, id="defaults"),
        # WEB_CONCURRENCY wins; the threads share the CPUs among the workers
        pytest.param({"WEB_CONCURRENCY": "1"}, 4, 1, 4, id="one-worker-four-threads"),
        pytest.param({"WEB_CONCURRENCY": "3"}, 4, 3, 1, id="three-workers"),
        # more workers than CPUs: still one thread each
        pytest.param({"WEB_CONCURRENCY": "8"}, 2, 8, 1, id="oversubscribed"),
    ],
)
def test_worker_and_thread_defaults(
    environ: dict[str, str], cpus: int, workers: int, threads: int
) -> None:
    assert default_workers(environ, cpus) == workers
    assert default_intra_op_threads(environ, cpus) == threads


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_bad_web_concurrency_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="WEB_CONCURRENCY"):
        default_workers({"WEB_CONCURRENCY": value}, 2)


def test_this_machine_has_a_usable_cpu_count() -> None:
    # Whatever the machine's cgroups say, the answer is a whole number of CPUs within its set.
    assert 1 <= usable_cpus() <= max(1, len(os.sched_getaffinity(0)))
