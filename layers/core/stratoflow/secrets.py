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
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from stratoflow.errors import InvalidInput, NotFound, Problem

NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_]{0,127}"
_NAME = re.compile(NAME_PATTERN)
MAX_VALUE_BYTES = 64 * 1024  # a secret's value, UTF-8 encoded (Secrets Manager allows 64 KiB)
MAX_SECRETS = 1_000  # secrets of one project
# the values of one project's secrets together, UTF-8 encoded: every log page, task result
# and output is searched for each of them, and the masker holds them all in memory
MAX_TOTAL_BYTES = 1024 * 1024
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


def check_total(project: str, secrets: Mapping[str, str], name: str, value: str) -> None:
    """Refuse setting ``name`` to ``value`` when the project's values would then add up to
    more than ``MAX_TOTAL_BYTES`` (a change that does not grow the total is allowed, so a
    project over the bound, from before it, can still rotate and delete)."""

    def size(values: Iterable[str]) -> int:
        return sum(len(v.encode("utf-8", errors="surrogatepass")) for v in values)

    before = size(secrets.values())
    after = before - size([secrets[name]] if name in secrets else []) + size([value])
    if after > MAX_TOTAL_BYTES and after > before:
        raise InvalidInput(
            [
                Problem(
                    "value",
                    f"project {project!r}'s secrets would hold {after:,} bytes of values; "
                    f"together they are at most {MAX_TOTAL_BYTES:,} (each is searched for in "
                    "every log and result): delete secrets it no longer uses",
                )
            ]
        )


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

    def version(self, project: str) -> Hashable | None:
        """Something that changes whenever ``project``'s secrets may have (a file's identity
        and time, a counter): :func:`masker_for` makes a new masker only then. None: the
        source cannot say cheaply, and the values are read and compared each time."""
        return None

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

    def version(self, project: str) -> Hashable | None:
        versions = tuple(source.version(project) for source in self.sources)
        return None if None in versions else versions

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

    def version(self, project: str) -> Hashable | None:
        return 0  # read once, from the server's environment: it never changes

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
def _hold(longest: int) -> int:
    """How many bytes at the end of a log still being written the log view holds back: the
    longest value's length less one, rounded up to a power of two (at least 64) less one, so
    that what is held back says little of how long the longest secret is. It depends on the
    values only, never on the text (see :meth:`Masker.window`)."""
    if longest <= 1:
        return 0
    return max(64, 1 << (longest - 1).bit_length()) - 1


def _spans(data: Any, needles: list[Any]) -> list[tuple[int, int]]:
    """The stretches of ``data`` (str or bytes) that hold one of ``needles``, overlapping ones
    merged, in order. One ``find`` pass per value (C, linear in the text whatever the value:
    CPython's two-way search), no pattern to compile: building a masker costs nothing, and
    masking costs (values x text), bounded by ``MAX_SECRETS`` and the page's size."""
    found: list[tuple[int, int]] = []
    for needle in needles:
        size = len(needle)
        at = data.find(needle)
        while at >= 0:
            if found and found[-1][0] <= at < found[-1][1]:  # overlaps its last match
                found[-1] = (found[-1][0], max(found[-1][1], at + size))
            else:
                found.append((at, at + size))
            at = data.find(needle, at + 1)  # a value may overlap itself ("ab1ab" in "ab1ab1ab")
    if len(found) < 2:
        return found
    found.sort()
    merged = [found[0]]
    for start, stop in found[1:]:
        last_start, last_stop = merged[-1]
        if start < last_stop:  # overlapping values: one mask over both
            if stop > last_stop:
                merged[-1] = (last_start, stop)
        else:
            merged.append((start, stop))
    return merged


def _replaced(data: Any, spans: list[tuple[int, int]], mask: Any) -> Any:
    parts = []
    pos = 0
    for start, stop in spans:
        parts.append(data[pos:start])
        parts.append(mask)
        pos = stop
    parts.append(data[pos:])
    return data[:0].join(parts)


