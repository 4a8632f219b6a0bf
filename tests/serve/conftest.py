"""Fixtures of the labeling-service tests: a small synthetic embedding store and a running Serve instance on a free
127.0.0.1 port. The label-store URLs (``db_url``: SQLite and a private PostgreSQL 15 server) come from
``tests/postgres.py`` through ``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve.helpers import free_port, service_args, write_store


@pytest.fixture(scope="session")
def embedding_store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("embeddings") / "store")


@pytest.fixture(scope="session")
def strategies() -> tuple[str, str]:
    """(default, cold start): the reference pair where registered, else random (while they are being written)."""
    from raydq.strategies import STRATEGIES

    default = "dropquery" if "dropquery" in STRATEGIES else "random"
    cold = "centroid" if "centroid" in STRATEGIES else "random"
    return default, cold


@pytest.fixture
def make_args(embedding_store, strategies):
    def make(database_url: str, **overrides):
        return service_args(embedding_store, database_url, strategies, **overrides)

    return make


# -- Serve ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def serve_http(ray_cluster) -> str:
    """Ray Serve on a free 127.0.0.1 port; its base URL."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        from ray.serve.context import _get_global_client

        port = _get_global_client().http_config.port  # when another test module started Serve first
    except Exception:
        pass
    return f"http://127.0.0.1:{port}"
