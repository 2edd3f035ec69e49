"""Secrets by reference: names and bounds, rendering that keeps the reference, resolution at
the executor, masking, and the home's secrets file."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from stratoflow import engine
from stratoflow import secrets as secrets_module
from stratoflow.adapters.local.secrets import LocalSecrets
from stratoflow.errors import InvalidInput, NotFound
from stratoflow.model import load_workflow
from stratoflow.secrets import (
    MASK,
    MAX_TOTAL_BYTES,
    MAX_VALUE_BYTES,
    ChainedSource,
    EnvironmentSource,
    Masker,
    MissingSecret,
    SecretUnavailable,
    ShortSecret,
    check_name,
    check_value,
    hold_values,
    mask_outputs,
    masker_for,
    references,
    release,
    resolve,
)
from stratoflow.templating import TemplateError

VALUE = "hunter2-canary-value"


def spec_of(text: str, now: datetime):  # type: ignore[no-untyped-def]
    return load_workflow(text, now=now)


def render(text: str, now: datetime, task: str = "t", params: dict | None = None, upstream=None):  # type: ignore[no-untyped-def]
    spec = spec_of(text, now)
    run, _ = engine.new_run(
        spec, run_id="default.w-1", version=1, params=params or {}, logical_date=now, now=now
    )
    return engine.render_task(spec, run, task, upstream or {})


# ------------------------------------------------------------------ names and values
@pytest.mark.parametrize("name", ["pw", "DB_PASSWORD", "a1", "x" * 128])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "_x", "1a", "a-b", "a.b", "a b", "x" * 129, "pw\n"])
def test_bad_names_name_the_field(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_name(name)
    assert caught.value.problems[0].path == "name"


def test_values_are_bounded_and_the_error_never_quotes_them() -> None:
    assert check_value("x" * MAX_VALUE_BYTES) == "x" * MAX_VALUE_BYTES
    for bad, why in [
        ("", "non-empty"),
        ("é" * (MAX_VALUE_BYTES // 2 + 1), "at most"),  # counted in UTF-8 bytes
        ("a\0" + VALUE, "NUL"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            check_value(bad)
        assert why in str(caught.value)
        assert VALUE not in str(caught.value)


# ------------------------------------------------------------------ rendering keeps references
WORKFLOW = """
name: w
params: {region: eu}
tasks:
  t:
    type: shell
    command: "echo {{ secrets.pw }} {{ params.region }} {{ params.p }}"
    env: {DB: "{{ secrets.db_pw }}", MIXED: "u:{{ secrets.pw }}@h"}
    params: {p: "{{ secrets.pw }}"}
"""


def test_rendering_leaves_the_canonical_reference_everywhere(now: datetime) -> None:
    rendered = render(WORKFLOW, now)
    assert rendered.fields["command"] == "echo {{ secrets.pw }} eu {{ secrets.pw }}"
    assert rendered.env == {"DB": "{{ secrets.db_pw }}", "MIXED": "u:{{ secrets.pw }}@h"}
    assert rendered.params["p"] == "{{ secrets.pw }}"
    payload = {"f": rendered.fields, "e": rendered.env, "p": rendered.params}
    assert references(payload) == {"pw", "db_pw"}
    assert "\x00" not in json.dumps(payload)  # no render token survives


def test_rendering_is_deterministic(now: datetime) -> None:
    assert render(WORKFLOW, now) == render(WORKFLOW, now)


def test_a_reference_in_a_run_param_is_refused_not_resolved(now: datetime) -> None:
    with pytest.raises(TemplateError, match="not written in the workflow"):
        render(WORKFLOW, now, params={"region": "{{ secrets.other }}"})


def test_a_reference_in_an_upstream_output_is_refused(now: datetime) -> None:
    text = """
name: w
tasks:
  up: {type: shell, command: echo}
  t:
    type: http
    depends_on: [up]
    url: "https://example.com/?q={{ tasks.up.outputs.body }}"
    headers: {Authorization: "Bearer {{ secrets.token }}"}