class Masker:
    """Writes ``***`` for each secret value found in text (values shorter than
    ``MIN_MASKED_CHARS`` are never used: :func:`lookup` refuses them). :func:`masker_for`
    keeps the last one made per project and reuses it while the project's secrets are the
    same version. Values that overlap in the text are masked together, as one ``***``."""

    def __init__(self, values: Iterable[str]) -> None:
        kept = sorted({v for v in values if len(v) >= MIN_MASKED_CHARS}, key=len, reverse=True)
        self.values = kept
        self._encoded = [v.encode("utf-8", errors="surrogatepass") for v in kept]
        self.longest = max((len(v) for v in self._encoded), default=0)
        self.hold = _hold(self.longest)

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        if not self.values:
            return text
        spans = _spans(text, self.values)
        return _replaced(text, spans, MASK) if spans else text

    def value(self, value: Any) -> Any:
        """Every string in a JSON-like value masked (keys too)."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def data(self, data: bytes) -> bytes:
        if not self._encoded:
            return data
        spans = _spans(data, self._encoded)
        return _replaced(data, spans, MASK.encode()) if spans else data

    def spans(self, data: bytes) -> list[tuple[int, int]]:
        """Where ``data`` holds one of the values (overlapping ones merged), in order."""
        return _spans(data, self._encoded) if self._encoded else []

    def window(
        self, data: bytes, limit: int, *, final: bool = False, lead: int = 0
    ) -> tuple[bytes, int]:
        """Mask the first ``limit`` bytes of ``data``, a window of a log: the masked bytes and
        how many bytes of ``data`` they stand for. A value that starts before ``limit`` is
        masked whole when the window holds it (read ``hold`` bytes past ``limit``).

        ``lead``: ``data`` starts that many bytes before the page asked for (read ``hold``
        bytes back from its offset). A value that begins before the page and ends in it is
        shown ``***`` and the page goes on after it: a page asked for one byte into a value
        found nothing to mask and showed the rest of it (any reader may choose the offset).
        ``limit`` and the count returned are then from the page's start.

        ``final``: ``data`` runs to the end of a log that will not grow (its attempt ended).
        Otherwise the last ``hold`` bytes of ``data`` are never returned, whatever they hold:
        they may be the start of a value still being written. How much is held back depends
        on the values' lengths only, never on the text, so where a page ends says nothing of
        whether the text is the start of a secret (holding back only a tail that *was* such a
        start let a caller who can make a task print text learn a secret a character at a
        time). A page may then be empty; the caller asks again as the log grows."""
        if lead:
            begin, prefix = lead, b""
            for start, stop in self.spans(data):  # merged: values that overlap go together
                if start < lead < stop:  # a value straddles the page's start: skip it whole
                    begin, prefix = stop, MASK.encode()
                    break
                if start >= lead:
                    break
            rest, used = self.window(data[begin:], max(limit - (begin - lead), 0), final=final)
            return prefix + rest, begin - lead + used
        if not self._encoded:
            end = min(limit, len(data))
            return data[:end], end
        spans = [s for s in _spans(data, self._encoded) if s[0] < limit]
        pos = spans[-1][1] if spans else 0
        end = max(pos, min(limit, len(data)))
        if not final and end > len(data) - self.hold:
            end = max(pos, len(data) - self.hold)
            while end > pos and (data[end] & 0xC0) == 0x80:  # not inside a character
                end -= 1
        head = data[:end]
        return (_replaced(head, spans, MASK.encode()) if spans else head), end


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
    """A masker of every secret ``source`` knows for ``project``, and of the values attempts
    still running were given (:func:`hold_values`: a secret rotated or deleted meanwhile
    stays masked in their logs). Made once per version of the project's secrets
    (``SecretSource.version``), so a log view or a task's result costs a ``stat``, not a read
    of the file. A source that cannot be read keeps the last masker made for the project (a
    file made unsafe does not unmask its values), else masks nothing (the log view still
    answers)."""
    if source is None:
        return _NO_MASK
    held = _HELD.get(project)
    try:
        stamp = source.version(project)
    except SecretUnavailable:
        stamp = None
    version = None if stamp is None else (stamp, held[0] if held else 0)
    cached = _MASKERS.get(project)
    if cached is not None and version is not None and cached[0] == version:
        return cached[2]
    try:
        values = frozenset(source.known(project).values())
    except SecretUnavailable:
        return _NO_MASK if cached is None else cached[2]
    if held:
        values = values.union(*held[1].values())
    if cached is not None and cached[1] == values:
        masker = cached[2]
    else:
        masker = Masker(values) if values else _NO_MASK
    with _MASKERS_LOCK:  # the executor's threads and the API's serve many projects at once
        if project not in _MASKERS and len(_MASKERS) >= 256:  # bounded: the oldest goes
            _MASKERS.pop(next(iter(_MASKERS)))
        _MASKERS[project] = (version, values, masker)
    return masker


def hold_values(project: str, key: object, values: Iterable[str]) -> None:
    """Mask ``values`` in ``project``'s logs (:func:`masker_for`) until :func:`release`
    (``key``): the values an attempt was given, while it runs. Its log is masked with them
    when it ends (the local executor rewrites it); until then a view masks them even if the
    secret was rotated or deleted meanwhile. Only attempts given a secret come here."""
    kept = frozenset(values)
    if not kept:
        return
    with _MASKERS_LOCK:
        generation, by_key = _HELD.get(project, (0, {}))
        _HELD[project] = (generation + 1, {**by_key, key: kept})


def release(project: str, key: object) -> None:
    """The end of :func:`hold_values` for ``key``."""
    with _MASKERS_LOCK:
        found = _HELD.get(project)
        if found is None or key not in found[1]:
            return
        rest = {k: v for k, v in found[1].items() if k != key}
        if rest:
            _HELD[project] = (found[0] + 1, rest)
        else:
            _HELD[project] = (found[0] + 1, {})  # the generation only grows


_NO_MASK = Masker(())
_MASKERS_LOCK = threading.Lock()
# project -> (the version it was made for, its values, its masker)
_MASKERS: dict[str, tuple[Hashable, frozenset[str], Masker]] = {}
# project -> (a generation bumped at each change, attempt key -> the values it was given)
_HELD: dict[str, tuple[int, dict[object, frozenset[str]]]] = {}
