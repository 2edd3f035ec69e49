"""Hypothesis strategies shared by the property tests: random DAGs, outcome plans, scenarios.

A :class:`DagDef` is a plain description of a workflow (no stratoflow types) that renders to
workflow format v1, so a property test can build the real thing through ``Scheduler.apply``
and still reason about the graph on its own terms in an oracle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

TRIGGER_RULES = (
    "all_success",
    "all_done",
    "all_failed",
    "one_success",
    "one_failed",
    "none_failed",
    "none_failed_min_one_success",
)
MAX_RETRIES = 2
MAX_ATTEMPTS = MAX_RETRIES + 1
MAX_PICK = 3  # a run's `pick` param is 0..MAX_PICK; switch case i matches pick == i


@dataclass(frozen=True)
class Case:
    pick: int  # the case holds when the run's `pick` param equals this
    next: tuple[str, ...]


@dataclass(frozen=True)
class TaskDef:
    id: str
    parents: tuple[str, ...] = ()
    rule: str = "all_success"
    retries: int = 0
    cases: tuple[Case, ...] = ()  # non-empty: a switch task
    default: tuple[str, ...] = ()
    timeout: str | None = None

    @property
    def is_switch(self) -> bool:
        return bool(self.cases)

    def branches(self) -> set[str]:
        return {t for case in self.cases for t in case.next} | set(self.default)

    def chosen(self, pick: int) -> tuple[str, ...]:
        """The branches a switch takes for a run with ``pick``: first matching case, else
        the default."""
        for case in self.cases:
            if case.pick == pick:
                return case.next
        return self.default

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"trigger_rule": self.rule, "retries": self.retries}
        if self.parents:
            doc["depends_on"] = list(self.parents)
        if self.timeout is not None:
            doc["timeout"] = self.timeout
        if self.is_switch:
            doc["type"] = "switch"
            doc["cases"] = [
                {"when": f"{{{{ params.pick == {c.pick} }}}}", "next": list(c.next)}
                for c in self.cases
            ]
            doc["default"] = list(self.default)
        else:
            doc["type"] = "shell"
            doc["command"] = f"echo {self.id}"
        return doc


@dataclass(frozen=True)
class DagDef:
    tasks: tuple[TaskDef, ...]  # in a topological order (parents come first)
    concurrency: int | None = None
    on_failure: str = "continue"
    name: str = "storm"

    def task(self, task_id: str) -> TaskDef:
        return next(t for t in self.tasks if t.id == task_id)

    def children(self, task_id: str) -> list[str]:
        return [t.id for t in self.tasks if task_id in t.parents]

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "params": {"pick": 0},
            "on_failure": self.on_failure,
            "defaults": {"retry_delay": "10s", "retry_backoff": 2.0, "max_retry_delay": "25s"},
            "tasks": {t.id: t.document() for t in self.tasks},
        }
        if self.concurrency is not None:
            doc["concurrency"] = self.concurrency
        return doc

    def text(self) -> str:
        """Workflow format v1. JSON is YAML, and it cannot be mis-indented."""
        return json.dumps(self.document(), indent=2)


# One task's draws, kept together so that the shrinker can drop a task by deleting one list
# element without changing the others: a key (its id is t<key>; keys order the tasks, so
# edges only go from a lower key to a higher one), parent picks, trigger rule, retries, and
# whether it may be the switch.
_KEYS = 40
_TASK_DRAWS = st.tuples(
    st.integers(0, _KEYS),
    st.lists(st.integers(0, _KEYS), max_size=4),
    st.sampled_from(TRIGGER_RULES),
    st.sampled_from([0, 0, 1, MAX_RETRIES]),
    st.sampled_from([False, False, True]),
)


def _parent(earlier: list[int], pick: int) -> int:
    """The first earlier key at or above ``pick``, else the last one: deleting some other
    task never changes which task a pick names."""
    return next((k for k in earlier if k >= pick), earlier[-1])


@st.composite
def dags(draw: st.DrawFn, min_tasks: int = 1, max_tasks: int = 12) -> DagDef:
    """Random acyclic workflows: edges only go from an earlier task to a later one, every
    trigger rule, retries 0..2 on some tasks, and maybe one switch task with random cases."""
    drawn = sorted(
        draw(
            st.lists(_TASK_DRAWS, min_size=min_tasks, max_size=max_tasks, unique_by=lambda t: t[0])
        )
    )
    n = len(drawn)
    keys = [key for key, *_ in drawn]
    ids = [f"t{key}" for key in keys]
    parents = [
        tuple(f"t{k}" for k in sorted({_parent(keys[:i], p) for p in picks})) if i else ()
        for i, (_, picks, *_) in enumerate(drawn)
    ]
    rules = [rule for _, _, rule, _, _ in drawn]
    retries = [r for _, _, _, r, _ in drawn]

    # the switch: the first task that may be one and has children (a switch needs branches)
    candidates = [i for i in range(n) if drawn[i][4] and any(ids[i] in p for p in parents)]
    switch = candidates[0] if candidates else None
    cases: tuple[Case, ...] = ()
    default: tuple[str, ...] = ()
    if switch is not None:
        kids = [ids[j] for j in range(n) if ids[switch] in parents[j]]
        branch = st.lists(st.sampled_from(kids), unique=True, min_size=1).map(tuple)
        n_cases = draw(st.integers(1, MAX_PICK))
        cases = tuple(Case(i, draw(branch)) for i in range(n_cases))
        default = draw(st.just(()) | branch)
        # a switch's child must be one of its branches (validation refuses one that is none,
        # which would run whatever the switch chose): those no case or default names join
        # the last case
        named = {t for case in cases for t in case.next} | set(default)
        if rest := tuple(k for k in kids if k not in named):
            cases = (*cases[:-1], Case(cases[-1].pick, cases[-1].next + rest))

    tasks = tuple(
        TaskDef(
            id=ids[i],
            parents=parents[i],
            rule=rules[i],
            retries=retries[i],
            cases=cases if i == switch else (),
            default=default if i == switch else (),
        )
        for i in range(n)
    )
    concurrency = draw(st.none() | st.integers(1, 3))
    on_failure = draw(st.sampled_from(["continue", "continue", "continue", "stop"]))
    return DagDef(tasks, concurrency=concurrency, on_failure=on_failure)


# One outcome per attempt: True = the attempt succeeds. A task with r retries uses the first
# r + 1 entries.
OutcomePlan = Mapping[str, tuple[bool, ...]]


def outcome_plans(dag: DagDef) -> st.SearchStrategy[OutcomePlan]:
    attempts = st.tuples(*[st.booleans()] * MAX_ATTEMPTS)
    return st.fixed_dictionaries({t.id: attempts for t in dag.tasks})


@dataclass(frozen=True)
class Scenario:
    dag: DagDef
    plan: OutcomePlan
    pick: int  # the run's `pick` param, which decides the switch


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    dag = draw(dags())
    return Scenario(dag, draw(outcome_plans(dag)), draw(st.integers(0, MAX_PICK)))


# --------------------------------------------------------------------------------------------
# Hostile workflow files: YAML text with aliases, deep nesting, odd numbers and odd keys
# --------------------------------------------------------------------------------------------

ODD_SCALARS = (
    ".inf", "-.inf", ".nan", "1e999", "-1e400", "9" * 400, "0x" + "f" * 20, "0b" + "1" * 70,
    "99999999999999d", "1_000_000_000_000_000_000_000", "9223372036854775808", "-0", "0.0",
    "1e-400", "366d", "0001-01-01T00:00:00", "9999-12-31T23:59:59", "0000-01-01", "~", "true",
    "no", '"ab\\n"', '"\\0"', '"\\x1b[31m"', '"\\ud800"', "'0 0 30 2 *'", "'cron(0 0 1 1 ? 1999)'",
    "!!binary AAAA", "!!set {a: null}", "!!omap [a: 1]", "!!float nan", "!!int 1e3", "!!str 1",
    "!!timestamp 2026-13-45", "2026-01-01T00:00:00+99:00", '"' + "x" * 300 + '"',
)  # fmt: skip
ODD_KEYS = (
    "1", "-1", "1.5", "true", "null", "~", "<<", '"ab\\n"', '"a=b"', '""', "[a, b]", "{a: 1}",
    "!!int 3", '"\\t"', "? x", "0 0 * * *",
)  # fmt: skip
TASK_FIELDS = (
    "timeout", "retries", "retry_delay", "retry_backoff", "max_retry_delay", "params", "env",
    "depends_on", "command", "type",
)  # fmt: skip
TOP_FIELDS = ("params", "concurrency", "max_active_runs", "schedule", "defaults", "name")


def _plain_scalars() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(ODD_SCALARS),
        st.integers(-(10**30), 10**30).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True),
    )


@st.composite
def hostile_values(draw: st.DrawFn, max_depth: int = 6) -> str:
    """A flow-style YAML value: collections that declare anchors, aliases to anchors declared
    before them (some to a collection still open: a recursive alias), odd scalars and keys."""
    anchors: list[str] = []
    open_anchors: list[str] = []

    def value(depth: int) -> str:
        choices = ["scalar", "alias"] + (["seq", "map"] if depth < max_depth else [])
        kind = draw(st.sampled_from(choices))
        if kind == "alias" and (anchors or open_anchors):
            pool = anchors + (open_anchors if draw(st.integers(0, 9)) == 0 else [])
            if pool:
                return "*" + draw(st.sampled_from(pool))
        if kind in ("seq", "map"):
            name = f"n{len(anchors) + len(open_anchors)}" if draw(st.booleans()) else None
            if name is not None:
                open_anchors.append(name)
            count = draw(st.integers(0, 6))
            if kind == "seq":
                body = "[" + ", ".join(value(depth + 1) for _ in range(count)) + "]"
            else:
                pairs = [f"{key(depth)}: {value(depth + 1)}" for _ in range(count)]
                body = "{" + ", ".join(pairs) + "}"
            if name is None:
                return body
            open_anchors.remove(name)
            anchors.append(name)
            return f"&{name} {body}"
        return draw(_plain_scalars())

    def key(depth: int) -> str:
        if draw(st.integers(0, 4)) == 0:
            return draw(st.sampled_from(ODD_KEYS))
        return draw(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True))

    return value(0)


def _bomb(levels: int, fanout: int, mapping: bool) -> str:
    """``levels`` anchors, each ``fanout`` aliases of the one before: fanout**levels values."""
    if mapping:
        lines = ["  b0: &b0 {" + ", ".join(f"k{j}: x" for j in range(fanout)) + "}"]
        lines += [
            f"  b{i}: &b{i} {{" + ", ".join(f"k{j}: *b{i - 1}" for j in range(fanout)) + "}"
            for i in range(1, levels)
        ]
    else:
        lines = ["  b0: &b0 [" + ", ".join(["x"] * fanout) + "]"]
        lines += [
            f"  b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * fanout) + "]" for i in range(1, levels)
        ]
    return "\n".join(lines)


@st.composite
def hostile_workflows(draw: st.DrawFn) -> str:
    """A workflow file (text) with something hostile in it: a value from
    :func:`hostile_values` in a task field, a top-level field or as a key; an alias bomb under
    ``params``; nesting deep in flow or block style; or a schedule at the edge of time."""
    shape = draw(st.sampled_from(["task_field", "top_field", "task_key", "bomb", "deep", "block"]))
    head = "name: w\n"
    task = "  t: {type: shell, command: echo}\n"
    if shape == "task_field":
        field = draw(st.sampled_from(TASK_FIELDS))
        value = draw(hostile_values())
        return f"{head}tasks:\n  t: {{type: shell, command: echo, {field}: {value}}}\n"
    if shape == "top_field":
        field = draw(st.sampled_from(TOP_FIELDS))
        if field == "schedule":
            cron = draw(st.sampled_from(["'0 0 * * *'", "'0 0 30 2 *'", "'rate(1 minute)'"]))
            zone = draw(
                st.sampled_from(["UTC", "Asia/Tokyo", "America/New_York", "Pacific/Kiritimati"])
            )
            start = draw(
                _plain_scalars() | st.sampled_from(["1900-01-01T00:00:00", "9999-12-30T23:59:00"])
            )
            value = f"{{cron: {cron}, timezone: {zone}, start: {start}, catchup: true}}"
        else:
            value = draw(hostile_values())
        return f"{head}{field}: {value}\ntasks:\n{task}"
    if shape == "task_key":
        return (
            f"{head}tasks:\n  {draw(st.sampled_from(ODD_KEYS))}: {{type: shell, command: echo}}\n"
        )
    if shape == "bomb":
        levels, fanout = draw(st.integers(2, 12)), draw(st.integers(2, 10))
        return f"{head}params:\n{_bomb(levels, fanout, draw(st.booleans()))}\ntasks:\n{task}"
    if shape == "deep":
        n = draw(st.integers(1, 3000))
        return f"{head}params: {{p: {'[' * n}1{']' * n}}}\ntasks:\n{task}"
    n = draw(st.integers(1, 200))
    nested = "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(n)) + "  " * (n + 1) + "v: 1\n"
    return f"{head}params:\n{nested}tasks:\n{task}"
