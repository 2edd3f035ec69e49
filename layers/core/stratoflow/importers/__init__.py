"""``stratoflow import``: other schedulers' workflows as format-v1 YAML, with a report of
everything that did not map. Pure: reads the files it is given, writes nothing.

Formats: DolphinScheduler export JSON (1.x ``processDefinitionJson``; 3.0-3.2
``processDefinition`` / ``processTaskRelationList``; 3.3 ``workflowDefinition`` /
``workflowTaskRelationList``), pydolphinscheduler YAML, and dag-factory YAML.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from stratoflow.errors import InvalidInput, Problem
from stratoflow.importers._build import Unmapped
from stratoflow.importers._cron import airflow_schedule, quartz_to_schedule
from stratoflow.importers._dagfactory import GROUP_SEPARATOR, is_dag_factory, read_dag_factory
from stratoflow.importers._dolphinscheduler import (
    CodeTable,
    code_table,
    convert,
    is_export,
    read_export,
)
from stratoflow.importers._pydolphin import (
    _FILE,
    _WORKFLOW,
    MAX_INCLUDED_BYTES,
    MAX_INCLUDED_TOTAL,
    MAX_INCLUDES,
    OutsideFolder,
    included_file,
    is_pydolphin,
    read_pydolphin,
)
from stratoflow.importers._report import FileImport, ImportedWorkflow, Note, Notes
from stratoflow.importers._sizes import least_text
from stratoflow.model import MAX_DOCUMENT_BYTES, MAX_TASKS, parse_workflow
from stratoflow.model._loader import load_yaml

Source = Literal["dolphinscheduler", "dag-factory"]

__all__ = [
    "GROUP_SEPARATOR",
    "CodeTable",
    "FileImport",
    "ImportedWorkflow",
    "Note",
    "Source",
    "Unmapped",
    "airflow_schedule",
    "distinct_names",
    "import_codes",
    "import_file",
    "quartz_to_schedule",
    "to_yaml",
]


def _bad(file: Path, message: str) -> InvalidInput:
    return InvalidInput([Problem("file", message)], source=str(file))


def _read(path: Path) -> Any:
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise _bad(path, f"cannot read it: {exc.strerror}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise _bad(path, f"over {MAX_DOCUMENT_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad(path, f"not UTF-8 (byte {exc.start})") from None
    if path.suffix.lower() != ".json":
        # Stratoflow's own YAML loader: bounded in size, depth, nodes and aliases
        return load_yaml(text, source=str(path))[0]
    try:
        return json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError
        raise _bad(path, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise _bad(path, "JSON nested too deeply") from None


def import_codes(paths: list[str | Path], source: Source | None = None) -> CodeTable:
    """The DolphinScheduler definition codes of the workflows in ``paths`` (the files of one
    import), so that a sub-workflow or dependency in one file can name a workflow of another.
    Files that cannot be read are skipped here (importing them reports why)."""
    table: CodeTable = {}
    if source not in (None, "dolphinscheduler"):
        return table
    for path in paths:
        try:
            data = _read(Path(path))
            if is_export(data):
                items = data[:MAX_WORKFLOWS] if isinstance(data, list) else data
                table.update(code_table(read_export(items)))
        except (InvalidInput, KeyError, TypeError, ValueError, AttributeError, IndexError):
            continue
    return table


def import_file(
    path: str | Path,
    source: Source | None = None,
    unmapped: Unmapped = "placeholder",
    codes: CodeTable | None = None,
) -> FileImport:
    """Convert one file. Raises :class:`InvalidInput` when it cannot be read or is none of
    the formats (``source`` narrows the guess). ``codes`` names the workflows of the whole
    import by DolphinScheduler definition code (:func:`import_codes`); the file's own are
    always known."""
    file = Path(path)
    data = _read(file)
    try:
        return _convert(file, data, source, unmapped, codes or {})
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # a shape no version of the formats writes (a list where a mapping belongs, ...)
        raise _bad(file, f"cannot be converted: {type(exc).__name__}: {exc}") from None


def _convert(
    file: Path, data: Any, source: Source | None, unmapped: Unmapped, codes: CodeTable
) -> FileImport:
    workflows: list[ImportedWorkflow]
    if source in (None, "dolphinscheduler") and is_export(data):
        fmt = "dolphinscheduler-export"
        flows = read_export(data[: MAX_WORKFLOWS + 1] if isinstance(data, list) else data)
        _bounded(file, len(flows), max((len(f.tasks) for f in flows), default=0))
        table = {**codes, **code_table(flows)}
        workflows = [convert(flow, unmapped, table) for flow in flows]
    elif source in (None, "dolphinscheduler") and is_pydolphin(data):
        fmt = "pydolphinscheduler-yaml"
        _includes_bounded(file, data)
        reading = Notes()
        flow = read_pydolphin(data, file, reading)
        _bounded(file, 1, len(flow.tasks))
        converted = convert(flow, unmapped, codes)
        notes = tuple(
            Note(n.severity, n.message, converted.name, n.task, n.field) for n in reading.items
        )
        workflows = [
            ImportedWorkflow(
                converted.name, converted.source_name, converted.document, notes + converted.notes
            )
        ]
    elif source in (None, "dag-factory") and is_dag_factory(data):
        fmt = "dag-factory"
        _bounded(
            file,
            len(data),
            max(
                (len(v.get("tasks") or []) for v in data.values() if isinstance(v, dict)), default=0
            ),
        )
        workflows = read_dag_factory(data, file, unmapped)
    else:
        expected = {
            None: "a DolphinScheduler export, pydolphinscheduler YAML or dag-factory YAML",
            "dolphinscheduler": "a DolphinScheduler export or pydolphinscheduler YAML",
            "dag-factory": "dag-factory YAML (DAG ids mapping to configurations with tasks)",
        }[source]
        raise _bad(file, f"no workflow found: expected {expected}")
    return FileImport(str(file), fmt, tuple(_validated(w, file.name) for w in workflows))


MAX_WORKFLOWS = 1_000
"""The most workflows one file may hold."""


def _bounded(file: Path, workflows: int, tasks: int) -> None:
    if workflows > MAX_WORKFLOWS:
        raise _bad(file, f"more than {MAX_WORKFLOWS:,} workflows in one file")
    if tasks > MAX_TASKS:
        raise _bad(file, f"a workflow with {tasks:,} tasks; at most {MAX_TASKS:,}")


MAX_WORKFLOW_READS = 8 * MAX_DOCUMENT_BYTES
"""The most bytes its ``$WORKFLOW{}`` includes may hold in all (each is read and parsed)."""


def _includes_bounded(file: Path, data: dict[str, Any]) -> None:
    """Refuse a pydolphinscheduler file whose ``$FILE{}`` / ``$WORKFLOW{}`` includes are too
    many or too big in all, before any is read: 50 includes of a 1 MiB file made a 52 MB
    workflow file. Each counts what reading it costs (a file over ``MAX_INCLUDED_BYTES`` is
    read that far, then reported, not included); one that is not a regular file (a FIFO, a
    device, which a read could wait on forever) is refused."""
    count = 0
    spent = {"$FILE": 0, "$WORKFLOW": 0}
    budget = {"$FILE": MAX_INCLUDED_TOTAL, "$WORKFLOW": MAX_WORKFLOW_READS}
    for text in _strings([data.get("workflow"), data.get("tasks")]):
        for token, pattern in (("$FILE", _FILE), ("$WORKFLOW", _WORKFLOW)):
            for match in pattern.finditer(text):
                count += 1
                if count > MAX_INCLUDES:
                    raise _bad(
                        file, f"more than {MAX_INCLUDES:,} $FILE{{}} / $WORKFLOW{{}} includes"
                    )
                spent[token] += _read_cost(file, token, match.group(1))
                if spent[token] > budget[token]:
                    raise _bad(
                        file,
                        f"its {token}{{}} includes hold over {budget[token]:,} bytes in all "
                        f"(each included file counts each time it is named): at most "
                        f"{budget[token]:,}, as a workflow file holds",
                    )


def _read_cost(file: Path, token: str, name: str) -> int:
    path = file.parent / name
    if token == "$FILE":  # noqa: S105 - an include token, not a password
        try:
            path = included_file(file.parent, name)
        except OutsideFolder as exc:
            raise _bad(file, str(exc)) from None
    try:
        status = path.stat()
    except (OSError, ValueError):
        return 0  # unreadable: the import reports it
    if stat.S_ISDIR(status.st_mode):
        return 0
    if not stat.S_ISREG(status.st_mode):
        raise _bad(file, f"{token}{{{name!r}}} is not a regular file")
    return min(status.st_size, MAX_INCLUDED_BYTES + 1)


def _strings(value: Any) -> Iterator[str]:
    """Every string value inside ``value`` (not the keys), however deep."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _too_big(workflow: ImportedWorkflow, source: str) -> Note | None:
    """Why the workflow's file would be refused by ``validate`` and ``apply`` (over the
    document limit they check first), or None. The cheap lower bound decides first, so a
    document of 50 MB is not written out as YAML to learn it."""
    assert workflow.document is not None
    least = least_text(workflow.document)
    if least > MAX_DOCUMENT_BYTES:
        said = f"at least {least:,}"
    else:
        size = len(to_yaml(workflow, source).encode())
        if size <= MAX_DOCUMENT_BYTES:
            return None
        said = f"{size:,}"
    return Note(
        "unmapped",
        f"the file of workflow {workflow.name!r} would be {said} bytes of YAML, over the "
        f"{MAX_DOCUMENT_BYTES:,} bytes `stratoflow validate` and `apply` take: it is not "
        "written",
        workflow.name,
    )


