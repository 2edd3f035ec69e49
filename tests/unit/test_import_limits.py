"""What `stratoflow import` writes is what `validate` and `apply` take: a workflow whose file
would be over the 2 MiB a workflow file may hold is not written (the report says so, naming
it), decided before the work of validating it; and pydolphinscheduler's ``$FILE{}`` includes
are bounded before any is read."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stratoflow.cli import main
from stratoflow.errors import InvalidInput
from stratoflow.importers import import_file
from stratoflow.model import MAX_DOCUMENT_BYTES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"


def _airflow2_dag(tmp_path: Path, dates: int) -> Path:
    """An Airflow 2 DAG whose command reads ds ``dates`` times: each ``{{ ds }}`` (8
    characters) becomes a shift_date expression of about 60."""
    path = tmp_path / "dags.yml"
    path.write_text(yaml.safe_dump({"wide_dag": {"schedule_interval": "@daily", "tasks": {
        "t": {"operator": "airflow.operators.bash.BashOperator",
              "bash_command": "echo " + "{{ ds }} " * dates},
    }}}))  # fmt: skip
    return path


def _refused(result_notes: list[str], name: str) -> None:
    (said,) = [m for m in result_notes if "bytes" in m]
    assert name in said
    assert f"{MAX_DOCUMENT_BYTES:,}" in said


def test_a_dag_whose_workflow_file_would_be_over_the_limit_is_not_written(
    tmp_path: Path,
) -> None:
    path = _airflow2_dag(tmp_path, 40_000)
    assert path.stat().st_size < MAX_DOCUMENT_BYTES  # the source fits
    started = time.monotonic()
    result = import_file(path, "dag-factory")
    elapsed = time.monotonic() - started
    (workflow,) = result.workflows
    assert workflow.document is None
    _refused([n.message for n in workflow.notes if n.severity == "unmapped"], "wide_dag")
    assert not result.complete
    assert elapsed < 15  # refused before the work of validating 2.5 MB of templates (20 s)


def test_a_ds_export_whose_workflow_would_be_over_the_limit_is_refused_quickly(
    tmp_path: Path,
) -> None:
    export = json.loads((FIXTURES / "ds_3.3_export.json").read_text())
    task = export[0]["taskDefinitionList"][0]
    task["taskParams"]["rawScript"] = "echo " + " ".join(["$[yyyyMMdd-1]"] * 60_000) + "\n"
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    started = time.monotonic()
    result = import_file(path)
    elapsed = time.monotonic() - started
    (workflow,) = result.workflows
    assert workflow.document is None
    _refused([n.message for n in workflow.notes if n.severity == "unmapped"], "sales_daily")
    assert elapsed < 15  # 27 s before: the 4 MB document was validated, then written


def test_the_cli_writes_no_file_over_the_limit_and_says_which(tmp_path: Path) -> None:
    path = _airflow2_dag(tmp_path, 40_000)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["import", str(path), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "partial" in result.output
    assert "wide_dag" in result.output
    assert f"{MAX_DOCUMENT_BYTES:,}" in result.output
    assert not (out / "wide_dag.yaml").exists()


@pytest.mark.parametrize(("includes", "size"), [(50, 1 << 20), (1_001, 10)])
def test_pydolphinscheduler_file_includes_are_bounded_in_all(
    tmp_path: Path, includes: int, size: int
) -> None:
    (tmp_path / "big.sh").write_bytes(b"#" * size)
    command = "\n".join(['$FILE{"big.sh"}'] * includes)
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({
        "workflow": {"name": "includes"},
        "tasks": [{"name": "t", "task_type": "Shell", "command": command}],
    }))  # fmt: skip
    started = time.monotonic()
    with pytest.raises(InvalidInput) as caught:
        import_file(path)
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert "flow.yaml" in message
    assert "$FILE" in message


def _pydolphin_flow(tmp_path: Path, command: str) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({
        "workflow": {"name": "includes"},
        "tasks": [{"name": "t", "task_type": "Shell", "command": command}],
    }))  # fmt: skip
    return path


def test_pydolphinscheduler_includes_are_counted_again_as_they_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files that grow between the check and the read: the read keeps its own total."""
    import stratoflow.importers as importers

    monkeypatch.setattr(importers, "_read_cost", lambda *_: 0)  # small when checked
    (tmp_path / "big.sh").write_bytes(b"#" * (1 << 20))
    path = _pydolphin_flow(tmp_path, "\n".join(['$FILE{"big.sh"}'] * 3))
    with pytest.raises(InvalidInput) as caught:
        import_file(path)
    assert "$FILE" in str(caught.value)
    assert f"{MAX_DOCUMENT_BYTES:,}" in str(caught.value)


