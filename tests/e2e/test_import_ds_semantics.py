"""DolphinScheduler's run-time rules, kept by an import: each workflow here is imported with
`stratoflow import`, run with `stratoflow run` on the local runtime, and ends in the states and
outputs DolphinScheduler gives it (its rule named in each test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.cli import main
from stratoflow.connections import validate_connection
from tests.readmodel.conftest import pg_url  # noqa: F401  # a scratch PostgreSQL database

pytestmark = pytest.mark.e2e


def _write(tmp_path: Path, name: str, content: Any) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def import_and_run(
    tmp_path: Path,
    source: Path,
    *params: str,
    unmapped: str = "placeholder",
    connections: dict[str, str] | None = None,
) -> dict[str, Any]:
    """`stratoflow import SOURCE`, then `stratoflow run` of the one workflow it wrote: the
    run's JSON (``run``, ``tasks``). ``connections``: name -> PostgreSQL URL, added first."""
    out = tmp_path / "out"
    imported = CliRunner().invoke(
        main, ["import", str(source), "-o", str(out), "--unmapped", unmapped]
    )
    assert imported.exit_code in (0, 1), imported.output
    (written,) = out.glob("*.yaml")
    home = tmp_path / "home"
    if connections:
        project = _project_of(written)
        runtime = LocalRuntime(home, project=False)
        try:
            for name, url in connections.items():
                connection = validate_connection(project, name, "postgresql", {"url": url})
                runtime.connections.put(connection, runtime.clock.now())
        finally:
            runtime.close()
    ran = CliRunner().invoke(
        main,
        ["run", str(written), "--home", str(home), "--output", "json"]
        + [f"--param={p}" for p in params],
    )
    assert ran.exit_code in (0, 1), ran.output
    return json.loads(ran.output)  # type: ignore[no-any-return]


def _project_of(path: Path) -> str:
    from stratoflow.model import load_workflow_file

    return load_workflow_file(path).workflow.project


def task_states(result: dict[str, Any]) -> dict[str, str]:
    return {t: body["state"] for t, body in result["tasks"].items()}


def outputs(result: dict[str, Any], task: str) -> dict[str, Any]:
    return dict(result["tasks"][task]["outputs"])


# ----------------------------------------------------------------------------- SQL
def test_a_pydolphinscheduler_query_after_a_comment_gives_its_first_row(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    """pydolphinscheduler submits ``/* nightly */ select ...`` as a query (Sql.sql_type), so
    DolphinScheduler hands its first row on; the import read it as a statement: no outputs."""
    source = _write(
        tmp_path,
        "wf.yaml",
        """
workflow: {name: commented_query}
tasks:
  - {name: count, task_type: Sql, datasource_name: wh, sql: "/* nightly */ select 7 AS n"}
""",
    )
    result = import_and_run(tmp_path, source, connections={"wh": pg_url})
    assert result["run"]["state"] == "succeeded"
    assert outputs(result, "count")["n"] == "7"
