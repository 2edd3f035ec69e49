"""The batch wrapper (``batch_secrets``), run for real: the script the dispatcher puts in a
batch job's command is executed by the shells here (dash as /bin/sh, bash in POSIX mode) with
the environment ECS would give the container, and the program it ``exec``s reports the argv
and environment it got. Hostile literal text stays text, hostile values stay values, and the
private variables never reach the command."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from stratoflow.adapters.aws import batch_secrets
from stratoflow.adapters.aws.batch_secrets import (
    PRIVATE_PREFIX,
    BatchLaunch,
    command_argv,
    launch,
    private_variable,
    refusal,
)
from stratoflow.secrets import TOO_SHORT, substitute

SHELLS = [["/bin/sh"]] + ([["bash", "--posix"]] if shutil.which("bash") else [])
# the program the wrapper execs: prints its argv (after its own) and environment as JSON
REPORT = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}))"

HOSTILE_TEXT = [
    "it's",
    'say "hi"',
    "$(touch pwned)",
    "`touch pwned`",
    "two\nlines",
    "  spaced  out  ",
    "",
    "*",
    "~",
    "$HOME and ${HOME}",
    "back\\slash\\",
    "-n",
    "%s%d",
    "${STRATOFLOW_SECRET__pw}",  # the private variable's name, written as text: stays text
    "{{ secrets.nope}}",  # not the canonical form: text
    "'\"'\"'",
    "\t\r",
    "ünï€ødé",
]
HOSTILE_VALUES = {
    "pw": "$(touch pwned) `touch pwned` ${HOME} '\"\\",
    "token": "  leading, trailing and\nnewlines\n",
    "Mixed_Case9": "*?[a-z] ~ -e %s ; exit 3 ; & | > /tmp/x",
}


def run_container(
    started: BatchLaunch,
    values: Mapping[str, str],
    shell: Sequence[str] = ("/bin/sh",),
    cwd: Path | None = None,
    extra_path: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """What the container does: ECS sets the overrides' env and each of the job definition's
    secrets (variable -> the secret's value), then runs the command."""
    env = dict(started.environment)
    env.update({variable: values[name] for variable, name in started.secrets})
    env["PATH"] = (
        f"{extra_path}:{os.environ['PATH']}" if extra_path is not None else os.environ["PATH"]
    )
    argv = list(started.command)
    if argv[0] == batch_secrets.SHELL:
        argv[:1] = shell
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, cwd=cwd, timeout=30, check=False
    )