"""
    ok = render(text, now, upstream={"up": {"body": "plain"}})
    assert ok.fields["headers"] == {"Authorization": "Bearer {{ secrets.token }}"}
    with pytest.raises(TemplateError, match=r"url: the rendered text holds a secret reference"):
        render(text, now, upstream={"up": {"body": "{{ secrets.token }}"}})


@pytest.mark.parametrize(
    "command",
    [
        "{{ secrets.pw | upper }}",
        "{{ secrets.pw[0:2] }}",
        "{{ secrets.pw ~ 'x' }}",
        "{% if secrets.pw %}x{% endif %}",
        "{% set s = secrets %}{{ s.pw }}",
        "{% set x %}{{ secrets.pw }}{% endset %}{{ x | lower }}",
        "{% filter upper %}{{ secrets.pw }}{% endfilter %}",
        "{% macro m() %}{{ secrets.pw }}{% endmacro %}{{ m() }}",
        "{{ secrets['pw'] }}",
        "{{ secrets }}",
    ],
)
def test_validation_refuses_any_use_but_the_reference_itself(command: str, now: datetime) -> None:
    text = f"name: w\ntasks:\n  t: {{type: shell, command: {json.dumps(command)}}}\n"
    with pytest.raises(InvalidInput) as caught:
        spec_of(text, now)
    assert caught.value.problems[0].path == "tasks.t.command"
    assert "{{ secrets.NAME }}" in caught.value.problems[0].message


_CONTAINER_PARAMS = """
name: w
tasks:
  t:
    type: shell
    params: {p: ["{{ secrets.db_pw }}"], q: {k: "x {{ secrets.db_pw }}"}}
    command: %s
