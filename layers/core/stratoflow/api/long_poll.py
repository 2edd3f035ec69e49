"""Long poll of a run on the local server: ``GET /runs/{id}?wait=S`` (issue 10, item 3).

The route itself (api/app.py) only validates ``wait``: the resolver runs every request on one
thread, so a request cannot wait there. The local server's HTTP thread holds it instead: it
asks the resolver as usual and, when the answer says nothing changed (a ``304``, or a delta
with nothing new), waits for a ``RunWatch`` ticket, which the store's commit hook wakes when
a commit touches the run, then asks again, until the answer changes or ``wait`` elapses.
At most ``MAX_HELD`` requests are held at once (each holds an HTTP thread); beyond that a
request is answered at once, as on AWS, where API Gateway and Lambda hold nothing.

``until=ended`` asks for more: hold the request while the run has not ended, whatever else
changes (``stratoflow trigger --wait`` wants the end, not every step). Only a commit that
writes the run's state (``Changes.run_states``: started, paused, ended...) wakes it, to check
that state, one row read (``RunWatch.ended``); the hundreds of commits of a run's tasks and
counters do not (each wake took the GIL from the scheduler: 0.3-0.5 s of a 2,000-task run's
3.5 s). The view is rendered once, when the run has ended or ``wait`` elapsed, again if a
commit touched the run since it was first rendered.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from stratoflow.errors import NotFound

if TYPE_CHECKING:
    from stratoflow.ports import StateStore

MAX_HELD = 8  # requests held at once; the server has 32 HTTP threads
MAX_WAIT = 30.0  # seconds; the route refuses more (422)
_RUN_PATH = re.compile(r"^/runs/([^/]+)$")
_SMALL_DELTA = 16 * 1024  # a delta larger than this has something in it: not parsed


class Changes(Protocol):
    """What a store's commit hook reports (the local store's ``StoreChanges``)."""

    runs: set[str]
    run_states: set[str]  # the runs whose state was written: a subset of ``runs``
    tasks: set[tuple[str, str]]
    attempts: set[tuple[str, str, int]]


@dataclass(eq=False)
class Ticket:
    """A held request's claim on a run: ``changed`` is set when a commit touches it, or, for
    a ticket ``ended_only``, when a commit writes its state (``touched`` then tells whether
    any commit touched it)."""

    run_id: str
    ended_only: bool = False
    changed: threading.Event = field(default_factory=threading.Event)
    touched: bool = False


class RunWatch:
    """The held requests, by run; ``on_commit`` (a store commit hook) wakes those of the runs
    a commit wrote. Costs a commit nothing while no request is held."""

    def __init__(
        self, max_held: int = MAX_HELD, *, ended: Callable[[str], bool] | None = None
    ) -> None:
        """``ended``: whether a run has ended (a cheap read of its state), for ``until=ended``;
        without it such requests are held as plain long polls."""
        self.max_held = max_held
        self.ended = ended
        self._lock = threading.Lock()
        self._held: dict[str, set[Ticket]] = {}
        self._count = 0
        self.closed = False

    @property
    def held(self) -> int:
        with self._lock:
            return self._count

    def ticket(self, run_id: str, *, ended_only: bool = False) -> Ticket | None:
        """A claim on ``run_id``'s next change (``ended_only``: on the next write of its
        state); None when ``max_held`` are held already (or the server is closing): then
        answer at once."""
        with self._lock:
            if self._count >= self.max_held or self.closed:
                return None
            ticket = Ticket(run_id, ended_only)
            self._held.setdefault(run_id, set()).add(ticket)
            self._count += 1
            return ticket

    def release(self, ticket: Ticket) -> None:
        with self._lock:
            tickets = self._held.get(ticket.run_id)
            if tickets is None or ticket not in tickets:
                return
            tickets.discard(ticket)
            if not tickets:
                del self._held[ticket.run_id]
            self._count -= 1

    def on_commit(self, changes: Changes) -> None:
        """The store's commit hook (in the committing thread): wake the requests held on a
        run the commit wrote (the run row, a task, an attempt); those held until the run's
        end only if it wrote the run's state."""
        if not self._held:  # nothing held: a commit pays one dict check
            return
        touched = set(changes.runs)
        touched.update(run for run, *_ in changes.tasks)
        touched.update(run for run, *_ in changes.attempts)
        self._wake(touched, changes.run_states)

    def close(self) -> None:
        """Release every held request now (the server is stopping)."""
        with self._lock:
            self.closed = True
        self._wake(None)

    def _wake(self, runs: Iterable[str] | None, states: set[str] | None = None) -> None:
        with self._lock:
            if runs is None:
                woken = [t for tickets in self._held.values() for t in tickets]
            else:
                woken = []
                for run in runs:
                    for ticket in self._held.get(run, ()):
                        ticket.touched = True
                        if not ticket.ended_only or (states is not None and run in states):
                            woken.append(ticket)
        for ticket in woken:
            ticket.changed.set()