def _validated(workflow: ImportedWorkflow, source: str) -> ImportedWorkflow:
    """Check the document with Stratoflow's own loader; one it refuses is not written. Its
    size is checked first: validating a document that is too big anyway was most of the
    work (27 s for a 4 MB one)."""
    if workflow.document is None:
        note = Note(
            "unmapped", "no task could be written: the workflow is not written", workflow.name
        )
        return ImportedWorkflow(workflow.name, workflow.source_name, None, (*workflow.notes, note))
    refused = _too_big(workflow, source)
    if refused is not None:
        return ImportedWorkflow(
            workflow.name, workflow.source_name, None, (*workflow.notes, refused)
        )
    document, notes = workflow.document, workflow.notes
    try:
        parse_workflow(document, now=datetime.now(UTC))
    except InvalidInput as exc:
        if "schedule" in document and all(p.path.startswith("schedule") for p in exc.problems):
            document = {k: v for k, v in document.items() if k != "schedule"}
            note = Note("unmapped", f"schedule left out: {exc}", workflow.name, field="schedule")
            return _validated(
                ImportedWorkflow(workflow.name, workflow.source_name, document, (*notes, note)),
                source,
            )
        note = Note(
            "unmapped",
            f"the converted workflow does not validate, so it is not written: {exc}",
            workflow.name,
        )
        return ImportedWorkflow(workflow.name, workflow.source_name, None, (*workflow.notes, note))
    return workflow


