"""The graph of a workflow: validation (unknown deps, cycles, switch branches, template
references) and the adjacency the engine walks in O(out-degree)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stratoflow.errors import Problem
from stratoflow.model._workflow import PythonTask, SwitchTask, Workflow
from stratoflow.resources import nested_paths
from stratoflow.templating import (
    TemplateError,
    check_syntax,
    code_templates,
    is_template,
    mentions_secret,
    reads_tasks_dynamically,
    referenced_tasks,
    secret_references,
    undefined_names,
    variable_references,
)


@dataclass(frozen=True)
class Dag:
    """Immutable adjacency of a validated workflow."""

    order: tuple[str, ...]  # a topological order
    parents: Mapping[str, tuple[str, ...]]
    children: Mapping[str, tuple[str, ...]]
    # task -> upstream tasks whose outputs its templates read: those named literally
    # (tasks.a, tasks['a']), and every direct upstream of a task whose templates index
    # ``tasks`` dynamically (tasks[t]); only these outputs are read for its render
    reads: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # task -> the project variables its templates read (var.value.NAME, var.json.NAME): only
    # these are read from the store for its render
    variables: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(t for t in self.order if not self.parents[t])

    def downstream(self, start: str) -> list[str]:
        """``start`` and every task reachable from it, in topological order."""
        seen = {start}
        stack = [start]
        while stack:
            for child in self.children[stack.pop()]:
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return [t for t in self.order if t in seen]

    def ancestors(self, task_id: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.parents[task_id])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.parents[node])
        return seen


# how many variables one task's templates may read: each render reads them all (a project may
# hold 1,000 of 64 KiB: read whole, ~64 MB on one render)
MAX_TASK_VARIABLES = 100


def _walk_strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _walk_strings(v, f"{path}.{i}")]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _walk_strings(v, f"{path}.{k}")]
    return []


def _find_cycle(workflow: Workflow) -> list[str]:
    """One cycle as a path a -> b -> ... -> a (ids in dependency order), or []."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(workflow.tasks, white)
    for root in workflow.tasks:
        if colour[root] != white:
            continue
        # iterative DFS along depends_on edges, keeping the path for the report
        path: list[str] = [root]
        iters = [iter(workflow.tasks[root].depends_on)]
        colour[root] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                iters.pop()
                continue
            if nxt not in colour:  # unknown dependency, reported elsewhere
                continue
            if colour[nxt] == grey:
                cycle = [*path[path.index(nxt) :], nxt]
                cycle.reverse()  # depends_on points upstream; show it as data flows
                return cycle
            if colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                iters.append(iter(workflow.tasks[nxt].depends_on))
    return []