def reported(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_argv_and_env_are_exactly_the_intended_ones(shell: list[str], tmp_path: Path) -> None:
    argv = [sys.executable, "-c", REPORT, *HOSTILE_TEXT]
    # each hostile text around each reference, in the argv and in env values
    argv += [f"{t}{{{{ secrets.pw }}}}{t}" for t in HOSTILE_TEXT]
    argv += ["{{ secrets.token }}", "{{ secrets.pw }}{{ secrets.Mixed_Case9 }}{{ secrets.pw }}"]
    env = {
        "DSN": "postgres://u:{{ secrets.pw }}@h/db?x='$(touch pwned)'",
        "MULTI": "a {{ secrets.token }} b {{ secrets.Mixed_Case9 }} c\n`touch pwned`",
        "WHOLE": "{{ secrets.token }}",  # ECS sets it itself
        "PLAIN": "plain $(touch pwned) {{ not a reference }}",
    }
    started = launch(argv, env)

    assert started.command[:2] == ["/bin/sh", "-c"]
    assert started.command[3:] == ["stratoflow-batch"]
    assert started.environment == {"PLAIN": env["PLAIN"]}
    assert started.secrets == (
        ("STRATOFLOW_SECRET__Mixed_Case9", "Mixed_Case9"),
        ("STRATOFLOW_SECRET__pw", "pw"),
        ("STRATOFLOW_SECRET__token", "token"),
        ("WHOLE", "token"),
    )
    script = started.command[2]
    for value in HOSTILE_VALUES.values():
        assert value not in script

    got = reported(run_container(started, HOSTILE_VALUES, shell, cwd=tmp_path))
    assert got["argv"] == substitute(argv[3:], HOSTILE_VALUES)
    for name in ("DSN", "MULTI", "WHOLE", "PLAIN"):
        assert got["env"][name] == substitute(env[name], HOSTILE_VALUES), name
    assert not [k for k in got["env"] if k.startswith(PRIVATE_PREFIX)]
    assert list(tmp_path.iterdir()) == []  # nothing ran: no file "pwned"


def test_a_string_command_gets_the_value_in_its_shell_text_as_everywhere(
    tmp_path: Path,
) -> None:
    """``command: "..."`` runs as ``sh -c TEXT`` (as the local runtime and the runner run a
    shell task): the reference is replaced in TEXT. Checked with a ``sh`` on PATH that
    reports its argv instead of running it."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sh").write_text(f"#!{sys.executable}\n{REPORT}\n")
    (fake / "sh").chmod(stat.S_IRWXU)
    command = "psql \"password={{ secrets.pw }}\" -c 'select 1' # $(x)"
    started = launch(command_argv(command), {})
    got = reported(run_container(started, HOSTILE_VALUES, extra_path=fake, cwd=tmp_path))
    assert got["argv"] == ["-c", command.replace("{{ secrets.pw }}", HOSTILE_VALUES["pw"])]
    assert not [k for k in got["env"] if k.startswith(PRIVATE_PREFIX)]


def test_the_simple_cases_need_no_wrapper() -> None:
    argv = ["etl", "--day", "2026-01-01"]
    env = {"PW": "{{ secrets.pw }}", "MODE": "full"}
    assert launch(argv, env) == BatchLaunch(argv, {"MODE": "full"}, (("PW", "pw"),))
    assert launch(argv, {}) == BatchLaunch(argv, {}, ())
    assert command_argv("echo hi") == ["sh", "-c", "echo hi"]
    assert command_argv(["a", "b c"]) == ["a", "b c"]


def test_a_value_too_short_to_mask_or_not_set_stops_before_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    started = launch(["touch", str(marker), "{{ secrets.pw }}"], {"X": "a{{ secrets.tok }}"})
    done = run_container(started, {"pw": "abc", "tok": "long enough"})
    assert done.returncode == 1
    assert "secret pw: " + TOO_SHORT in done.stderr
    assert "abc" not in done.stderr + done.stdout
    assert not marker.exists()

    env = {private_variable("tok"): "long enough"}  # the job definition lost pw
    done = subprocess.run(
        started.command, env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode != 0
    assert "STRATOFLOW_SECRET__pw: not set by ECS" in done.stderr
    assert not marker.exists()


def test_a_missing_program_fails_as_the_shell_says() -> None:
    started = launch(["no-such-program-here", "{{ secrets.pw }}"], {})
    done = run_container(started, HOSTILE_VALUES)
    assert done.returncode == 127
    assert "no-such-program-here" in done.stderr
    assert HOSTILE_VALUES["pw"] not in done.stderr


@pytest.mark.parametrize(
    ("argv", "env", "why"),
    [
        (["x"], {"my-var": "a{{ secrets.pw }}"}, "'my-var' holds a secret reference inside"),
        (["x"], {"1X": "a{{ secrets.pw }}"}, "is not a shell variable name"),
        (["{{ secrets.pw }}"], {PRIVATE_PREFIX + "pw": "x"}, "are Stratoflow's own"),
        ([], {"X": "a{{ secrets.pw }}"}, "needs a command"),
        ([" ".join(f"{{{{ secrets.s{i} }}}}" for i in range(17))], {}, "17 secrets"),
    ],
)
def test_what_the_wrapper_cannot_carry_is_refused(
    argv: list[str], env: dict[str, str], why: str
) -> None:
    found = refusal(argv, env)
    assert found is not None
    assert why in found
    with pytest.raises(ValueError, match=re.escape(found)):
        launch(argv, env)


def test_no_refusal_without_a_wrapper() -> None:
    # a whole value needs none, whatever the variable's name
    assert refusal([], {"my-var": "{{ secrets.pw }}", PRIVATE_PREFIX + "x": "y"}) is None
    assert refusal(["{{ secrets.pw }}"], {"DSN": "a{{ secrets.pw }}"}) is None
