"""The CLI with Python modules (stratoflow.sdk) and the JSON Schema: validate, apply, run and
server --apply take a module; a broken one exits 2 naming its file and line; YAML errors
still name their line; `stratoflow schema` prints the published schema."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stratoflow.cli import _workflow_files, main
from stratoflow.cli_sdk import workflow_sources
from stratoflow.errors import InvalidInput
from stratoflow.model import load_workflow_file
from tests.e2e import test_cli
from tests.e2e.server_process import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PAIR = """
from stratoflow.sdk import Workflow, shell, task

@task
def shout(params, outputs):
    outputs["loud"] = params["said"].upper()

with Workflow("sdk_pair", params={"word": "hello"}) as pair:
    say = shell("say", 'echo "said={{ params.word }}" >> "$STRATOFLOW_OUTPUT"')
    shout(said=say.outputs.said)
"""
PAIR_YAML = """
name: sdk_pair
params: {word: hello}
tasks:
  say: {type: shell, command: 'echo "said={{ params.word }}" >> "$STRATOFLOW_OUTPUT"'}
  shout:
    type: python
    depends_on: [say]
    params: {said: "{{ tasks.say.outputs.said }}"}
    code: |
      outputs["loud"] = params["said"].upper()
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


cli = test_cli.cli  # the fixtures of the CLI's own tests: a runner, and a live local server
server = test_cli.server


def test_validate_accepts_both_forms_of_every_example(cli: CliRunner) -> None:
    files = sorted(EXAMPLES.glob("*.yaml")) + sorted((EXAMPLES / "python").glob("[!_]*.py"))
    result = cli.invoke(main, ["validate", *map(str, files)])
    assert result.exit_code == 0, result.output
    assert len(files) == 2 * len(list(EXAMPLES.glob("*.yaml")))  # every example has its twin
    assert result.output.count("ok: ") == len(files)
    assert "ok: " + str(EXAMPLES / "python" / "etl_chain.py") + " (default/etl_chain, 3 tasks)" in (
        result.output
    )


def test_validate_names_the_python_line_of_a_bad_task_and_exits_2(
    cli: CliRunner, tmp_path: Path
) -> None:
    bad = write(
        tmp_path,
        "sdk_cli_bad.py",
        """\
        from stratoflow.sdk import Workflow, shell

        with Workflow("bad") as wf:
            shell("a", "echo", retries=-1)
        """,
    )
    result = cli.invoke(main, ["validate", bad])
    assert result.exit_code == 2
    assert f"error: {bad}: tasks.a.retries (line 4): " in result.output


def test_an_exception_in_the_module_exits_2_with_its_line(cli: CliRunner, tmp_path: Path) -> None:
    bad = write(tmp_path, "sdk_cli_raises.py", "import os\n\nos.environ['NOPE_NOT_SET']\n")
    result = cli.invoke(main, ["validate", bad])
    assert result.exit_code == 2
    assert f"error: {bad}: module (line 3): KeyError: 'NOPE_NOT_SET'" in result.output


def test_yaml_errors_still_name_the_line(cli: CliRunner, tmp_path: Path) -> None:
    bad = write(tmp_path, "w.yaml", "name: w\ntasks:\n  a: {type: shell}\n")
    result = cli.invoke(main, ["validate", bad])
    assert result.exit_code == 2
    assert f"{bad}: tasks.a.command (line 3): required field 'command' is missing" in result.output


def test_schema_prints_the_published_file(cli: CliRunner, tmp_path: Path) -> None:
    published = (ROOT / "layers/core/stratoflow/schema/workflow.json").read_text()
    result = cli.invoke(main, ["schema"])
    assert result.exit_code == 0
    assert result.output == published
    out = tmp_path / "schema.json"
    assert cli.invoke(main, ["schema", "-o", str(out)]).exit_code == 0
    assert out.read_text() == published