def build_dag(workflow: Workflow, *, stored: bool = False) -> tuple[Dag | None, list[Problem]]:
    """Validate the graph; return its adjacency, or the problems that prevent one.
    ``stored``: a version applied before, which must still load, so the checks added since
    are left out: a template name no render has (``templating.undefined_names``), a template
    in python code (``templating.code_templates``), a resource inside another the task
    lists (``resources.nested_paths``), a switch's child that is none of its branches
    (:func:`_unchosen_children`)."""
    problems: list[Problem] = []
    tasks = workflow.tasks
    for task_id, task in tasks.items():
        for i, dep in enumerate(task.depends_on):
            if dep not in tasks:
                problems.append(Problem(f"tasks.{task_id}.depends_on.{i}", f"unknown task {dep!r}"))
            elif dep == task_id:
                problems.append(
                    Problem(f"tasks.{task_id}.depends_on.{i}", "a task cannot depend on itself")
                )
    if problems:
        return None, problems

    children: dict[str, list[str]] = {t: [] for t in tasks}
    for task_id, task in tasks.items():
        for dep in task.depends_on:
            children[dep].append(task_id)
    order = _topological_order(workflow, children)
    if len(order) < len(tasks):  # Kahn's order leaves out the tasks on or below a cycle
        cycle = _find_cycle(workflow)  # one of them, as the report names it
        return None, [Problem(f"tasks.{cycle[0]}.depends_on", "cycle: " + " -> ".join(cycle))]
    parents = {t: tuple(tasks[t].depends_on) for t in tasks}
    dag = Dag(
        order=tuple(order),
        parents=parents,
        children={t: tuple(c) for t, c in children.items()},
    )

    if not stored:
        problems.extend(_unchosen_children(workflow))
    reads: dict[str, frozenset[str]] = {}
    variables: dict[str, frozenset[str]] = {}
    run_params = workflow.params.keys()
    nothing: frozenset[str] = frozenset()
    for task_id, task in tasks.items():
        if isinstance(task, SwitchTask):
            for i, case in enumerate(task.cases):
                for j, target in enumerate(case.next):
                    problems.extend(
                        _branch_problem(task_id, target, f"cases.{i}.next.{j}", workflow)
                    )
            for j, target in enumerate(task.default):
                problems.extend(_branch_problem(task_id, target, f"default.{j}", workflow))
        used: set[str] = set()
        var_names: set[str] = set()
        ancestors: set[str] | None = None
        # the params a template can read: a run's (only declared ones), then the task's own
        # over them, except in the task's params, which are rendered from the run's (made
        # once the task has a template: most have none)
        all_params: set[str] | None = None
        for field_name, value in task.templated_fields().items():
            # text with no template syntax has no syntax error, reference or secret to check
            # (a plain string field skipped here without the walk: ~6 ms of a 2,000-task load)
            if not value or (isinstance(value, str) and not is_template(value)):
                continue
            for path, text in _walk_strings(value, f"tasks.{task_id}.{field_name}"):
                if not is_template(text):
                    continue
                try:
                    check_syntax(text)
                    refs = referenced_tasks(text)
                    dynamic = reads_tasks_dynamically(text)
                    secret_names, misuse = secret_references(text)
                    var_read, var_misuse = variable_references(text)
                    own = field_name == "params"
                    if all_params is None:
                        all_params = run_params | task.params.keys()
                    undefined = (
                        undefined_names(text, run_params if own else all_params, own_params=own)
                        if not stored
                        else []
                    )
                except TemplateError as exc:
                    problems.append(Problem(path, str(exc)))
                    continue
                problems.extend(Problem(path, why) for why in misuse)
                var_names |= var_read
                if not stored:
                    problems.extend(Problem(path, why) for why in var_misuse)
                problems.extend(Problem(path, why) for why in undefined)
                if dynamic:  # which it reads is known only at render: its direct upstreams
                    used.update(task.depends_on)
                if secret_names and isinstance(task, SwitchTask):
                    problems.append(
                        Problem(path, "a switch decides in the scheduler: it cannot read secrets")
                    )
                for ref in sorted(refs):
                    if ref not in tasks:
                        problems.append(Problem(path, f"template references unknown task {ref!r}"))
                        continue
                    ancestors = dag.ancestors(task_id) if ancestors is None else ancestors
                    if ref not in ancestors:
                        problems.append(
                            Problem(
                                path,
                                f"template reads task {ref!r}, which is not upstream of "
                                f"{task_id!r} (add it to depends_on)",
                            )
                        )
                    used.add(ref)
        resources = getattr(task, "resources", None)
        if resources and not stored:  # a check added since: a stored version loads; its runs
            problems.extend(  # fail the task
                Problem(
                    f"tasks.{task_id}.resources.{i}",
                    f"resource {path!r} is inside {above!r}, which the task lists too: a path "
                    "is a file or a directory, not both",
                )
                for i, path, above in nested_paths(resources)
            )
        if isinstance(task, PythonTask) and task.code is not None and not stored:
            why = code_templates(task.code)
            if why is not None:
                problems.append(Problem(f"tasks.{task_id}.code", why))
        reads[task_id] = frozenset(used) if used else nothing
        if len(var_names) > MAX_TASK_VARIABLES and not stored:
            problems.append(
                Problem(
                    f"tasks.{task_id}",
                    f"its templates read {len(var_names)} variables, more than the "
                    f"{MAX_TASK_VARIABLES} a task may (each is read when it is rendered)",
                )
            )
        if var_names:
            variables[task_id] = frozenset(var_names)
    for path, text in _walk_strings(workflow.params, "params"):
        if mentions_secret(text):
            problems.append(
                Problem(
                    path,
                    "a workflow param is a value, not a template: reference the secret in a "
                    "task's fields, env or params ({{ secrets.NAME }})",
                )
            )
    if problems:
        return None, problems
    return Dag(dag.order, dag.parents, dag.children, reads, variables), []


def _branch_problem(switch_id: str, target: str, where: str, workflow: Workflow) -> list[Problem]:
    path = f"tasks.{switch_id}.{where}"
    if target not in workflow.tasks:
        return [Problem(path, f"unknown task {target!r}")]
    if switch_id not in workflow.tasks[target].depends_on:
        return [
            Problem(
                path,
                f"switch branch {target!r} must depend on {switch_id!r} "
                f"(add {switch_id!r} to its depends_on)",
            )
        ]
    return []


def _unchosen_children(workflow: Workflow) -> list[Problem]:
    """A task that depends on a switch but is none of its branches (in no case's ``next``,
    not in its ``default``). The engine skips only the branches a switch did not choose, so
    such a task runs whatever the switch chose; Airflow's branch operators skip every direct
    downstream task not chosen, and DolphinScheduler's switch every post-node it did not
    select. A user who writes it expecting one meaning would silently get the other: it is
    refused, naming both ways to say what is meant."""
    branches = {
        t: task.branches() for t, task in workflow.tasks.items() if isinstance(task, SwitchTask)
    }
    if not branches:
        return []
    problems: list[Problem] = []
    for task_id, task in workflow.tasks.items():
        for i, dep in enumerate(task.depends_on):
            if dep in branches and task_id not in branches[dep]:
                problems.append(
                    Problem(
                        f"tasks.{task_id}.depends_on.{i}",
                        f"depends on switch {dep!r} but is in none of its cases or its "
                        f"default: a switch runs only the branches it chooses; list "
                        f"{task_id!r} in a case's next or in default, or make it depend on "
                        f"the branches (trigger_rule: none_failed runs it after whichever ran)",
                    )
                )
    return problems


def _topological_order(workflow: Workflow, children: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm; ties keep the file's order so listings read as written."""
    indegree = {t: len(task.depends_on) for t, task in workflow.tasks.items()}
    ready = [t for t in workflow.tasks if indegree[t] == 0]
    order: list[str] = []
    i = 0
    while i < len(ready):
        node = ready[i]
        i += 1
        order.append(node)
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return order
