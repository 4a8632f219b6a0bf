"""How many threads numeric work may use, and BLAS thread control: the one place that decides for k-means, the
dropout passes' row threads and head training.

``os.cpu_count()`` counts the host's cores: inside a Ray actor on a 128-core GPU node it says 128 while the actor was
given 4 CPUs, and every thread pool sized from it oversubscribes. ``cpu_budget`` is the one answer everything asks.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

from threadpoolctl import threadpool_limits

#: cgroup v2's CPU limit of this container: "<quota> <period>" or "max <period>" (a Kubernetes pod's cpu limit).
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _ray_allotment() -> float | None:
    """The CPUs Ray assigned to the task or actor this process is running, or None outside a Ray task/actor.

    Only a process Ray started runs tasks, and such a process has imported ``ray`` already; looking in
    ``sys.modules`` keeps plain processes from paying Ray's import."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    ctx = ray.get_runtime_context()
    if ctx.worker.mode != ray.WORKER_MODE:  # the driver has no allotment (and asking it for a task id logs a warning)
        return None
    return float(ctx.get_assigned_resources().get("CPU", 0.0))


def _env_threads() -> int | None:
    """``OMP_NUM_THREADS`` when set to a positive integer (Ray sets it in every worker to its CPU allotment)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _cgroup_cpus(path: Path = CGROUP_CPU_MAX) -> float | None:
    """The container's CPU quota (quota / period), or None without a limit."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _machine_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by the container's quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(n, math.ceil(quota))) if quota else max(1, n)


def cpu_budget() -> int:
    """Threads this process may use for numeric work (at least 1).

    Inside a Ray task or actor: its CPU allotment (``num_cpus=2.5`` gives 2), or Ray's ``OMP_NUM_THREADS`` for an
    actor that asked for no CPUs (Ray sets 1). Elsewhere: ``OMP_NUM_THREADS`` if set, else the CPUs the process may
    run on (affinity mask, container quota)."""
    allotted = _ray_allotment()
    if allotted is not None and allotted >= 1:
        return int(allotted)
    if allotted is not None:  # a fraction of a CPU, or none: what Ray told OpenMP (at least 1)
        return _env_threads() or 1
    return _env_threads() or _machine_cpus()


def blas_threads(n: int) -> contextlib.AbstractContextManager:
    """At most ``n`` BLAS threads within the block."""
    return threadpool_limits(max(1, int(n)), user_api="blas")


def single_thread_blas() -> contextlib.AbstractContextManager:
    """Single-threaded BLAS within the block: for our own row threads (no oversubscription) and for small problems
    that a BLAS thread pool only slows down (k-means++ seeding's k sequential products, a small head fit)."""
    return blas_threads(1)