"""


@pytest.mark.parametrize("command", ["echo {{ params.p }}", "echo {{ params.q }}", "{{ params }}"])
def test_a_container_holding_a_reference_rendered_as_text_is_refused(
    command: str, now: datetime
) -> None:
    """Its text escapes the token (a list's repr writes the NUL as four characters), so the
    reference could be neither resolved nor seen: the task got a garbled command."""
    with pytest.raises(TemplateError, match=r"command: a list or mapping holding a secret"):
        render(_CONTAINER_PARAMS % json.dumps(command), now)


def test_the_item_of_a_container_holding_a_reference_is_rendered_as_the_reference(
    now: datetime,
) -> None:
    command = json.dumps("echo {{ params.p[0] }} {{ params.q.k }}")
    rendered = render(_CONTAINER_PARAMS % command, now)
    assert rendered.fields["command"] == "echo {{ secrets.db_pw }} x {{ secrets.db_pw }}"
    assert rendered.params == {"p": ["{{ secrets.db_pw }}"], "q": {"k": "x {{ secrets.db_pw }}"}}


def test_references_in_loops_and_branches_are_fine(now: datetime) -> None:
    text = (
        "name: w\ntasks:\n  t:\n    type: shell\n"
        '    command: "{% for i in [1, 2] %}{{ secrets.pw }}{% endfor %}'
        '{% if params.x %}{{ secrets.pw }}{% endif %}"\n'
    )
    text = text.replace("name: w\n", "name: w\nparams: {x: '1'}\n")
    assert render(text, now).fields["command"] == "{{ secrets.pw }}" * 3


def test_a_switch_cannot_read_secrets(now: datetime) -> None:
    text = """
name: w
tasks:
  s:
    type: switch
    cases: [{when: "{{ secrets.flag == 'on' }}", next: [a]}]
  a: {type: shell, depends_on: [s], command: echo}
"""
    with pytest.raises(InvalidInput) as caught:
        spec_of(text, now)
    assert caught.value.problems[0].path == "tasks.s.cases.0.when"


def test_workflow_params_hold_values_not_references(now: datetime) -> None:
    text = "name: w\nparams: {pw: '{{ secrets.pw }}'}\ntasks:\n  t: {type: shell, command: echo}\n"
    with pytest.raises(InvalidInput) as caught:
        spec_of(text, now)
    assert caught.value.problems[0].path == "params.pw"


# ------------------------------------------------------------------ resolution
def test_resolve_replaces_each_reference_and_reports_the_values_used() -> None:
    source = EnvironmentSource({"STRATOFLOW_SECRET_pw": VALUE, "STRATOFLOW_SECRET_DB_PW": "d-pw"})
    task = {"command": "a {{ secrets.pw }} b", "env": {"X": "{{ secrets.db_pw }}"}, "n": 3}
    resolved, used = resolve(task, "p", source)
    assert resolved == {"command": f"a {VALUE} b", "env": {"X": "d-pw"}, "n": 3}
    assert used == {"pw": VALUE, "db_pw": "d-pw"}  # db_pw found upper-cased in the environment
    assert task["command"] == "a {{ secrets.pw }} b"  # the input is left as it was


def test_a_missing_secret_names_every_missing_one_and_no_value() -> None:
    source = EnvironmentSource({"STRATOFLOW_SECRET_pw": VALUE})
    with pytest.raises(MissingSecret) as caught:
        resolve(["{{ secrets.pw }}", "{{ secrets.b }}", "{{ secrets.a }}"], "proj", source)
    assert caught.value.names == ["a", "b"]
    assert "'a', 'b'" in str(caught.value)
    assert "proj" in str(caught.value)
    assert VALUE not in str(caught.value)


def test_a_value_too_short_to_mask_is_refused_where_set_and_where_used() -> None:
    # set through Stratoflow: refused, naming the rule and not the value
    with pytest.raises(InvalidInput) as caught:
        check_value("x7!")
    assert "at least 4 characters" in str(caught.value)
    assert "x7!" not in str(caught.value)
    assert check_value("x7!?") == "x7!?"
    # set around it (the server's environment, Secrets Manager): the task is refused, rather
    # than run with a value its logs could not hide
    source = EnvironmentSource({"STRATOFLOW_SECRET_pin": "123", "STRATOFLOW_SECRET_pw": VALUE})
    with pytest.raises(ShortSecret) as short:
        resolve({"env": {"P": "{{ secrets.pin }}", "W": "{{ secrets.pw }}"}}, "proj", source)
    assert isinstance(short.value, MissingSecret)  # fails the task, not retried, as a missing one
    assert short.value.names == ["pin"]
    assert "secret 'pin' of project 'proj'" in str(short.value)
    assert "123" not in str(short.value)
    assert VALUE not in str(short.value)


@pytest.mark.parametrize("value", ["    ", " \t\n  ", "  ab  "])
def test_a_value_of_mostly_whitespace_is_refused(value: str) -> None:
    """Masked wherever it appears, a secret of four spaces turned every run of spaces in the
    project's logs into *** (`ls -la` printed 'root***')."""
    with pytest.raises(InvalidInput) as caught:
        check_value(value)
    assert "mostly whitespace" in str(caught.value)
    assert check_value("  abcd  ") == "  abcd  "  # kept as given: spaces around are its own


def test_the_environment_comes_before_the_home(tmp_path: Path) -> None:
    store = LocalSecrets(tmp_path)
    store.put("p", "pw", "from-file")
    store.put("p", "only_file", "file-only")
    chain = ChainedSource([EnvironmentSource({"STRATOFLOW_SECRET_pw": "from-env"}), store])
    assert chain.get("p", "pw") == "from-env"
    assert chain.get("p", "only_file") == "file-only"
    assert chain.get("other", "only_file") is None  # the file is per project
    assert chain.names("p") == ["only_file", "pw"]
    assert chain.known("p") == {"pw": "from-env", "only_file": "file-only"}


# ------------------------------------------------------------------ the home's file
def test_the_secrets_file_is_private_and_written_whole(tmp_path: Path) -> None:
    store = LocalSecrets(tmp_path)
    assert store.put("p", "pw", VALUE) is True
    assert store.put("p", "pw", VALUE + "2") is False
    path = store.path("p")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert json.loads(path.read_text()) == {"pw": VALUE + "2"}
    assert [p.name for p in path.parent.iterdir()] == ["p.json"]  # no temporary file left
    store.delete("p", "pw")
    assert store.names("p") == []
    with pytest.raises(NotFound, match="'pw' not found in project 'p'"):
        store.delete("p", "pw")


def test_a_file_others_can_read_is_refused_naming_the_fix(tmp_path: Path) -> None:
    store = LocalSecrets(tmp_path)
    store.put("p", "pw", VALUE)
    os.chmod(store.path("p"), 0o644)
    with pytest.raises(SecretUnavailable) as caught:
        store.get("p", "pw")
    assert "readable by others (mode 0644)" in str(caught.value)
    assert "chmod 600" in str(caught.value)
    assert VALUE not in str(caught.value)


def test_a_link_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    store = LocalSecrets(tmp_path)
    store.put("p", "pw", VALUE)
    target = tmp_path / "elsewhere.json"
    target.write_text('{"pw": "planted"}')
    target.chmod(0o600)
    store.path("p").unlink()
    store.path("p").symlink_to(target)
    with pytest.raises(SecretUnavailable):
        store.get("p", "pw")


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    store = LocalSecrets(tmp_path)
    store.put("p", "pw", VALUE)
    before = store.path("p").read_bytes()
    for project, name, value in [
        ("p", "bad name", "v"),
        ("p", "pw", ""),
        ("p", "pw", "x" * (MAX_VALUE_BYTES + 1)),
        ("../etc", "pw", "v"),
        ("P", "pw", "v"),
    ]:
        with pytest.raises(InvalidInput):
            store.put(project, name, value)
    assert store.path("p").read_bytes() == before


# ------------------------------------------------------------------ masking
def test_masker_masks_text_values_and_keys() -> None:
    masker = Masker([VALUE, "abc", "longer-" + VALUE])
    assert masker.text(f"x {VALUE} y longer-{VALUE}") == f"x {MASK} y {MASK}"
    assert masker.text("abc") == "abc"  # under MIN_MASKED_CHARS: left alone
    assert masker.value({VALUE: [VALUE, 1], "k": {"n": f"={VALUE}"}}) == {
        MASK: [MASK, 1],
        "k": {"n": f"={MASK}"},
    }
    assert not Masker([])


def test_masker_window_never_splits_a_value_across_pages() -> None:
    masker = Masker([VALUE])
    log = f"line one\nprinted {VALUE} here\nand {VALUE}".encode()
    pages: list[bytes] = []
    offset = 0
    for limit in (3, 5, 7, 11, 13):
        pages.clear()
        offset = 0
        while offset < len(log):
            window = log[offset : offset + limit + masker.hold]
            final = offset + len(window) >= len(log)  # the log's attempt ended
            chunk, used = masker.window(window, min(limit, len(window)), final=final)
            assert used > 0
            pages.append(chunk)
            offset += used
        text = b"".join(pages).decode()
        assert VALUE not in text
        assert text == f"line one\nprinted {MASK} here\nand {MASK}"


def test_masker_window_never_splits_a_value_of_a_growing_log() -> None:
    masker = Masker([VALUE, "x" * 200])
    log = f"line one\nprinted {VALUE} here\nand {VALUE} end\n".encode() * 3
    for step in (1, 7, 30):
        shown: list[bytes] = []
        offset = 0
        for size in range(0, len(log) + 1, step):  # the log grows, read as it does
            window = log[offset:size]
            chunk, used = masker.window(window, len(window))
            shown.append(chunk)
            offset += used
        chunk, used = masker.window(log[offset:], len(log) - offset, final=True)  # it ended
        shown.append(chunk)
        assert b"".join(shown).decode() == log.decode().replace(VALUE, MASK)


def test_a_growing_log_holds_back_the_same_tail_whatever_it_holds() -> None:
    """The end of a page of a log still being written does not depend on whether its last
    bytes could be the start of a secret: else a caller who can make a task print text (a
    param) learns from where the page ends whether that text starts a secret, a character at
    a time."""
    masker = Masker([VALUE, "a-much-longer-secret-value-" * 3])
    assert masker.hold == 127  # the longest value (81 bytes), rounded up to a power of two, - 1
    body = b"x" * 500 + b"\n"
    for guess in ("h", "hu", "hunter2-c", "hunter2-canary-valu", "q", "qz", "zzzzzzzzz"):
        log = body + guess.encode()
        chunk, used = masker.window(log, len(log))
        assert used == len(log) - masker.hold, guess
        assert chunk == log[:used]
    # shorter than what is held back: nothing yet, whatever it is (the caller asks again)
    for guess in ("hunt", "abcd"):
        assert masker.window(guess.encode(), 4) == (b"", 0)
        assert masker.window(guess.encode(), 4, final=True) == (guess.encode(), 4)


def test_a_held_back_tail_never_ends_inside_a_character() -> None:
    masker = Masker([VALUE])
    assert masker.hold == 63
    log = b"a" + "é".encode() * 40  # 81 bytes; 81 - 63 = 18 is inside the 9th é
    chunk, used = masker.window(log, len(log))
    assert used == 17
    chunk.decode()


class CountingStore(LocalSecrets):
    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.reads = 0

    def known(self, project: str) -> dict[str, str]:
        self.reads += 1
        return super().known(project)


def test_a_masker_is_made_once_per_version_of_the_project_s_secrets(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    store.put("once", "pw", VALUE)
    first = masker_for(store, "once")
    assert masker_for(store, "once") is first
    assert store.reads == 1, "nothing changed: neither the file nor the values are read again"
    store.put("once", "other", "another-value")
    second = masker_for(store, "once")
    assert second is not first
    assert second.text(f"{VALUE} another-value") == f"{MASK} {MASK}"
    assert store.reads == 2
    # a file made unsafe is refused, but what it held stays masked
    os.chmod(store.path("once"), 0o644)
    assert masker_for(store, "once").text(VALUE) == MASK


def test_the_values_of_a_project_s_secrets_are_bounded_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets_module, "MAX_TOTAL_BYTES", 100)
    store = LocalSecrets(tmp_path)
    store.put("p", "a", "a" * 60)
    with pytest.raises(InvalidInput) as caught:
        store.put("p", "b", "b" * 41)
    message = str(caught.value.problems[0])
    assert "101 bytes" in message
    assert "at most 100" in message
    assert "b" * 41 not in message
    store.put("p", "b", "b" * 40)  # 100: at the bound
    monkeypatch.setattr(secrets_module, "MAX_TOTAL_BYTES", 50)  # over it, from before
    store.put("p", "a", "a" * 10)  # a change that does not grow the total is allowed
    with pytest.raises(InvalidInput):
        store.put("p", "a", "a" * 11)
    assert store.known("p") == {"a": "a" * 10, "b": "b" * 40}


def test_masking_a_project_s_largest_secrets_is_quick() -> None:
    """16 values of 64 KiB (MAX_TOTAL_BYTES): no pattern built from them (compiling one took
    ~1.5 s and ~100 MB), one search of the text per value."""
    values = [f"{i:04d}" + "k" * (MAX_VALUE_BYTES - 4) for i in range(16)]
    assert sum(len(v) for v in values) <= MAX_TOTAL_BYTES
    start = time.perf_counter()
    masker = Masker(values)
    page = b"ordinary text\n" * 10_000 + values[3].encode() + b"\nend\n"
    chunk, _used = masker.window(page, len(page), final=True)
    assert chunk == b"ordinary text\n" * 10_000 + b"***\nend\n"
    assert time.perf_counter() - start < 0.5


def test_values_given_to_a_running_attempt_stay_masked_when_rotated(tmp_path: Path) -> None:
    store = LocalSecrets(tmp_path)
    store.put("rot", "pw", VALUE)
    key = ("rot.w-1", "t", 1)
    hold_values("rot", key, [VALUE])  # the executor, as it starts the attempt
    store.put("rot", "pw", "the-new-value-of-pw")
    masker = masker_for(store, "rot")
    assert masker.text(f"{VALUE} the-new-value-of-pw") == f"{MASK} {MASK}"
    release("rot", key)  # it ended (its log was written again, masked)
    assert masker_for(store, "rot").text(VALUE) == VALUE


@pytest.mark.parametrize("block", [1, 5, 16, 1024])
def test_a_log_file_is_masked_in_place_a_block_at_a_time(tmp_path: Path, block: int) -> None:
    from stratoflow.adapters.local.executor import mask_log_file

    path = tmp_path / "t.1.log"
    text = f"start\n{VALUE}{VALUE}\nmiddle {VALUE} end\n{VALUE[:-1]}"
    path.write_text(text)
    path.chmod(0o640)
    before = path.stat()
    stars = "*" * len(VALUE)
    assert mask_log_file(str(path), Masker([VALUE]), block=block) is True
    assert path.read_text() == f"start\n{stars}{stars}\nmiddle {stars} end\n{VALUE[:-1]}"
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mode) == (
        before.st_ino, before.st_size, before.st_mode,
    )  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["t.1.log"]
    assert mask_log_file(str(path), Masker([VALUE]), block=block) is False  # nothing to do


