"""cpu_budget: the threads numeric work may use, inside real Ray tasks and actors and in a plain process."""

from __future__ import annotations

import os

import pytest

from raydq.numerics import threads
from raydq.numerics.threads import cpu_budget


def test_plain_process_follows_omp_num_threads_then_the_cpus_it_may_use(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_budget() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: None)
    assert cpu_budget() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: 0.5)  # a pod limited to half a CPU
    assert cpu_budget() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert cpu_budget() == 1


@pytest.mark.parametrize(
    ("text", "cpus"), [("200000 100000\n", 2.0), ("150000 100000", 1.5), ("max 100000", None), ("garbage", None)]
)
def test_cgroup_cpu_quota_is_read_from_cpu_max(tmp_path, text, cpus):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert threads._cgroup_cpus(path) == cpus
    assert threads._cgroup_cpus(tmp_path / "absent") is None


def test_inside_ray_the_allotment_counts_not_the_host(ray_cluster):
    ray = ray_cluster

    @ray.remote
    def budget():
        from raydq.numerics.threads import cpu_budget

        return cpu_budget()

    @ray.remote
    class Shard:
        def budget(self):
            from raydq.numerics.threads import cpu_budget

            return cpu_budget()

    assert ray.get(budget.options(num_cpus=2).remote()) == 2
    assert ray.get(budget.options(num_cpus=0.5).remote()) == 1
    one = Shard.options(num_cpus=1, runtime_env={"env_vars": {"OMP_NUM_THREADS": "8"}}).remote()
    assert ray.get(one.budget.remote()) == 1  # the allotment, not an environment that says otherwise
    no_cpus = Shard.options(num_cpus=0).remote()
    assert ray.get(no_cpus.budget.remote()) == 1
    for actor in (one, no_cpus):
        ray.kill(actor)
    assert cpu_budget() >= 1  # the driver has no allotment: it falls back to the machine
