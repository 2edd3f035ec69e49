"""A unified diff of two texts whose work is bounded, whatever the texts.

``difflib`` matches lines in time that grows with the square of the lines (and more) when many
lines repeat, each less often than its 1% "popular" cut: two 140 KB versions of a workflow
whose description lines repeat so took a minute of CPU to compare, a 2 MiB pair hours, on
the API's one worker thread (every other request waited). Here the matcher counts the work
each of its searches will do before it does it (the lines it looks at and the places in the
other text they occur); past ``MAX_DIFF_STEPS`` it stops, and the diff is the coarse one: the
lines both texts begin and end with kept, the rest of the old text replaced by the rest of
the new in one change. That is still a correct diff (it turns one text into the other), only
not the smallest: it costs time in proportion to the texts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from itertools import accumulate

# Steps of difflib's longest-match searches the matcher may take (about 0.3 us each: a diff
# costs at most ~1.5 s of CPU; two versions of a workflow of a few thousand lines need far
# fewer). difflib took 21 s for two 60,000-line versions differing in every 50th line,
# which this bound answers coarsely in ~1.5 s
MAX_DIFF_STEPS = 4_000_000
CONTEXT_LINES = 3  # as `diff -u`


class _OverBudget(Exception):
    pass


class _BoundedMatcher(difflib.SequenceMatcher[str]):
    """A SequenceMatcher that raises ``_OverBudget`` instead of searching past ``steps``."""

    # what difflib keeps on itself (typeshed does not declare them)
    a: Sequence[str]
    b2j: dict[str, list[int]]
    opcodes: list[tuple[str, int, int, int, int]] | None

    def __init__(self, a: Sequence[str], b: Sequence[str], steps: int) -> None:
        self._steps_left = steps
        super().__init__(None, a, b)
        # a search over a[lo:hi] visits each of those lines and every place of b where it
        # occurs: _visits[hi] - _visits[lo] (b2j is what difflib kept of b: popular lines
        # are left out, so they cost nothing)
        b2j = self.b2j
        self._visits = [0, *accumulate(1 + len(b2j.get(line, ())) for line in a)]

    def find_longest_match(
        self, alo: int = 0, ahi: int | None = None, blo: int = 0, bhi: int | None = None
    ) -> difflib.Match:
        high = len(self.a) if ahi is None else ahi
        self._steps_left -= self._visits[high] - self._visits[alo]
        if self._steps_left < 0:
            raise _OverBudget
        return super().find_longest_match(alo, ahi, blo, bhi)


def _coarse_opcodes(a: Sequence[str], b: Sequence[str]) -> list[tuple[str, int, int, int, int]]:
    """The lines both begin with and end with equal, everything between one change."""
    shorter = min(len(a), len(b))
    head = 0
    while head < shorter and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < shorter - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    a_end, b_end = len(a) - tail, len(b) - tail
    codes: list[tuple[str, int, int, int, int]] = []
    if head:
        codes.append(("equal", 0, head, 0, head))
    if a_end > head and b_end > head:
        codes.append(("replace", head, a_end, head, b_end))
    elif a_end > head:
        codes.append(("delete", head, a_end, head, head))
    elif b_end > head:
        codes.append(("insert", head, head, head, b_end))
    if tail:
        codes.append(("equal", a_end, len(a), b_end, len(b)))
    return codes or [("equal", 0, 0, 0, 0)]


def _range(start: int, stop: int) -> str:
    """A hunk's range as ``diff -u`` writes it (difflib's ``_format_range_unified``)."""
    beginning = start + 1
    length = stop - start
    if length == 1:
        return str(beginning)
    if not length:
        beginning -= 1  # an empty range begins at the line before it
    return f"{beginning},{length}"


def unified_lines(
    a: Sequence[str],
    b: Sequence[str],
    fromfile: str,
    tofile: str,
    *,
    max_steps: int = MAX_DIFF_STEPS,
) -> Iterator[str]:
    """The lines of the unified diff of ``a`` and ``b`` (lines with their ends), as
    ``difflib.unified_diff`` yields them; the coarse diff when matching would take more than
    ``max_steps`` (see the module)."""
    matcher = _BoundedMatcher(a, b, max_steps)
    try:
        matcher.get_opcodes()
    except _OverBudget:
        matcher.opcodes = _coarse_opcodes(a, b)  # what get_grouped_opcodes groups
    started = False
    for group in matcher.get_grouped_opcodes(CONTEXT_LINES):
        if not started:
            started = True
            yield f"--- {fromfile}\n"
            yield f"+++ {tofile}\n"
        first, last = group[0], group[-1]
        yield f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n"
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                yield from (" " + line for line in a[i1:i2])
                continue
            if tag in ("replace", "delete"):
                yield from ("-" + line for line in a[i1:i2])
            if tag in ("replace", "insert"):
                yield from ("+" + line for line in b[j1:j2])
