"""Admitting propagations by the memory they need, so visitors running at once cannot together exhaust the server.

Each job's need comes from its clip's probe facts and settings (`pipeline.memory_need`: it streams, so the need does
not grow with the clip's length). A job that needs more than the whole budget is refused at once; one that would
overfill it with the jobs already running waits for them, and is refused if none finishes in time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from synclora.errors import InputError

WAIT_S = 300.0  # how long a job waits for others to finish before it is refused


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


class MemoryGate:
    """Reservations against a budget of bytes (`limits.memory_budget()` in the app)."""

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def admit(self, need: int, *, wait_s: float = WAIT_S, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold `need` bytes of the budget for the block. `waiting` is called (about once a second) while the job
        waits for room, so the caller can say so and can stop the wait by raising."""
        need = int(need)
        if need > self.budget:
            raise InputError(f"this clip needs about {_gib(need)} of memory and this server has {_gib(self.budget)} "
                             "for propagations — downscale the clip or use a smaller one")
        deadline = time.monotonic() + wait_s
        with self._cond:
            while self.used + need > self.budget:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise InputError(f"the server is busy with other clips (this one needs about {_gib(need)} of "
                                     f"memory, {_gib(self.budget - self.used)} are free) — try again in a few minutes")
                if waiting is not None:
                    self._cond.release()
                    try:
                        waiting()
                    finally:
                        self._cond.acquire()
                self._cond.wait(timeout=min(1.0, left))
            self.used += need
        try:
            yield
        finally:
            with self._cond:
                self.used -= need
                self._cond.notify_all()
