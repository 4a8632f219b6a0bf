"""A selection has a time budget and nothing waits for it.

Over real HTTP (``python -m raydq.serve.local``): a deliberately slow selection (options at their bounds) runs while
8 clients label; every label write completes while the selection is still running, and when its client hangs up the
selection is cancelled (not left to run out its budget) and the next one runs. In one process: a selection past
``select_timeout_s`` stops with a 504 and frees the queue.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from raydq.pool.store import load_pool
from raydq.serve.inprocess import create_inprocess_app
from tests.integrations.services import RaydqServer
from tests.serve.helpers import CLASSES, service_args, wait_for, write_store

SLOW = {"batch_size": 400, "strategy": "centroid", "options": {"n_init": 10, "kmeans_niter": 100}}


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("budget") / "store", n=40_000, dim=64, seed=3)


@pytest.mark.slow
def test_label_writes_never_wait_for_a_slow_selection(big_store, tmp_path):
    server = RaydqServer(big_store, tmp_path / "labels.db", token=None, log=tmp_path / "server.log")
    server.args.update(select_timeout_s=600.0, max_batch_size=1000, max_labels_per_request=100)
    server.start()
    try:
        ids = [str(i) for i in load_pool(big_store).ids]
        status = lambda: httpx.get(server.url + "/status", timeout=60).json()  # noqa: E731
        before = status()["selections"]
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        outcome: dict = {}

        def slow_select() -> None:
            try:
                conn.request("POST", "/select_batch", json.dumps(SLOW), {"content-type": "application/json"})
                outcome["status"] = conn.getresponse().status
            except OSError as e:  # the test hangs up below
                outcome["error"] = type(e).__name__

        selecting = threading.Thread(target=slow_select)
        selecting.start()
        wait_for(lambda: status()["selections"]["running"] == 1, timeout=60, what="the slow selection to start")

        results: list[int] = []

        def annotator(n: int) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                for k in range(5):
                    start = 1000 + (n * 5 + k) * 4
                    chunk = ids[start : start + 4]
                    labels = [{"id": i, "label": CLASSES[(start + j) % 3]} for j, i in enumerate(chunk)]
                    results.append(c.post("/update_labels", json={"labels": labels}).status_code)

        clients = [threading.Thread(target=annotator, args=(n,)) for n in range(8)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        during = status()
        assert results == [200] * 40 and during["labeled"] == 160
        assert during["selections"]["running"] == 1 and selecting.is_alive(), "the writes waited for the selection"

        conn.sock.shutdown(socket.SHUT_RDWR)  # the annotator who asked gives up
        conn.close()
        selecting.join(timeout=60)
        after = wait_for(
            lambda: (s := status()["selections"])["running"] == 0 and s["cancelled"] > before["cancelled"] and s,
            timeout=60,
            what="the abandoned selection to be cancelled",
        )
        assert after["timed_out"] == before["timed_out"] and after["completed"] == before["completed"]
        fast = httpx.post(server.url + "/select_batch", json={"batch_size": 5, "strategy": "random"}, timeout=60)
        assert fast.status_code == 200, fast.text
        assert "Traceback" not in server.log.read_text(errors="replace")
    finally:
        server.stop()


def test_a_selection_past_its_budget_stops_with_504_and_frees_the_queue(big_store, tmp_path, strategies):
    args = service_args(big_store, f"sqlite:///{tmp_path / 'l.db'}", strategies, select_timeout_s=1.0,
                        max_batch_size=1000)  # fmt: skip
    with TestClient(create_inprocess_app(args)) as c:
        r = c.post("/select_batch", json=SLOW)
        assert r.status_code == 504 and "select_timeout_s" in r.text, r.text
        assert c.get("/status").json()["selections"]["timed_out"] == 1
        assert c.get("/status").json()["leased"] == 0  # nothing of the stopped selection was leased
        fast = c.post("/select_batch", json={"batch_size": 5, "strategy": "random"})
        assert fast.status_code == 200, fast.text
