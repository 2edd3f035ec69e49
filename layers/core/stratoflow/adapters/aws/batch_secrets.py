"""Secret references in a ``batch`` task's command and env, where no runner of ours runs.

ECS is the only thing in a Batch job that can read a secret before the user's image starts:
the job definition's ``secrets`` (``valueFrom``: a Secrets Manager name) become environment
variables of the container, read with the stack's Batch execution role. So:

- an env variable whose whole value is one reference is simply named there (ECS sets the
  variable itself); nothing else changes;
- a reference anywhere else in the env (``DSN: "postgres://u:{{ secrets.PW }}@h/db"``) or in
  the command makes the job definition also inject each referenced secret into a private
  variable, ``STRATOFLOW_SECRET__<NAME>`` (two underscores: not a name the local runtime's
  ``STRATOFLOW_SECRET_<NAME>`` can produce, since a secret's name starts with a letter), and
  the container's command becomes ``/bin/sh -c SCRIPT stratoflow-batch``. The script sets each
  such env variable and each argument from its literal parts, single-quoted, and
  ``"${STRATOFLOW_SECRET__<NAME>}"`` expansions; refuses a value too short to mask (as
  ``secrets.lookup``); unsets the private variables and ``exec``s the original argv.

What goes into the job (its definition, the overrides, the state machine input) is names and
literal text only: the value exists in the container's environment and nowhere before it.
The image needs ``/bin/sh``; Batch cannot override an image's ENTRYPOINT, so one that is
there receives ``/bin/sh -c SCRIPT ...`` as its arguments (README, "8. Secrets").

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stratoflow.adapters.aws.secrets import MAX_SECRET_REFERENCES, SHELL_NAME
from stratoflow.secrets import MIN_MASKED_CHARS, REFERENCE, TOO_SHORT, references

PRIVATE_PREFIX = "STRATOFLOW_SECRET__"
SHELL = "/bin/sh"
_CHECK = "stratoflow_check"  # the wrapper's one function
WRAPPER_NAME = "stratoflow-batch"  # the wrapper shell's $0 (what its own messages start with)


@dataclass(frozen=True)
class BatchLaunch:
    """How the container starts: ``command`` (the job's ``Command`` override), the env that
    goes as it is into the overrides, and ``secrets``, (variable, secret name) pairs sorted
    by variable, which the job definition has ECS set from Secrets Manager."""

    command: list[str]
    environment: dict[str, str]
    secrets: tuple[tuple[str, str], ...]


def private_variable(name: str) -> str:
    """The variable ECS puts secret ``name`` in for the wrapper (unset before the command)."""
    return PRIVATE_PREFIX + name


def command_argv(command: object) -> list[str]:
    """A batch task's ``command`` as the container's argv: a list as it is, a string run by
    ``sh -c`` (as the local runtime runs it)."""
    if isinstance(command, list):
        return [str(c) for c in command]
    return ["sh", "-c", str(command)]


def _whole(env: Mapping[str, str]) -> dict[str, str]:
    """Variable -> secret name, for each env value that is exactly one reference."""
    found = {}
    for variable, value in env.items():
        match = REFERENCE.fullmatch(value)
        if match is not None:
            found[variable] = match[1]
    return found


def _embedded(env: Mapping[str, str]) -> dict[str, str]:
    """The env values that hold a reference but are not exactly one: the wrapper sets them."""
    return {k: v for k, v in env.items() if not REFERENCE.fullmatch(v) and REFERENCE.search(v)}


def refusal(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """Why the wrapper cannot carry these references (None: it can, or none is needed)."""
    embedded = _embedded(env)
    names = references([list(argv), embedded])
    if not names:
        return None
    if len(names) > MAX_SECRET_REFERENCES:
        return (
            f"its command and env reference {len(names)} secrets besides whole env values; "
            f"at most {MAX_SECRET_REFERENCES}"
        )
    bad = sorted(k for k in embedded if not SHELL_NAME.fullmatch(k))
    if bad:
        return (
            f"env {bad[0]!r} holds a secret reference inside a longer value but is not a shell "
            "variable name (letters, digits and '_', not starting with a digit)"
        )
    private = sorted(k for k in env if k.startswith(PRIVATE_PREFIX))
    if private:
        return f"env {private[0]!r}: names starting {PRIVATE_PREFIX} are Stratoflow's own"
    if not argv:
        return (
            "an env value holds a secret reference inside a longer value, which needs a "
            "command (the image's own CMD cannot be run after setting it)"
        )
    return None


def launch(argv: Sequence[str], env: Mapping[str, str]) -> BatchLaunch:
    """The container's command, plain env and secrets for a task's ``argv`` and ``env``
    (rendered: references as ``{{ secrets.NAME }}``). ``ValueError`` naming the problem when
    :func:`refusal` has one (the dispatcher refuses such a task before this)."""
    whole = _whole(env)
    embedded = _embedded(env)
    plain = {k: v for k, v in env.items() if k not in whole and k not in embedded}
    names = references([list(argv), embedded])
    if not names:
        return BatchLaunch(list(argv), plain, tuple(sorted(whole.items())))
    why = refusal(argv, env)
    if why is not None:
        raise ValueError(why)
    secrets = sorted([*whole.items(), *((private_variable(n), n) for n in names)])
    return BatchLaunch(
        [SHELL, "-c", wrapper_script(argv, embedded, names), WRAPPER_NAME],
        plain,
        tuple(secrets),
    )


def _quote(text: str) -> str:
    """``text`` as one single-quoted shell word: nothing in it is special but ``'``."""
    return "'" + text.replace("'", "'\\''") + "'"


def _expansion(name: str) -> str:
    return f'"${{{private_variable(name)}}}"'


def shell_word(text: str) -> str:
    """``text`` as one shell word, each reference an expansion of its private variable and
    every other character single-quoted. Expanded inside double quotes, a value is never
    split, globbed or run, whatever it holds."""
    parts: list[str] = []
    pos = 0
    for match in REFERENCE.finditer(text):
        if match.start() > pos:
            parts.append(_quote(text[pos : match.start()]))
        parts.append(_expansion(match[1]))
        pos = match.end()
    if pos < len(text) or not parts:
        parts.append(_quote(text[pos:]))
    return "".join(parts)


def wrapper_script(argv: Sequence[str], env: Mapping[str, str], names: set[str]) -> str:
    """The POSIX sh script that starts the task: ``env`` (the variables to build) exported,
    ``argv`` as its positional parameters, each of ``names`` checked long enough to mask,
    its private variable unset, then ``exec "$@"``."""
    short = _quote(f"{WRAPPER_NAME}: secret %s: {TOO_SHORT.replace('%', '%%')}\\n")
    # each value set (${VAR?}: one ECS did not set stops the shell, saying which, rather
    # than run with "") and long enough to mask, as secrets.lookup wants it
    lines = [
        f'{_CHECK}() {{ [ "${{#2}}" -ge {MIN_MASKED_CHARS} ] || {{ printf {short} "$1" >&2; exit 1; }}; }}'
    ]
    lines.extend(
        f'{_CHECK} {name} "${{{private_variable(name)}?not set by ECS}}"' for name in sorted(names)
    )
    for variable, value in sorted(env.items()):
        lines.append(f"{variable}={shell_word(value)}")
        lines.append(f"export {variable}")
    lines.append("set -- " + " ".join(shell_word(a) for a in argv))
    lines.append("unset " + " ".join(private_variable(n) for n in sorted(names)))
    lines.append('exec "$@"')
    return "\n".join(lines) + "\n"
