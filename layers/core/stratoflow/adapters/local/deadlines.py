"""Calls due later, made from one thread.

The executor's kills each need a call when their grace is over, and a killed group that
outlives its wrapper a look every tenth of a second until it is gone. One ``threading.Timer``
each made a thread per call: a stop of a few hundred such tasks made thousands of threads a
second for the whole grace. :class:`Deadlines` keeps them in a heap and makes them from one
thread, started at the first call and ended by :meth:`Deadlines.close`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("stratoflow.executor")


class Deadlines:
    """Call ``fn(*args)`` once ``delay`` seconds have passed (:meth:`after`), in due order,
    one at a time, from a thread of its own. A call that raises is logged; the others go on.
    Calls may add calls (a look that finds the group still there asks for the next)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._due: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()  # equal times: in the order they were asked for
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def after(self, delay: float, fn: Callable[..., None], *args: Any) -> bool:
        """Call ``fn(*args)`` in ``delay`` seconds. False, and nothing will be called, once
        closed; raises what starting the thread raises (it is tried again at the next call,
        and the calls asked for before stay due)."""
        at = time.monotonic() + max(delay, 0.0)
        with self._changed:
            if self._closed:
                return False
            heapq.heappush(self._due, (at, next(self._order), fn, args))
            if self._thread is None or not self._thread.is_alive():
                # the first call, or a thread that ended on an exception no call should raise
                thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                thread.start()
                self._thread = thread
            self._changed.notify()  # it may be sooner than what the thread waits for
            return True

    def pending(self) -> int:
        """How many calls are still to come."""
        with self._changed:
            return len(self._due)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed:
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    if wait is not None and wait <= 0:
                        break
                    self._changed.wait(wait)
                if self._closed:
                    return
                _, _, fn, args = heapq.heappop(self._due)
            try:
                fn(*args)
            except Exception:
                log.exception("a due call of the executor failed")

    def close(self) -> None:
        """Drop what is still to come and end the thread (after the call it is making, if
        any; not waited for from that call itself)."""
        with self._changed:
            self._closed = True
            self._due.clear()
            self._changed.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