def test_masking_a_log_keeps_its_holes_and_what_is_written_after(tmp_path: Path) -> None:
    """The log was copied and the copy renamed over it: a task that had truncated its log to
    a huge sparse size had that copy filled (300 MB of holes became 314 MB on disk, 2.25 s on
    the thread that reports every end), and a process the attempt left behind wrote on into
    the replaced file, lost."""
    from stratoflow.adapters.local.executor import mask_log_file

    path = tmp_path / "t.1.log"
    with path.open("wb") as log:
        log.write(f"pw={VALUE}\n".encode())
        log.truncate(256 * 1024 * 1024)  # 256 MiB, a hole but for its first line
        log.seek(0, 2)
        log.write(f"late {VALUE}\n".encode())
    allocated = path.stat().st_blocks
    with path.open("ab") as leftover:  # a process the attempt left, its log still open
        assert mask_log_file(str(path), Masker([VALUE]), block=64 * 1024) is True
        leftover.write(b"written after\n")
    assert path.stat().st_blocks <= allocated + 8  # the hole stayed a hole
    with path.open("rb") as log:
        assert log.read(64).startswith(b"pw=" + b"*" * len(VALUE))
        log.seek(256 * 1024 * 1024)
        assert log.read() == b"late " + b"*" * len(VALUE) + b"\nwritten after\n"


def test_overlapping_values_are_masked_whole_from_any_offset_and_across_blocks(
    tmp_path: Path,
) -> None:
    """Two values overlapping in the text (a URL and its host with the port and path): the
    log view started inside the first found only it and showed the second's tail, and the
    file's masking starred the first in one block so the next could not find the second.
    A value overlapping itself was masked only in part."""
    from stratoflow.adapters.local.executor import mask_log_file

    first, second = "https://db.example.com", "db.example.com:5432/prod-pw"
    text = f"conn {first}:5432/prod-pw done\n".encode()
    masker = Masker([first, second])
    covered = text.index(b"https"), text.index(b" done")
    for lead in range(1, len(text)):
        shown, used = masker.window(text, len(text) - lead, final=True, lead=lead)
        assert used == len(text) - lead  # the page runs to the end, whatever it masked
        if covered[0] < lead < covered[1]:
            assert shown == b"***" + text[covered[1] :], lead
        assert b"prod-pw" not in shown, lead
    for block in range(1, 64):
        path = tmp_path / f"{block}.log"
        path.write_bytes(text)
        assert mask_log_file(str(path), masker, block=block) is True
        after = path.read_bytes()
        assert after[covered[0] : covered[1]] == b"*" * (covered[1] - covered[0]), block
    assert Masker(["ab12ab"]).text("x ab12ab12ab y") == "x *** y"


