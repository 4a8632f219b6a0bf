"""Shard sets over ``ShardHost``s: in this process (``HostShardSet``) or as Ray actors (``ActorShardSet``).

Both are ``ShardSet``s for the strategies (``map``) and offer ``call``: a host method on chosen shards at once, which
the driver uses for lookups, descriptions, embeddings and status deltas.

Faults (actors only). A call on a shard whose actor died, or that is restarting, fails fast in Ray; a call that
depends on the status and reaches a new incarnation is refused (``ShardRestarted``). Either way the shard set pings
the actor until it answers (it reloads its slice in its constructor), sends it the full status, and calls it again;
past ``ready_timeout_s`` it raises ``PoolUnavailable``. A shard that computes for long is pinged now and then, so a
hung actor is told from a busy one. A ``deadline`` bounds the whole call (``DeadlineExceeded``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError

from raydq.deadline import Deadline, DeadlineExceeded
from raydq.pool.errors import PoolUnavailable, ShardRestarted
from raydq.pool.host import ShardHost, SliceSpec

#: The full status of rows ``[start, stop)``: ``(rows, values)`` of the rows that are not selectable.
StatusSource = Callable[[int, int], tuple[np.ndarray, np.ndarray]]

_POLL_S = 0.05  # how often a call looks at its outstanding refs while a shard is down
_MAX_RESTARTS_PER_CALL = 3  # a shard that restarts again and again during one call is reported unavailable


@dataclass
class ActorSlot:
    """One shard actor as the driver knows it: its slice, its handle, and the incarnation whose status it sent."""

    spec: SliceSpec
    handle: Any
    synced: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def retry_after_s(self, down_for: float = 0.0) -> float:
        """When to try again: what its slice took to load, less what has passed, and never below a second."""
        return max(1.0, float(self.info.get("load_seconds", 1.0)) - down_for)


class HostShardSet:
    """Shards as ``ShardHost``s in this process (no Ray): a laptop, the simulation, ``python -m raydq.serve.local``."""

    def __init__(self, hosts: Sequence[ShardHost]) -> None:
        self.hosts = list(hosts)

    @property
    def n_rows(self) -> int:
        return self.hosts[-1].stop if self.hosts else 0

    @property
    def dim(self) -> int:
        return self.hosts[0].shard.dim if self.hosts else 0

    def map(self, fn, /, *args, deadline: Deadline | None = None, **kwargs) -> list:
        return [h.run(fn, args, kwargs, deadline=deadline) for h in self.hosts]

    def call(
        self,
        method: str,
        args_by_shard: Mapping[int, tuple],
        *,
        stateful: bool = False,
        deadline: Deadline | None = None,
    ) -> dict[int, Any]:
        return {i: getattr(self.hosts[i], method)(*args) for i, args in args_by_shard.items()}


class ActorShardSet:
    """Shards as ``ShardActor``s. ``status_of(start, stop)`` gives the full status a restarted shard is sent, under
    ``status_lock`` (shared with whoever sends status deltas, so a delta and a full status never interleave)."""

    def __init__(
        self,
        slots: Sequence[ActorSlot],
        *,
        status_of: StatusSource,
        status_lock: threading.RLock,
        ready_timeout_s: float,
    ) -> None:
        self.slots = list(slots)
        self._status_of = status_of
        self._status_lock = status_lock
        self.ready_timeout_s = float(ready_timeout_s)

    @property
    def n_rows(self) -> int:
        return self.slots[-1].spec.stop if self.slots else 0

    @property
    def dim(self) -> int:
        return self.slots[0].spec.dim if self.slots else 0

    def map(self, fn, /, *args, deadline: Deadline | None = None, **kwargs) -> list:
        call = ray.put((fn, args, kwargs))
        out = self.call("run_call", {i: (call, deadline) for i in range(len(self.slots))}, stateful=True,
                        deadline=deadline)  # fmt: skip
        return [out[i] for i in range(len(self.slots))]

    def resync(self, i: int) -> str:
        """Send shard ``i`` its full status (blocking up to ``ready_timeout_s``); returns the incarnation it holds."""
        slot = self.slots[i]
        with self._status_lock:
            rows, values = self._status_of(slot.spec.start, slot.spec.stop)
            slot.synced = ray.get(slot.handle.reset_status.remote(rows, values), timeout=self.ready_timeout_s)
        return slot.synced

    def call(
        self,
        method: str,
        args_by_shard: Mapping[int, tuple],
        *,
        stateful: bool = False,
        deadline: Deadline | None = None,
    ) -> dict[int, Any]:
        """``{i: slots[i].handle.<method>(*args)}`` for every shard in ``args_by_shard``, riding out restarts.
        ``stateful`` calls carry the synced incarnation (``run_call``, ``set_status``)."""
        return _Call(self, method, args_by_shard, stateful, deadline).run()

    def submit(self, i: int, method: str, args: tuple, stateful: bool):
        slot = self.slots[i]
        kwargs = {"incarnation": slot.synced} if stateful else {}
        return getattr(slot.handle, method).remote(*args, **kwargs)


class _Call:
    """The state of one fault-tolerant ``ActorShardSet.call``: outstanding calls, shards found down, pings."""

    def __init__(self, shards: ActorShardSet, method: str, args_by_shard: Mapping[int, tuple], stateful: bool,
                 deadline: Deadline | None) -> None:  # fmt: skip
        self.shards, self.method, self.args, self.stateful, self.deadline = (
            shards, method, dict(args_by_shard), stateful, deadline,
        )  # fmt: skip
        self.health_s = min(1.0, shards.ready_timeout_s / 4)
        now = time.monotonic()
        self.pending = {i: shards.submit(i, method, a, stateful) for i, a in self.args.items()}
        self.alive_at = dict.fromkeys(self.pending, now)  # when each shard last answered anything
        self.down: dict[int, float] = {}  # shard -> when it was found down or restarted
        self.pings: dict[int, Any] = {}
        self.pinged_at: dict[int, float] = {}
        self.restarts: Counter[int] = Counter()
        self.results: dict[int, Any] = {}

    def run(self) -> dict[int, Any]:
        while self.pending or self.down:
            wait_s = _POLL_S if self.down else self.health_s
            if self.deadline is not None:
                left = self.deadline.remaining()
                if left <= 0:
                    raise DeadlineExceeded(f"{self.method} on {len(self.pending) + len(self.down)} shards")
                wait_s = min(wait_s, left)
            refs = [*self.pending.values(), *self.pings.values()]
            ready: set = set()
            if refs:
                first, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
                if first:
                    ready = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0]) | set(first)
            else:
                time.sleep(wait_s)
            now = time.monotonic()
            self._collect(ready, now)
            self._answer_pings(ready, now)
            self._check_health(now)
        return self.results

    def _collect(self, ready: set, now: float) -> None:
        for i, ref in list(self.pending.items()):
            if ref not in ready:
                continue
            del self.pending[i]
            try:
                self.results[i] = ray.get(ref)
                self.alive_at[i] = now
            except ShardRestarted:
                self.down[i] = now  # alive, but holds no status: the ping that follows triggers the resync
            except RayActorError:
                self.down[i] = now
            except DeadlineExceeded as e:
                raise DeadlineExceeded(str(e)) from None

    def _answer_pings(self, ready: set, now: float) -> None:
        for i, ref in list(self.pings.items()):
            if ref not in ready:
                continue
            del self.pings[i]
            try:
                incarnation = ray.get(ref)
            except RayActorError:
                continue  # still restarting: pinged again on the next pass
            self.alive_at[i] = now
            if i not in self.down:
                continue
            slot = self.shards.slots[i]
            try:
                if self.stateful or slot.synced != incarnation:
                    self.shards.resync(i)
            except (RayActorError, GetTimeoutError):
                continue
            self.restarts[i] += 1
            if self.restarts[i] > _MAX_RESTARTS_PER_CALL:
                raise PoolUnavailable(f"shard {i} restarted {self.restarts[i]} times during one {self.method}",
                                      retry_after_s=slot.retry_after_s())  # fmt: skip
            del self.down[i]
            self.pending[i] = self.shards.submit(i, self.method, self.args[i], self.stateful)

    def _check_health(self, now: float) -> None:
        bound = self.shards.ready_timeout_s
        for i, since in self.down.items():
            if now - since > bound:
                slot = self.shards.slots[i]
                raise PoolUnavailable(
                    f"shard {i} (rows {slot.spec.start}..{slot.spec.stop}) is not back after {bound:g} s",
                    retry_after_s=slot.retry_after_s(now - since),
                )
            if i not in self.pings and now - self.pinged_at.get(i, 0.0) >= _POLL_S:
                self._ping(i, now)
        for i in self.pending:
            if now - self.alive_at[i] > bound:
                raise PoolUnavailable(f"shard {i} has not answered for {bound:g} s",
                                      retry_after_s=self.shards.slots[i].retry_after_s())  # fmt: skip
            if i not in self.pings and now - self.alive_at[i] > self.health_s:
                self._ping(i, now)

    def _ping(self, i: int, now: float) -> None:
        self.pings[i] = self.shards.slots[i].handle.ping.remote()
        self.pinged_at[i] = now
