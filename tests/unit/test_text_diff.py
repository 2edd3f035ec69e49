"""The bounded unified diff (api/text_diff.py): within its bound, exactly difflib's; past it,
the coarse diff, still one that turns the old text into the new."""

from __future__ import annotations

import difflib

from hypothesis import given
from hypothesis import strategies as st

from stratoflow.api.text_diff import unified_lines

LINES = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "d\n", "e", "\n"]), max_size=40)
# whole lines (the API ends a last line without one before it joins them)
WHOLE_LINES = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "d\n", "\n"]), max_size=40)


@given(LINES, LINES)
def test_within_the_bound_it_is_difflibs_unified_diff(a: list[str], b: list[str]) -> None:
    assert list(unified_lines(a, b, "x v1", "x v2")) == list(
        difflib.unified_diff(a, b, "x v1", "x v2")
    )


def patched(old: str, diff: str) -> str:
    """``old`` with a unified diff applied (what `patch` would make of it)."""
    lines, out, at = old.splitlines(keepends=True), [], 0
    for line in diff.splitlines(keepends=True)[2:]:
        if line.startswith("@@"):
            start = int(line.split()[1][1:].split(",")[0])
            length = line.split()[1].split(",")
            begin = start - 1 if len(length) == 1 or length[1] != "0" else start
            out.extend(lines[at:begin])
            at = begin
        elif line.startswith((" ", "-")):
            assert lines[at] == line[1:], (at, line)
            at += 1
            if line.startswith(" "):
                out.append(line[1:])
        else:
            out.append(line[1:])
    return "".join(out + lines[at:])


@given(WHOLE_LINES, WHOLE_LINES)
def test_past_the_bound_it_is_a_coarse_diff_that_still_turns_a_into_b(
    a: list[str], b: list[str]
) -> None:
    lines = list(unified_lines(a, b, "x v1", "x v2", max_steps=0))
    if a == b:
        assert lines == []
        return
    assert sum(1 for line in lines if line.startswith("@@")) == 1  # one change, in context
    assert patched("".join(a), "".join(lines)) == "".join(b)


def test_the_coarse_diff_keeps_the_common_beginning_and_end() -> None:
    a = [f"{i}\n" for i in range(10)]
    b = [*a[:5], "new\n", *a[7:]]
    assert list(unified_lines(a, b, "o", "n", max_steps=0)) == [
        "--- o\n", "+++ n\n", "@@ -3,8 +3,7 @@\n",
        " 2\n", " 3\n", " 4\n", "-5\n", "-6\n", "+new\n", " 7\n", " 8\n", " 9\n",
    ]  # fmt: skip