def distinct_names(results: list[FileImport]) -> list[FileImport]:
    """The same results, a workflow whose (project, name) an earlier one has renamed
    ``name_2``, ``name_3``... (two files defining one name would otherwise be two versions of
    one workflow), with a note saying so."""
    taken: set[tuple[str, str]] = set()
    out = []
    for result in results:
        workflows = []
        for workflow in result.workflows:
            document = workflow.document
            if document is None:
                workflows.append(workflow)
                continue
            project = str(document.get("project", "default"))
            name, n = workflow.name, 1
            while (project, name) in taken:
                n += 1
                name = f"{workflow.name[:120]}_{n}"
            taken.add((project, name))
            if name != workflow.name:
                note = Note(
                    "changed",
                    f"another file of this import defines {workflow.name!r} too: named {name!r}",
                    name,
                )
                renamed = ImportedWorkflow(
                    name, workflow.source_name, {**document, "name": name}, (*workflow.notes, note)
                )
                # the longer name may take the file over the limit
                refused = _too_big(renamed, Path(result.path).name)
                if refused is not None:
                    renamed = ImportedWorkflow(
                        name, workflow.source_name, None, (*renamed.notes, refused)
                    )
                workflows.append(renamed)
                continue
            workflows.append(workflow)
        out.append(FileImport(result.path, result.source_format, tuple(workflows), result.notes))
    return out


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = (
        "|"
        if "\n" in value
        and all(c.isprintable() or c == "\n" for c in value)
        and not value.endswith(" ")
        else None
    )
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(workflow: ImportedWorkflow, source: str) -> str:
    """The workflow file's text, headed by where it came from."""
    assert workflow.document is not None
    head = f"# Imported by `stratoflow import` from {source} ({workflow.source_name!r}).\n"
    if any(n.severity == "unmapped" for n in workflow.notes):
        head += "# Not everything mapped: read the import report beside this file.\n"
    return head + yaml.dump(
        workflow.document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )
