"""Shared fixtures: one real local Ray cluster for the whole session (starting Ray costs seconds), and PostgreSQL
(``pg_server``, ``db_url``) from ``tests/postgres.py``."""

from __future__ import annotations

import os

import pytest

from tests.postgres import db_url, pg_server  # noqa: F401  (fixtures for every test folder)

# Ray 2.60 turns token auth on by default; the local test cluster runs without it.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


NODES = 3


@pytest.fixture(scope="module")
def three_nodes():
    """``ray.cluster_utils.Cluster`` with three nodes of 2 logical CPUs each. A session's single-node Ray (the
    ``ray_cluster`` fixture) is shut down for the module and started again afterwards, with the same settings."""
    import ray
    from ray.cluster_utils import Cluster

    had_local = ray.is_initialized()
    if had_local:
        ray.shutdown()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": False, "resources": {"node0": 1}},
    )
    try:
        for k in range(1, NODES):
            cluster.add_node(num_cpus=2, resources={f"node{k}": 1})
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if had_local:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray instance with 2 CPUs, shared by every test that needs Ray; shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    except Exception:
        pass
    ray.shutdown()


def pytest_collection_modifyitems(config, items) -> None:
    """Files with ``slow`` end-to-end tests run first, each file's tests kept together and in order: with two xdist
    workers taking one file at a time (``make test``), the long ones (the README's commands, the demo, the
    three-node pool) then overlap with each other and with the many short files instead of trailing at the end. Among
    them, files that declare a longer timeout go first."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    budget: dict = {}  # a file's longest declared timeout: the longest files start first
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = float(marker.args[0]) if marker and marker.args else 0.0
        budget[item.path] = max(budget.get(item.path, 0.0), seconds)
    items.sort(key=lambda item: (item.path not in slow_files, -budget[item.path]))