def test_a_secret_may_be_named_like_a_method_of_the_tokens(now: datetime) -> None:
    text = 'name: w\ntasks:\n  t: {type: shell, command: "x {{ secrets.finish }}"}\n'
    assert render(text, now).fields["command"] == "x {{ secrets.finish }}"


def test_a_container_holding_a_reference_is_refused_whatever_case_a_filter_gave_it(
    now: datetime,
) -> None:
    with pytest.raises(TemplateError, match=r"command: a list or mapping holding a secret"):
        render(_CONTAINER_PARAMS % json.dumps("echo {{ params.p | string | upper }}"), now)


@pytest.mark.parametrize(
    "command",
    [
        "echo {{ params.r | replace('stratoflow', 'x') }}",
        "echo {{ params.r | upper }}",
        "echo {{ params.r[1:] }}",
        "echo {{ params.r[1:-1] }}",
        "echo {{ params.r | replace(params.r[-5:], 'x') }}",
    ],
)
def test_a_reference_in_a_param_changed_by_a_filter_is_refused_naming_the_filter(
    command: str, now: datetime
) -> None:
    """Not a list or mapping rendered as text (what the message said): a single reference a
    filter or slice changed."""
    text = (
        "name: w\ntasks:\n  t:\n    type: shell\n"
        '    params: {r: "{{ secrets.db_pw }}"}\n'
        f"    command: {json.dumps(command)}\n"
    )
    with pytest.raises(TemplateError, match=r"command: a secret .*filter, slice") as e:
        render(text, now)
    assert "list or mapping" not in str(e.value)


