"""What can go wrong with a pool of shard actors, as exceptions a service can map onto HTTP answers."""

from __future__ import annotations


class PoolUnavailable(RuntimeError):
    """A shard did not come back within the configured bound (it is restarting and reloading its slice, or its node
    is gone). Retry after ``retry_after_s`` seconds; a service answers 503 with ``Retry-After``."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = float(retry_after_s)

    def __reduce__(self):
        return (_rebuild_unavailable, (str(self), self.retry_after_s))


def _rebuild_unavailable(message: str, retry_after_s: float) -> PoolUnavailable:
    return PoolUnavailable(message, retry_after_s=retry_after_s)


class ShardRestarted(RuntimeError):
    """A shard was asked for status-dependent work by a driver that synced an earlier incarnation of it: it came
    back from a restart with every row selectable, so the driver must send the full status first."""

    def __init__(self, incarnation: str) -> None:
        super().__init__(f"shard is incarnation {incarnation}: its status must be sent again")
        self.incarnation = incarnation

    def __reduce__(self):
        return (ShardRestarted, (self.incarnation,))
