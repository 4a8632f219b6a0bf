"""Acknowledged means durable: a server is SIGKILLed right after it acknowledged labels, 21 times over, and every
acknowledged label is in the store afterwards (SQLite in WAL mode with synchronous=FULL)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from raydq.labels import LabelStore
from raydq.pool.store import load_pool
from tests.serve.helpers import CLASSES, wait_for

CYCLES = 21


@pytest.fixture
def zygote(make_args, tmp_path):
    args = make_args(f"sqlite:///{tmp_path / 'labels.db'}", retrain_delay_s=3600.0)
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("kill_zygote.py")), args.model_dump_json()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )

    def start() -> tuple[int, str]:
        proc.stdin.write("start\n")
        proc.stdin.flush()
        pid, url = proc.stdout.readline().split()
        return int(pid), url

    yield args, start
    proc.stdin.close()
    proc.wait(timeout=30)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Ledger:
    """What the clients know: the last acknowledged label per id, and the requests in flight (unacknowledged)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[str, str] = {}
        self.inflight: dict[int, dict[str, str]] = {}
        self.acks = 0


def write_until_killed(
    url: str, pid: int, ids: list[str], ledger: Ledger, stop: threading.Event, *, kill_after: int | None, seed: int
) -> None:
    """Send label updates one after another; with ``kill_after``, SIGKILL the server right after that many acks."""
    rng = random.Random(seed)
    me = threading.get_ident()
    with httpx.Client(base_url=url, timeout=30, verify=False) as client:  # plain http: skip loading CA certificates
        n = 0
        while not stop.is_set():
            labels = {i: rng.choice(CLASSES) for i in rng.sample(ids, rng.randint(1, 8))}
            with ledger.lock:
                ledger.inflight[me] = labels
            try:
                resp = client.post(
                    "/update_labels", json={"labels": [{"id": i, "label": v} for i, v in labels.items()]}
                )
            except httpx.HTTPError:
                return  # the server died with this request in flight: it may or may not have landed
            assert resp.status_code == 200, resp.text
            with ledger.lock:
                ledger.acked.update(labels)
                del ledger.inflight[me]
                ledger.acks += 1
            n += 1
            if kill_after is not None and n >= kill_after:
                os.kill(pid, signal.SIGKILL)  # right after the acknowledgement
                stop.set()
                return


def test_sigkill_after_ack_loses_nothing(zygote, embedding_store):
    args, start = zygote
    ids = [str(i) for i in load_pool(embedding_store).ids]
    half = len(ids) // 2
    rng = random.Random(0)
    ledger = Ledger()
    for cycle in range(CYCLES):
        pid, url = start()
        wait_for(lambda url=url: healthy(url), timeout=60, what="the server")
        stop = threading.Event()
        other = threading.Thread(
            target=write_until_killed,
            args=(url, pid, ids[half:], ledger, stop),
            kwargs={"kill_after": None, "seed": cycle + 1000},
        )
        other.start()
        write_until_killed(url, pid, ids[:half], ledger, stop, kill_after=rng.randint(1, 5), seed=cycle)
        other.join(timeout=60)
        wait_for(lambda url=url: not healthy(url), timeout=30, what="the killed server to be gone")

        store = LabelStore(args.database_url)
        _, stored = store.training_snapshot()
        store.close()
        lost = {i: v for i, v in ledger.acked.items() if i not in stored}
        assert not lost, f"cycle {cycle}: acknowledged labels lost: {lost}"
        pending = {i: v for labels in ledger.inflight.values() for i, v in labels.items()}
        wrong = {i: (v, stored[i]) for i, v in ledger.acked.items() if stored[i] != v and pending.get(i) != stored[i]}
        assert not wrong, f"cycle {cycle}: stored labels differ from the acknowledged ones: {wrong}"
        assert set(stored) <= set(ledger.acked) | set(pending)
        # an in-flight request that did land is the new baseline for its ids
        ledger.acked.update({i: stored[i] for i in pending if i in stored})
        ledger.inflight.clear()
    assert ledger.acks >= CYCLES
