"""Secrets by reference: ``{{ secrets.NAME }}`` in a task's fields, env and params.

A workflow names a secret, never holds it. Rendering (in the scheduler, at dispatch) keeps the
reference as the canonical text ``{{ secrets.NAME }}`` (:mod:`stratoflow.templating` makes sure
only the definition can produce one); the value is put in its place only where the task runs,
by :func:`resolve`, from a :class:`SecretSource`:

- locally, ``STRATOFLOW_SECRET_<NAME>`` in the server's environment, then the project's file
  in the home (``adapters.local.secrets``, 0600, set with ``stratoflow secrets set``);
- on AWS, Secrets Manager ``<TaskSecretsPrefix><project>/<name>`` (default prefix
  ``stratoflow/``), read by the runner as the project's role.

What a task reports back (outputs, its error) and the log views pass through a
:class:`Masker`, which writes ``***`` for any value of the project's secrets it finds.

Pure: no I/O here; sources are adapters. The same functions serve whatever else needs a
credential by reference (alert channels, SQL connections).
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from stratoflow.errors import InvalidInput, NotFound, Problem

NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_]{0,127}"
_NAME = re.compile(NAME_PATTERN)
MAX_VALUE_BYTES = 64 * 1024  # a secret's value, UTF-8 encoded (Secrets Manager allows 64 KiB)
MAX_SECRETS = 1_000  # secrets of one project
MASK = "***"
MIN_MASKED_CHARS = 4  # shorter values are not masked in text: "***" for every "a" helps no one
ENV_PREFIX = "STRATOFLOW_SECRET_"
DEFAULT_AWS_PREFIX = "stratoflow/"

# The one form a reference takes in rendered text, and the only one an executor resolves.
REFERENCE = re.compile(r"\{\{ secrets\.(" + NAME_PATTERN + r") \}\}")


def reference(name: str) -> str:
    """The canonical reference to ``name``, as rendering leaves it."""
    return "{{ secrets." + name + " }}"


class MissingSecret(NotFound):
    """A task references a secret its project does not have. The message names the secrets
    (never a value) and how to set them."""

    def __init__(self, project: str, names: Iterable[str]) -> None:
        self.project = project
        self.names = sorted(set(names))
        listed = ", ".join(repr(n) for n in self.names)
        first = self.names[0] if self.names else "NAME"
        super().__init__(
            f"secret {listed} is not set in project {project!r} (set it with "
            f"`stratoflow secrets set {first} --project {project}`, or "
            f"{ENV_PREFIX}{first} in the server's environment)"
            if len(self.names) == 1
            else f"secrets {listed} are not set in project {project!r} (set each with "
            f"`stratoflow secrets set NAME --project {project}`)"
        )


TOO_SHORT = (
    f"a secret's value has at least {MIN_MASKED_CHARS} characters: a shorter one could not be "
    "masked in logs without masking ordinary text"
)


class ShortSecret(MissingSecret):
    """A secret whose value is too short to mask (set outside Stratoflow: in the server's
    environment or straight in Secrets Manager). The task fails, naming it, rather than run
    with a value its logs would show."""

    def __init__(self, project: str, names: Iterable[str]) -> None:
        self.project = project
        self.names = sorted(set(names))
        listed = ", ".join(repr(n) for n in self.names)
        NotFound.__init__(self, f"secret {listed} of project {project!r}: {TOO_SHORT}")


class SecretUnavailable(RuntimeError):
    """A source could not be read (a permission, a file with the wrong mode, a throttle); the
    message names the secret and the reason, never a value."""


# ------------------------------------------------------------------ bounds
def check_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            [
                Problem(
                    field,
                    "a secret name is a letter followed by up to 127 letters, digits or "
                    "underscores (it is read as {{ secrets.NAME }})",
                )
            ]
        )
    return name


_PROJECT = re.compile(r"[a-z0-9_-]{1,128}")  # the model's project names


def check_project(project: str) -> str:
    """A project name (it names a file locally and a path in Secrets Manager)."""
    if not isinstance(project, str) or not _PROJECT.fullmatch(project):
        raise InvalidInput([Problem("project", "a project name is 1-128 of a-z, 0-9, '_' and '-'")])
    return project


def check_value(value: str, field: str = "value") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput([Problem(field, "a secret's value must be a non-empty string")])
    if len(value) < MIN_MASKED_CHARS:
        raise InvalidInput([Problem(field, TOO_SHORT)])
    if len(value.strip()) < MIN_MASKED_CHARS:
        # masked wherever it appears, a secret of spaces would turn every run of spaces in the
        # project's logs into ***
        raise InvalidInput(
            [Problem(field, f"is mostly whitespace: {TOO_SHORT}, not counting spaces and tabs")]
        )
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if size > MAX_VALUE_BYTES:
        raise InvalidInput(
            [Problem(field, f"{size:,} bytes; a secret's value is at most {MAX_VALUE_BYTES:,}")]
        )
    if "\0" in value:
        raise InvalidInput(
            [Problem(field, "contains a NUL character, which an environment variable cannot hold")]
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput([Problem(field, "is not valid UTF-8 text")]) from None
    return value


# ------------------------------------------------------------------ ports
class SecretSource(ABC):
    """Where an executor reads a project's secrets: ``get(project, name)`` -> value or None."""

    @abstractmethod
    def get(self, project: str, name: str) -> str | None:
        """The value, None when the project has no such secret; ``SecretUnavailable`` when the
        source cannot say."""

    def names(self, project: str) -> list[str]:
        """The names this source knows for ``project`` (what masking can look for); a source
        that cannot list answers none."""
        return []

    def known(self, project: str) -> dict[str, str]:
        """Every secret of ``project`` this source can list, with its value (what masking
        masks). A source that holds them together overrides this with one read."""
        found = {}
        for name in self.names(project):
            value = self.get(project, name)
            if value is not None:
                found[name] = value
        return found


