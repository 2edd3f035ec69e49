"""``stratoflow import``: convert other schedulers' workflows (see stratoflow.importers).

Exit codes (DESIGN.md): 0 everything mapped, 1 something was left out (the report says what),
2 a file could not be read or is none of the formats (nothing is written for it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from stratoflow.errors import InvalidInput

MAX_FILES = 10_000


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--from", "source", type=click.Choice(["dolphinscheduler", "dag-factory"]), default=None,
    help="the source format (default: recognised from each file's content)",
)  # fmt: skip
@click.option(
    "-o", "--output-dir", "out", type=click.Path(file_okay=False, path_type=Path),
    default=Path("."), show_default=True, help="where the workflow files and reports go",
)  # fmt: skip
@click.option(
    "--unmapped", type=click.Choice(["placeholder", "report"]), default="placeholder",
    show_default=True,
    help="a task with no equivalent: a failing placeholder task, or left out (report only)",
)  # fmt: skip
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def import_command(
    files: Sequence[str], source: str | None, out: Path, unmapped: str, output: str
) -> None:
    """Convert DolphinScheduler exports, pydolphinscheduler YAML and dag-factory YAML into
    workflow files (one per workflow), with a report per file of what did not map."""
    from stratoflow.importers import distinct_names, import_codes, import_file, to_yaml

    if len(files) > MAX_FILES:
        click.echo(f"error: {len(files)} files; at most {MAX_FILES:,} at once", err=True)
        sys.exit(2)
    # sub-workflows and dependencies name other workflows by code, maybe in another file
    codes = import_codes(list(files), source)  # type: ignore[arg-type]
    results = []
    unreadable = incomplete = 0
    for file in files:
        try:
            result = import_file(file, source, unmapped, codes)  # type: ignore[arg-type]
        except InvalidInput as exc:
            unreadable += 1
            click.echo(f"error: {exc}", err=True)
            continue
        results.append(result)
    if not results:  # nothing to write: create nothing either
        sys.exit(2)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        click.echo(f"error: cannot create {out}: {exc.strerror}", err=True)
        sys.exit(2)
    reports: set[str] = set()
    stems: set[str] = set()
    summary = []
    for result in distinct_names(results):
        files_written = []
        for workflow in result.workflows:
            if workflow.document is None:
                continue
            stem = workflow.name
            if stem in stems:  # one name in two projects
                stem = f"{workflow.document.get('project', 'default')}.{stem}"
            stems.add(stem)
            target = out / f"{stem}.yaml"
            target.write_text(to_yaml(workflow, Path(result.path).name), encoding="utf-8")
            files_written.append(str(target))
        report = {**result.report(), "written": files_written}
        base, n = Path(result.path).name, 1
        while base in reports:  # two inputs of one name (from different folders)
            n += 1
            base = f"{Path(result.path).name}.{n}"
        reports.add(base)
        report_path = out / f"{base}.import-report.json"
        report_path.write_text(
            json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        summary.append(report)
        if not result.complete:
            incomplete += 1
        if output == "text":
            state = "ok" if result.complete else "partial"
            click.echo(
                f"{state}: {result.path} ({result.source_format}) -> {', '.join(files_written) or 'nothing'}"
            )
            for note in result.all_notes():
                if note.severity == "unmapped":
                    click.echo(f"  not mapped: {note.where()}: {note.message}")
                elif note.field in ("pool", "alerts"):  # apply refuses it until they exist
                    click.echo(f"  before apply: {note.workflow}: {note.message}")
            click.echo(f"  report: {report_path}")
    if output == "json":
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    sys.exit(2 if unreadable else 1 if incomplete else 0)
