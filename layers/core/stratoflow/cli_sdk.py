"""The CLI's side of the Python SDK and of editor help.

``validate``, ``apply``, ``run`` and ``server --apply`` take Python modules next to YAML files:
a ``.py`` file is imported here, on the user's machine (it runs the module's code), its
workflows are validated with lines of the ``.py`` file, and each is sent on as the YAML text
of its document. ``stratoflow schema`` prints the JSON Schema editors use.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from stratoflow.cli_common import invalid
from stratoflow.errors import InvalidInput

if TYPE_CHECKING:  # the model is imported when used: `stratoflow --help` stays fast
    from stratoflow.model import WorkflowSpec

PYTHON_SUFFIX = ".py"


def is_python(path: str | Path) -> bool:
    return Path(path).suffix == PYTHON_SUFFIX


def listed_in_directory(path: Path) -> bool:
    """Whether a directory's file is a workflow to apply: YAML, or a Python module whose
    name does not start with '_' (``__init__.py``, private helpers)."""
    return path.suffix in (".yaml", ".yml") or (
        path.suffix == PYTHON_SUFFIX and not path.name.startswith("_")
    )


def _header(path: Path | str) -> str:
    return f"Rendered by stratoflow.sdk from {path}: edit the Python module, not this text."


def _module_specs(
    path: Path | str, now: datetime | None, *, required: bool = True
) -> list[tuple[WorkflowSpec, str]]:
    """Each workflow of a Python module, validated (lines of the .py file), with its YAML."""
    from stratoflow.sdk import load_module_workflows

    found = load_module_workflows(path, required=required)
    return [wf.checked_yaml(now=now, source=str(path), header=_header(path)) for wf in found]


def validate_file(path: str, now: datetime) -> list[WorkflowSpec]:
    """The workflows a file defines, validated: one for YAML, each of a Python module's."""
    from stratoflow.model import load_workflow_file

    if is_python(path):
        return [spec for spec, _ in _module_specs(path, now)]
    return [load_workflow_file(path, now=now)]


def workflow_sources(
    files: Sequence[Path], named: Sequence[str | Path] = (), now: datetime | None = None
) -> list[tuple[str, str]]:
    """(where, YAML text) of every workflow in ``files``, all read before any is sent: a
    YAML file as it is; a Python module's workflows validated, then rendered. A module met in
    a directory (not in ``named``) may define none; a named one must define one."""
    from stratoflow.workflow_text import read_workflow_text

    wanted = {Path(p) for p in named}  # Path("./a.py") == Path("a.py")
    out: list[tuple[str, str]] = []
    for path in files:
        if is_python(path):
            required = Path(path) in wanted
            for spec, text in _module_specs(path, now, required=required):
                out.append((f"{path}:{spec.name}", text))
        else:
            out.append((str(path), read_workflow_text(path)))
    return out


def refused_sources(sources: Sequence[tuple[str, str]], now: datetime) -> list[str]:
    """The loader's refusal of each of ``sources`` that is invalid by itself (a cycle, an
    unknown field, a bad template), checked before any is sent: an apply of several files
    then changes nothing when one of them could never be applied. What only the server can
    check (its pools, alert groups, sub-workflows) is still its to refuse."""
    from stratoflow.model import load_workflow

    refused = []
    for where, text in sources:
        try:
            load_workflow(text, source=where, now=now)
        except InvalidInput as exc:
            refused.append(str(exc))
    return refused


def single_source(path: str, now: datetime) -> str:
    """The YAML text of the one workflow in ``path`` (``stratoflow run``)."""
    from stratoflow.workflow_text import read_workflow_text

    if not is_python(path):
        return read_workflow_text(path)
    found = _module_specs(path, now)
    if len(found) > 1:
        names = ", ".join(spec.name for spec, _ in found)
        raise InvalidInput(
            f"the module defines {len(found)} workflows ({names}); `stratoflow run` runs one: "
            "list only it in the module's `workflows`, or apply them to a server",
            source=path,
        )
    return found[0][1]


@click.command()
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="write it to this file (default: standard output)",
)  # fmt: skip
def schema(output: Path | None) -> None:
    """Print the JSON Schema of workflow files (format v1), generated from the models.

    Editors use it to complete and check workflow YAML: see "Editor help" in the README.
    The package ships the same file (stratoflow/schema/workflow.json), and the server
    serves it at /schema/workflow.json."""
    from stratoflow.model import schema_text, workflow_json_schema

    text = schema_text(workflow_json_schema())
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:  # no such directory, a directory, no permission: exit 2
            invalid(f"-o: cannot write {output}: {exc.strerror}")
        click.echo(f"wrote {output}", err=True)