class SecretStore(SecretSource):
    """A source that can also be written: what ``stratoflow secrets`` and the API manage."""

    @abstractmethod
    def put(self, project: str, name: str, value: str) -> bool:
        """Set the value; True when the secret is new."""

    @abstractmethod
    def delete(self, project: str, name: str) -> None:
        """Remove it; ``NotFound`` when there is none."""


class ChainedSource(SecretSource):
    """The first source that has the secret wins (the environment before the home's file)."""

    def __init__(self, sources: Iterable[SecretSource]) -> None:
        self.sources = list(sources)

    def get(self, project: str, name: str) -> str | None:
        for source in self.sources:
            value = source.get(project, name)
            if value is not None:
                return value
        return None

    def names(self, project: str) -> list[str]:
        return sorted({n for source in self.sources for n in source.names(project)})

    def known(self, project: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for source in reversed(self.sources):  # the first source's value wins
            found.update(source.known(project))
        return found


class EnvironmentSource(SecretSource):
    """``STRATOFLOW_SECRET_<NAME>`` (as written, else upper-cased) for every project."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._found = {
            key[len(ENV_PREFIX) :]: value
            for key, value in environ.items()
            if key.startswith(ENV_PREFIX) and value
        }

    def get(self, project: str, name: str) -> str | None:
        return self._found.get(name, self._found.get(name.upper()))

    def names(self, project: str) -> list[str]:
        return sorted(self._found)

    def known(self, project: str) -> dict[str, str]:
        return dict(self._found)


# ------------------------------------------------------------------ references
def references(value: Any) -> set[str]:
    """Names referenced (canonically) anywhere in a JSON-like value."""
    found: set[str] = set()
    _collect(value, found)
    return found


def _collect(value: Any, found: set[str]) -> None:
    # called for every task an executor starts: a plain walk, no generators
    if isinstance(value, str):
        if "{{" in value:
            found.update(REFERENCE.findall(value))
    elif isinstance(value, Mapping):
        for item in value.values():
            if isinstance(item, str):
                if "{{" in item:
                    found.update(REFERENCE.findall(item))
            elif item is not None and not isinstance(item, (int, float)):
                _collect(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, found)


def lookup(source: SecretSource, project: str, names: Iterable[str]) -> dict[str, str]:
    """The values of ``names``; ``MissingSecret`` naming every one not set."""
    values: dict[str, str] = {}
    missing: list[str] = []
    for name in sorted(set(names)):
        value = source.get(project, name)
        if value is None:
            missing.append(name)
        else:
            values[name] = value
    if missing:
        raise MissingSecret(project, missing)
    short = [name for name, value in values.items() if len(value) < MIN_MASKED_CHARS]
    if short:  # set around Stratoflow (env, Secrets Manager): refused rather than shown
        raise ShortSecret(project, short)
    return values


def substitute(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` with every canonical reference replaced by its secret (all must be in
    ``values``: see :func:`lookup`)."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        return REFERENCE.sub(lambda m: values[m.group(1)], value)
    if isinstance(value, Mapping):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, values) for v in value)
    return value


def resolve(value: Any, project: str, source: SecretSource) -> tuple[Any, dict[str, str]]:
    """``value`` with its references resolved, and the values used (for masking)."""
    names = references(value)
    if not names:
        return value, {}
    values = lookup(source, project, names)
    return substitute(value, values), values


# ------------------------------------------------------------------ masking
class Masker:
    """Writes ``***`` for each secret value found in text (values shorter than
    ``MIN_MASKED_CHARS`` are never used: :func:`lookup` refuses them). :func:`masker_for`
    keeps the last one made per project and reuses it while the values are the same."""

    def __init__(self, values: Iterable[str]) -> None:
        kept = sorted({v for v in values if len(v) >= MIN_MASKED_CHARS}, key=len, reverse=True)
        self.values = kept
        self._text = re.compile("|".join(map(re.escape, kept))) if kept else None
        encoded = [v.encode("utf-8") for v in kept]
        self._bytes = re.compile(b"|".join(map(re.escape, encoded))) if encoded else None
        self.longest = max((len(v) for v in encoded), default=0)

    def __bool__(self) -> bool:
        return self._text is not None

    def text(self, text: str) -> str:
        return text if self._text is None else self._text.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """Every string in a JSON-like value masked (keys too)."""
        if self._text is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def data(self, data: bytes) -> bytes:
        return data if self._bytes is None else self._bytes.sub(MASK.encode(), data)

    def window(self, data: bytes, limit: int) -> tuple[bytes, int]:
        """Mask the first ``limit`` bytes of ``data``, a window of a text that may go on past
        it (a log being written): the masked bytes and how many bytes of ``data`` they stand
        for. A value that starts before ``limit`` is masked whole when the window holds it
        (read ``longest - 1`` bytes past ``limit``); a chunk does not end on what may be the
        start of a value still being written, unless that would return nothing."""
        if self._bytes is None:
            return data[:limit], min(limit, len(data))
        out: list[bytes] = []
        pos = 0
        for match in self._bytes.finditer(data):
            if match.start() >= limit:
                break
            out.append(data[pos : match.start()])
            out.append(MASK.encode())
            pos = match.end()
        end = max(pos, min(limit, len(data)))
        if len(data) - end < self.longest - 1:  # too little seen after it to be sure
            cut = _safe_end(data, pos, end, self.values)
            if cut > 0:
                end = cut
        out.append(data[pos:end])
        return b"".join(out), end


def _safe_end(data: bytes, pos: int, end: int, values: list[str]) -> int:
    """The furthest point <= ``end`` not inside a possible start of a value (a suffix of
    ``data[pos:end]`` that is a proper prefix of some value)."""
    tail = data[pos:end]
    cut = end
    for value in values:
        raw = value.encode("utf-8")
        for k in range(min(len(raw) - 1, len(tail)), 0, -1):
            if tail.endswith(raw[:k]):
                cut = min(cut, end - k)
                break
    return cut


def mask_outputs(masker: Masker, outputs: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A task's outputs with its secrets' values written ``***``, and, when that changed any
    of them, a line for the attempt's log saying which and what follows: outputs are data
    that downstream tasks read, so a value masked there reaches them as ``***``. Masking is
    by substring, so a secret whose value is an ordinary word (``postgres``) masks that word
    inside unrelated values (``postgresql://...``): the note says so rather than let a
    downstream task fail on data it cannot explain."""
    masked: dict[str, Any] = {}
    changed: list[str] = []  # as shown: a key holding a secret is shown masked too
    for key, value in outputs.items():
        shown, kept = masker.value(key), masker.value(value)
        masked[shown] = kept
        if shown != key or kept != value:
            changed.append(str(shown))
    if not changed:
        return masked, None
    keys = ", ".join(repr(k) for k in changed[:10]) + (" ..." if len(changed) > 10 else "")
    note = (
        f"[stratoflow] outputs {keys} held the value of a secret and are stored with it "
        f"written {MASK}: downstream tasks read them so. Outputs never hold secrets: pass a "
        "secret to the task that needs it by reference ({{ secrets.NAME }}). Masking is by "
        "substring: a secret whose value is an ordinary word masks that word in any output.\n"
    )
    return masked, note


def masker_for(source: SecretSource | None, project: str) -> Masker:
    """A masker of every secret ``source`` knows for ``project``; a source that cannot be
    read masks nothing (the log view still answers)."""
    if source is None:
        return _NO_MASK
    try:
        values = frozenset(source.known(project).values())
    except SecretUnavailable:
        return _NO_MASK
    if not values:
        return _NO_MASK
    cached = _MASKERS.get(project)
    if cached is not None and cached[0] == values:
        return cached[1]
    masker = Masker(values)
    with _MASKERS_LOCK:  # the executor's threads and the API's serve many projects at once
        if len(_MASKERS) >= 256:  # bounded: the oldest project goes
            _MASKERS.pop(next(iter(_MASKERS)))
        _MASKERS[project] = (values, masker)
    return masker


_NO_MASK = Masker(())
_MASKERS_LOCK = threading.Lock()
_MASKERS: dict[str, tuple[frozenset[str], Masker]] = {}  # project -> its values, its masker
