"""``ShardActor``: a ``ShardHost`` as a Ray actor, restarted by Ray whenever it dies (it reloads its slice in its
constructor). Threaded (``max_concurrency``), so ``ping``/``lookup``/``describe`` answer while ``run`` computes; the
host's own lock serialises compute and status changes."""

from __future__ import annotations

from typing import Any

import ray

from raydq.deadline import Deadline
from raydq.pool.host import ShardHost

#: Threads of one shard actor: one computes at a time (the host's lock), the rest answer reads and pings meanwhile.
ACTOR_THREADS = 8


class _ActorHost(ShardHost):
    def run_call(self, call: tuple, deadline: Deadline | None = None, *, incarnation: str | None = None) -> Any:
        """``run`` with ``(fn, args, kwargs)`` packed in one object, so the driver puts it in the object store once
        for every shard rather than once per shard."""
        fn, args, kwargs = call
        return self.run(fn, args, kwargs, deadline=deadline, incarnation=incarnation)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "node_id": ray.get_runtime_context().get_node_id()}


ShardActor = ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=ACTOR_THREADS)(_ActorHost)