def test_schema_to_a_file_it_cannot_write_exits_2_naming_it(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "s.json"
    result = cli.invoke(main, ["schema", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output == f"error: -o: cannot write {out}: No such file or directory\n"
    assert not (tmp_path / "no").exists()


def test_a_directory_gives_its_yaml_and_its_modules_with_workflows(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", PAIR_YAML.replace("sdk_pair", "from_yaml"))
    write(tmp_path, "sdk_dir_pair.py", PAIR)
    write(tmp_path, "sdk_dir_helpers.py", "REGION = 'eu'\n")  # no workflow: skipped
    write(tmp_path, "_private.py", "raise SystemExit('never imported')\n")
    files = _workflow_files([str(tmp_path)])
    assert [p.name for p in files] == ["a.yaml", "sdk_dir_helpers.py", "sdk_dir_pair.py"]
    sources = workflow_sources(files, [str(tmp_path)])
    assert [where for where, _ in sources] == [
        str(tmp_path / "a.yaml"),
        f"{tmp_path / 'sdk_dir_pair.py'}:sdk_pair",
    ]
    rendered = sources[1][1]
    assert rendered.startswith("# Rendered by stratoflow.sdk from ")
    assert yaml.safe_load(rendered) == yaml.safe_load(PAIR_YAML)


def test_a_named_module_without_workflows_exits_2(cli: CliRunner, tmp_path: Path) -> None:
    helpers = write(tmp_path, "sdk_named_helpers.py", "X = 1\n")
    result = cli.invoke(main, ["apply", helpers, "--api", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "it defines no workflow" in result.output


def test_apply_a_module_then_its_yaml_twin_is_unchanged(
    cli: CliRunner, tmp_path: Path, server: str
) -> None:
    module = write(tmp_path, "sdk_apply_pair.py", PAIR)
    twin = write(tmp_path, "pair.yaml", PAIR_YAML)
    api = ["--api", server]
    first = cli.invoke(main, ["apply", module, *api])
    assert first.exit_code == 0, first.output
    assert first.output.strip() == "applied: default/sdk_pair v1"
    second = cli.invoke(main, ["apply", twin, *api])
    assert second.output.strip() == "unchanged: default/sdk_pair v1"
    trigger = cli.invoke(main, ["trigger", "sdk_pair", "--wait", "--output", "json", *api])
    assert trigger.exit_code == 0, trigger.output
    assert '"loud": "HELLO"' in trigger.output


def test_run_a_module_in_process(cli: CliRunner, tmp_path: Path) -> None:
    module = write(tmp_path, "sdk_run_pair.py", PAIR)
    home = tmp_path / "home"
    result = cli.invoke(main, ["run", module, "--home", str(home), "--output", "json"])
    assert result.exit_code == 0, result.output
    assert '"loud": "HELLO"' in result.output


def test_run_refuses_a_module_with_two_workflows(cli: CliRunner, tmp_path: Path) -> None:
    two = PAIR + "\nother = Workflow('other', tasks=[shell('t', 'echo')])\n"
    module = write(tmp_path, "sdk_run_two.py", two)
    result = cli.invoke(main, ["run", module, "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert "defines 2 workflows (sdk_pair, other)" in result.output


def test_a_module_named_with_a_dot_slash_is_still_required(tmp_path: Path) -> None:
    helpers = Path(write(tmp_path, "sdk_dot_helpers.py", "X = 1\n"))
    dotted = f"{helpers.parent}/./{helpers.name}"
    with pytest.raises(InvalidInput, match="it defines no workflow"):
        workflow_sources(_workflow_files([dotted]), [dotted])


def test_server_apply_takes_the_examples_and_their_python_twins(tmp_path: Path) -> None:
    """`make run` is `server --apply examples/`: examples/__init__.py is not a workflow, and
    examples/python/ applies the same workflows again: all unchanged (same digests)."""
    port = free_port()
    log = tmp_path / "server.log"
    command = [
        sys.executable, "-m", "stratoflow", "server", "--home", str(tmp_path / "home"),
        "--port", str(port), "--pool", "warehouse=2",
        # the groups examples/alerting.yaml names (apply refuses an unknown one), as `make run`
        "--alert-group", "data-oncall", "--alert-group", "data-team",
        "--apply", str(EXAMPLES), "--apply", str(EXAMPLES / "python"),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while "Stratoflow is running" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lines = [line for line in log.read_text().splitlines() if ": default/" in line]
    names = [load_workflow_file(p).workflow.name for p in sorted(EXAMPLES.glob("*.yaml"))]
    assert len(names) >= 6, names
    assert lines == [f"applied: default/{n} v1" for n in names] + [
        f"unchanged: default/{n} v1" for n in names
    ], log.read_text()
