"""The drawing of a workflow version's graph, computed on the server once per version.

The web UI draws a run's graph from it: fetched alongside the run (so the page does not wait
for the run, then for the workflow's document, then lay out), and at 10,000 tasks a few
hundred kilobytes of numbers instead of the 2.5 MB document. A version never changes, so
neither does its layout: the API keeps the last few in memory and tags them by version.

The layout is linear in tasks + edges: each task in the column of its longest path from a
root, the tasks of a column ordered by the mean row of their parents (one barycentre sweep,
stable), straight edges from a parent's right side to a child's left. The UI refines graphs
of up to ``ELK_UP_TO`` tasks with ELK in a worker (ui/src/graph/layout.ts); above that, this
is the final layout.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from stratoflow.model import Dag

FORMAT = 1  # bumped when the shape or the drawing changes: the ETag names it
NODE_H = 28
ROW_GAP = 12
COLUMN_GAP = 48
CHAR_W = 7.2  # 12px sans-serif, roughly


def node_width(task_id: str) -> int:
    """As wide as the task's label, within 64-220 px."""
    return round(max(64.0, min(220.0, 26 + len(task_id) * CHAR_W)))


def quick_layout(dag: Dag) -> dict[str, Any]:
    """The layout of ``dag`` as parallel arrays (index i is ``tasks[i]``); ``edges`` is flat:
    parent index, child index, parent index, ..."""
    rank: dict[str, int] = {}
    columns: list[list[str]] = []
    for task in dag.order:  # topological: a task's parents are ranked before it
        r = 1 + max((rank[p] for p in dag.parents[task]), default=-1)
        rank[task] = r
        if r == len(columns):
            columns.append([])
        columns[r].append(task)
    row: dict[str, int] = {}
    for c, column in enumerate(columns):
        if c:

            def mean_parent_row(task: str) -> float:
                parents = dag.parents[task]
                return sum(row[p] for p in parents) / len(parents)

            column.sort(key=mean_parent_row)
        row.update({task: i for i, task in enumerate(column)})
    tasks: list[str] = []
    xs: list[int] = []
    ys: list[int] = []
    ws: list[int] = []
    x = 0
    for column in columns:
        widths = [node_width(t) for t in column]
        for task, w in zip(column, widths, strict=True):
            tasks.append(task)
            xs.append(x)
            ys.append(row[task] * (NODE_H + ROW_GAP))
            ws.append(w)
        x += max(widths) + COLUMN_GAP
    index = {task: i for i, task in enumerate(tasks)}
    edges: list[int] = []
    for task in tasks:
        for parent in dag.parents[task]:
            edges += (index[parent], index[task])
    return {
        "format": FORMAT,
        "tasks": tasks,
        "x": xs,
        "y": ys,
        "w": ws,
        "h": NODE_H,
        "edges": edges,
        "width": max(x - COLUMN_GAP, 0),
        "height": max((len(c) for c in columns), default=0) * (NODE_H + ROW_GAP),
    }


class LayoutCache:
    """The last ``size`` layouts, least recently used first out: each is computed once per
    version while it is kept (a 10,000-task layout is about 0.5 MB of JSON)."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._kept: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()  # the local server answers on several threads

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            found = self._kept.get(key)
            if found is None:
                found = compute()
                self._kept[key] = found
                while len(self._kept) > self._size:
                    self._kept.popitem(last=False)
            else:
                self._kept.move_to_end(key)
            return found