def run_ended(store: StateStore) -> Callable[[str], bool]:
    """``RunWatch.ended`` for ``store``: whether a run has ended, one read of its row. A run
    that does not exist counts as ended: its request is answered (404) at once."""

    def ended(run_id: str) -> bool:
        try:
            return store.get_run(run_id).state.terminal
        except NotFound:
            return True

    return ended


def wanted(event: Mapping[str, Any]) -> tuple[str, float] | None:
    """The run and seconds a request asks to be held for: a ``GET /runs/{id}`` with a valid
    ``wait``; None otherwise (an invalid ``wait`` is the route's to refuse, at once)."""
    if event.get("httpMethod") != "GET":
        return None
    match = _RUN_PATH.match(event.get("path") or "")
    raw = (event.get("queryStringParameters") or {}).get("wait")
    if match is None or raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    if not 0 < seconds <= MAX_WAIT:
        return None
    return match.group(1), seconds


def until_ended(event: Mapping[str, Any]) -> bool:
    """Whether the request asks to be held until the run has ended (``until=ended``)."""
    return (event.get("queryStringParameters") or {}).get("until") == "ended"


def unchanged(event: Mapping[str, Any], response: Mapping[str, Any]) -> bool:
    """Whether an answer tells the client nothing new: a 304, or (asked with ``since`` and
    no tag) a delta at that same revision with no task in it."""
    status = response.get("statusCode")
    if status == 304:
        return True
    since = (event.get("queryStringParameters") or {}).get("since")
    body = response.get("body")
    if status != 200 or since is None or response.get("isBase64Encoded"):
        return False
    if not isinstance(body, str) or len(body) > _SMALL_DELTA:
        return False
    try:
        view = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(view, dict)
        and view.get("full") is False
        and not view.get("tasks")
        and str(view.get("revision")) == since
    )


def resolve_held(
    watch: RunWatch,
    event: dict[str, Any],
    resolve: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Answer ``event`` with ``resolve``, holding it (in this thread) while the answer is
    unchanged, the run has not changed and its ``wait`` has not elapsed; with ``until=ended``
    (and a watch that can tell), while the run has not ended and ``wait`` has not elapsed."""
    asked = wanted(event)
    ended = watch.ended
    to_end = ended is not None and until_ended(event)
    ticket = watch.ticket(asked[0], ended_only=to_end) if asked is not None else None
    if asked is None or ticket is None:
        return resolve(event)
    deadline = time.monotonic() + asked[1]
    try:
        if ended is not None and to_end:
            # read before the first answer: a run found ended later ended after it was made,
            # whether or not this ticket has heard of that commit yet (the store's other
            # hooks run first)
            ended_before = ended(asked[0])
            # asked once first: who may not read the run learns nothing from when it ends
            response = resolve(event)
            if response.get("statusCode") not in (200, 304):
                return response
            held = done = False
            # a commit while the state is read sets the ticket: the wait returns at once
            while not watch.closed:
                done = ended(asked[0])
                left = deadline - time.monotonic()
                if done or left <= 0 or not ticket.changed.wait(left):
                    break
                ticket.changed.clear()
                held = True
            # a commit since the first answer began (the ticket was taken before it) made it
            # stale: the run may have ended just after it was read, or its tasks moved
            stale = held or ticket.touched or ticket.changed.is_set() or (done and not ended_before)
            return resolve(event) if stale else response
        while True:
            # the ticket was taken (or cleared) before asking: a commit while the resolver
            # works sets it, and the wait below returns at once
            response = resolve(event)
            left = deadline - time.monotonic()
            if left <= 0 or watch.closed or not unchanged(event, response):
                return response
            if not ticket.changed.wait(left) or watch.closed:
                return response
            ticket.changed.clear()
    finally:
        watch.release(ticket)
