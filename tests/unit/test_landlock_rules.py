"""The shared Landlock rules are pruned (``sandbox.prune_rules``) without changing what they
allow: within one ruleset an access beneath a path is allowed when the rules on the path and
on its ancestors grant it together, so a rule whose ancestors grant all its rights is left
out, and any other is kept."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from hypothesis import given, settings
from hypothesis import strategies as st

from stratoflow.adapters.local import sandbox

READ, WRITE, EXECUTE, DIR = 1 << 2, 1 << 1, 1 << 0, 1 << 3


def allowed(rules: list[tuple[Path, int]], path: Path) -> int:
    """The rights a ruleset of ``rules`` gives beneath ``path``: its rules' and its
    ancestors' together (what the kernel checks)."""
    return _or(access for rule, access in rules if rule == path or rule in path.parents)


def _or(values: Iterable[int]) -> int:
    out = 0
    for value in values:
        out |= value
    return out


# paths over a small alphabet, so that generated sets nest often
_names = st.sampled_from(["a", "b", "c"])
_paths = st.lists(_names, min_size=1, max_size=4).map(lambda parts: Path("/", *parts))
_rights = st.integers(min_value=1, max_value=15)


@given(st.lists(st.tuples(_paths, _rights), max_size=12))
@settings(max_examples=400, deadline=None)
def test_the_pruned_rules_allow_exactly_what_the_rules_did(rules: list[tuple[Path, int]]) -> None:
    pruned = sandbox.prune_rules(rules)
    # every path the rules name, their ancestors, and a path below each
    probes = {Path("/")}
    for path, _ in rules:
        probes |= {path, path / "below", *path.parents}
    for probe in probes:
        assert allowed(pruned, probe) == allowed(rules, probe), probe
    # none kept that adds nothing, and each path at most once
    paths = [path for path, _ in pruned]
    assert len(paths) == len(set(paths))
    for path, access in pruned:
        above = _or(a for p, a in pruned if p in path.parents)
        assert access & ~above, f"{path} kept though its ancestors grant all its rights"


def test_a_rule_whose_ancestor_grants_its_rights_is_left_out() -> None:
    rules = [
        (Path("/usr"), READ | EXECUTE | DIR),
        (Path("/usr/lib/python3"), READ | DIR),  # fewer rights than /usr: nothing added
        (Path("/root/venv/lib"), READ | EXECUTE | DIR),  # the same rights as below
        (Path("/root/venv"), READ | EXECUTE | DIR),
    ]
    assert sandbox.prune_rules(rules) == [
        (Path("/usr"), READ | EXECUTE | DIR),
        (Path("/root/venv"), READ | EXECUTE | DIR),
    ]


def test_a_rule_granting_more_than_its_ancestors_is_kept() -> None:
    rules = [
        (Path("/srv"), READ | DIR),
        (Path("/srv/out"), READ | WRITE | DIR),  # write beneath a read-only ancestor
        (Path("/srv/bin"), EXECUTE),  # other rights than the ancestor's
        (Path("/srv/out/tmp"), WRITE),  # within what /srv and /srv/out grant together
    ]
    assert sandbox.prune_rules(rules) == rules[:3]


def test_rules_on_one_path_are_merged() -> None:
    rules = [(Path("/data"), READ), (Path("/data/x"), WRITE), (Path("/data"), WRITE)]
    assert sandbox.prune_rules(rules) == [(Path("/data"), READ | WRITE)]


def test_siblings_and_lookalike_prefixes_are_not_ancestors() -> None:
    rules = [(Path("/opt/app"), READ), (Path("/opt/application"), READ), (Path("/opt/b"), READ)]
    assert sandbox.prune_rules(rules) == rules
    assert PurePosixPath("/opt/app") not in PurePosixPath("/opt/application").parents


def test_the_ruleset_holds_no_rule_beneath_a_granted_read_path(tmp_path: Path) -> None:
    """What the executor builds: a read path inside another read path (a virtualenv inside
    the project directory) adds no rule; a write path inside a read path does; a link is
    compared where it leads."""
    outer, inner, out = tmp_path / "project", tmp_path / "project" / ".venv", tmp_path / "out"
    inner.mkdir(parents=True)
    (outer / "w").mkdir()
    out.mkdir()
    (tmp_path / "link").symlink_to(inner)
    landlock = sandbox.Landlock(
        sandbox.landlock_abi(), [outer, inner, tmp_path / "link", out / "x"], [outer / "w"]
    )
    try:
        static = [path for path, _ in landlock._static]
        assert outer in static
        assert outer / "w" in static
        assert inner not in static
        assert tmp_path / "link" not in static
        assert [path for path, _ in landlock._missing] == [out / "x"]  # looked for each time
    finally:
        landlock.close()
