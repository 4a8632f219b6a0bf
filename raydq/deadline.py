"""A time budget that long-running numeric work checks between chunks and iterations.

Selection can be asked to stop (the request's budget ran out, the client went away). Python cannot interrupt a
thread or a Ray actor task that is inside numpy, so the work itself looks at the clock at safe points: between row
chunks of a pass over the pool and between k-means iterations. A ``Deadline`` is an absolute wall-clock time, so it
means the same thing in the driver and in every shard actor it is shipped to (it pickles as one float).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


class DeadlineExceeded(Exception):
    """The work passed its deadline and stopped at a safe point; nothing it would have written was written."""


@dataclass(frozen=True)
class Deadline:
    """Stop after ``at`` (seconds since the epoch, ``time.time()``'s clock)."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.time() + float(seconds))

    def remaining(self) -> float:
        return self.at - time.time()

    def check(self) -> None:
        """Raise ``DeadlineExceeded`` once the deadline has passed (call it between chunks or iterations)."""
        if time.time() > self.at:
            raise DeadlineExceeded(f"deadline passed {time.time() - self.at:.3f}s ago")


def check(deadline: Deadline | None) -> None:
    """``deadline.check()`` when there is one: the form every chunk loop uses."""
    if deadline is not None:
        deadline.check()


class CancellableDeadline(Deadline):
    """A ``Deadline`` that can also be cancelled early from another thread (the client went away).

    Only the driver's own loops see the cancellation: shipped to a shard actor it pickles as a plain ``Deadline``,
    so the actor stops at the time limit at the latest.
    """

    def __init__(self, at: float) -> None:
        super().__init__(at)
        object.__setattr__(self, "_cancelled", threading.Event())

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise DeadlineExceeded("cancelled")
        super().check()

    def __reduce__(self):
        return (Deadline, (self.at,))