@pytest.mark.parametrize(
    "command", ["echo {{ params.p | tojson }}", "echo {{ params.q | tojson }}"]
)
def test_a_reference_written_out_as_json_is_refused_naming_tojson(
    command: str, now: datetime
) -> None:
    with pytest.raises(TemplateError, match=r"command: a list or mapping .* such as tojson"):
        render(_CONTAINER_PARAMS % json.dumps(command), now)


def test_a_nul_from_data_fails_the_render_naming_the_field(now: datetime) -> None:
    """Popen refuses a NUL in an argument: it reached the executor, which could not start the
    task and never reported it (the run waited for ever without a timeout)."""
    text = """
name: w
tasks:
  up: {type: shell, command: echo}
  t: {type: shell, depends_on: [up], command: "echo [{{ tasks.up.outputs.k }}]"}
"""
    with pytest.raises(TemplateError, match=r"command: the rendered text holds a NUL"):
        render(text, now, upstream={"up": {"k": "a\x00b"}})


def test_masked_outputs_are_named_in_a_note_for_the_attempt_s_log() -> None:
    """Outputs are data downstream tasks read: a value masked there reaches them as ``***``
    (by substring: a secret ``postgres`` masks ``postgresql://...``). Unchanged outputs get no
    note; a key holding a secret is named masked."""
    masker = Masker(["postgres", VALUE])
    outputs = {"dsn": "postgresql://db/x", "n": 3, VALUE: "k", "plain": "ok"}
    masked, note = mask_outputs(masker, outputs)
    assert masked == {"dsn": f"{MASK}ql://db/x", "n": 3, MASK: "k", "plain": "ok"}
    assert note is not None
    assert f"outputs 'dsn', '{MASK}' held the value of a secret" in note
    assert "downstream tasks read them so" in note
    assert VALUE not in note
    assert note.endswith("\n")
    assert mask_outputs(masker, {"plain": "ok", "n": [1, "x"]}) == (
        {"plain": "ok", "n": [1, "x"]},
        None,
    )