def test_pydolphinscheduler_include_count_is_bounded_as_they_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stratoflow.importers as importers

    monkeypatch.setattr(importers, "_includes_bounded", lambda *_: None)
    (tmp_path / "small.sh").write_bytes(b"#")
    path = _pydolphin_flow(tmp_path, "\n".join(['$FILE{"small.sh"}'] * 1_001))
    with pytest.raises(InvalidInput) as caught:
        import_file(path)
    assert "1,000" in str(caught.value)


def test_pydolphinscheduler_include_that_became_a_fifo_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regular file when checked, a FIFO when read: refused, not waited on."""
    import os
    import threading

    import stratoflow.importers as importers

    monkeypatch.setattr(importers, "_read_cost", lambda *_: 0)
    fifo = tmp_path / "script.sh"
    os.mkfifo(fifo)
    path = _pydolphin_flow(tmp_path, '$FILE{"script.sh"}')
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            import_file(path)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
        pytest.fail("the import waited on a FIFO")
    assert isinstance(outcome[0], InvalidInput)
    assert "not a regular file" in str(outcome[0])


def test_pydolphinscheduler_workflow_include_is_read_once_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stratoflow.importers._pydolphin as pydolphin

    (tmp_path / "other.yaml").write_text(yaml.safe_dump({
        "workflow": {"name": "the-other"}, "tasks": [],
    }))  # fmt: skip
    calls: list[str] = []
    real = pydolphin.load_yaml

    def counted(text: str) -> object:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(pydolphin, "load_yaml", counted)
    refs = ['$WORKFLOW{"other.yaml"}', '$WORKFLOW{"./other.yaml"}'] * 5
    path = _pydolphin_flow(tmp_path, "echo " + " ".join(refs))
    result = import_file(path)
    document = result.workflows[0].document
    assert document is not None
    assert "the-other " * 9 + "the-other" in json.dumps(document)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("written", "made"),
    [
        ("../secret.txt", "beside"),  # a relative path up out of the folder
        ("{outside}/secret.txt", "beside"),  # an absolute path elsewhere
        ("link.txt", "file_link"),  # a file under the folder that is a symlink out of it
        ("dir/secret.txt", "dir_link"),  # a folder under it that is a symlink out of it
    ],
)
def test_pydolphinscheduler_file_include_outside_the_yaml_folder_is_refused(
    tmp_path: Path, written: str, made: str
) -> None:
    """pydolphinscheduler's ``$FILE{path}`` read any file the importing user could read
    (``../../.aws/credentials``, an absolute path, a symlink in the repository) into the
    workflow written out: an include must be a file under the YAML file's folder, reached
    without leaving that folder through a symlink. Refused, naming the path and the rule,
    and nothing of it is read."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP-SECRET-VALUE")
    (tmp_path / "secret.txt").write_text("TOP-SECRET-VALUE")
    folder = tmp_path / "flows"
    folder.mkdir()
    if made == "file_link":
        (folder / "link.txt").symlink_to(outside / "secret.txt")
    elif made == "dir_link":
        (folder / "dir").symlink_to(outside)
    name = written.format(outside=outside)
    path = _pydolphin_flow(folder, f'cat <<EOF\n$FILE{{"{name}"}}\nEOF')
    with pytest.raises(InvalidInput) as caught:
        import_file(path)
    message = str(caught.value)
    assert name in message
    assert "under the folder" in message
    assert "TOP-SECRET-VALUE" not in message


def test_pydolphinscheduler_file_include_inside_the_yaml_folder_is_read(tmp_path: Path) -> None:
    """What the rule keeps: a file in a subfolder, a ``..`` that stays inside, and a symlink
    whose target is inside the folder."""
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "q.sql").write_text("select 1")
    (tmp_path / "q-link.sql").symlink_to(tmp_path / "sql" / "q.sql")
    refs = ['$FILE{"sql/q.sql"}', '$FILE{"sql/../sql/q.sql"}', '$FILE{"q-link.sql"}']
    result = import_file(_pydolphin_flow(tmp_path, " ".join(refs)))
    assert "select 1 select 1 select 1" in json.dumps(result.workflows[0].document)


def test_pydolphinscheduler_file_include_outside_is_refused_as_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read keeps the rule itself (the folder may change between the check and it)."""
    import stratoflow.importers as importers

    monkeypatch.setattr(importers, "_includes_bounded", lambda *_: None)
    (tmp_path / "secret.txt").write_text("TOP-SECRET-VALUE")
    (tmp_path / "flows").mkdir()
    path = _pydolphin_flow(tmp_path / "flows", '$FILE{"../secret.txt"}')
    with pytest.raises(InvalidInput) as caught:
        import_file(path)
    assert "'../secret.txt'" in str(caught.value)
    assert "under the folder" in str(caught.value)
