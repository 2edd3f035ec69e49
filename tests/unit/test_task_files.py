"""Reading the files an attempt leaves (``stratoflow.taskexec``): outputs are read whole or
not at all, and an attempt whose outputs cannot be read whole fails with none of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratoflow import taskexec
from stratoflow.taskexec import TaskFileTooLarge, outcome_from_files

LIMIT = 1000


@pytest.fixture(autouse=True)
def small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(taskexec, "MAX_RESULT_BYTES", LIMIT)


def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "outputs": tmp_path / "t.1.out",
        "structured": tmp_path / "t.1.result",
        "error": tmp_path / "t.1.error",
        "log": tmp_path / "t.1.log",
    }


def test_a_file_at_the_limit_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"k=" + b"v" * (LIMIT - 2))
    assert taskexec.read_whole_task_file(tmp_path / "f") == "k=" + "v" * (LIMIT - 2)


def test_a_file_over_the_limit_raises_with_its_size_and_the_limit(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * (10 * LIMIT))
    with pytest.raises(TaskFileTooLarge) as caught:
        taskexec.read_whole_task_file(tmp_path / "f")
    assert (caught.value.size, caught.value.limit) == (10 * LIMIT, LIMIT)
    (tmp_path / "g").write_bytes(b"x" * (LIMIT + 1))
    with pytest.raises(TaskFileTooLarge):  # one byte over is over
        taskexec.read_whole_task_file(tmp_path / "g")


def test_missing_links_and_non_files_are_none_as_before(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (2 * LIMIT))
    (tmp_path / "link").symlink_to(tmp_path / "big")
    (tmp_path / "dir").mkdir()
    for name in ("missing", "link", "dir"):
        assert taskexec.read_whole_task_file(tmp_path / name) is None
        assert taskexec.read_task_head(tmp_path / name) is None


def test_the_head_is_read_with_the_size_the_file_has(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"e" * (3 * LIMIT))
    assert taskexec.read_task_head(tmp_path / "f") == ("e" * LIMIT, 3 * LIMIT)
    assert taskexec.read_task_file(tmp_path / "f") == "e" * LIMIT  # the legacy exit status's


def test_key_values_over_the_limit_fail_the_attempt_with_no_outputs(tmp_path: Path) -> None:
    # GIVEN a shell task that wrote a value past the limit and a small one after it
    paths = files(tmp_path)
    paths["outputs"].write_text("k=" + "v" * (2 * LIMIT) + "\nsmall=1\n")
    # WHEN its attempt is read
    found = outcome_from_files(0, **paths)
    # THEN it failed, naming the size and the limit, and passes nothing on
    assert found.status == "failed"
    assert found.outputs == {}
    assert found.error is not None
    assert f"outputs: {2 * LIMIT + 11:,} bytes written, more than the 1,000 bytes" in found.error
    assert "pass its path" in found.error


def test_the_message_says_the_real_limit_in_mib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(taskexec, "MAX_RESULT_BYTES", 4 << 20)
    paths = files(tmp_path)
    paths["outputs"].write_bytes(b"k=" + b"v" * 10_485_774)
    found = outcome_from_files(0, **paths)
    assert found.error == (
        "outputs: 10,485,776 bytes written, more than the 4 MiB a task may pass on; "
        "write large data to a file or object store and pass its path"
    )


def test_structured_outputs_over_the_limit_fail_the_attempt(tmp_path: Path) -> None:
    paths = files(tmp_path)
    paths["outputs"].write_text("a=1\n")
    paths["structured"].write_text(json.dumps({"x": "y" * (2 * LIMIT)}))
    found = outcome_from_files(0, **paths)
    assert (found.status, found.outputs) == ("failed", {})
    assert found.error is not None
    assert found.error.startswith("outputs: ")
    assert "more than the 1,000 bytes" in found.error


@pytest.mark.parametrize(
    ("body", "why"), [('{"x": "cut', "not valid JSON"), ("[1, 2]", "a JSON list, not an object")]
)
def test_structured_outputs_that_are_not_a_json_object_fail_the_attempt(
    tmp_path: Path, body: str, why: str
) -> None:
    paths = files(tmp_path)
    paths["outputs"].write_text("a=1\n")
    paths["structured"].write_text(body)
    found = outcome_from_files(0, **paths)
    assert (found.status, found.outputs) == ("failed", {})
    assert found.error is not None
    assert why in found.error


def test_outputs_under_the_limit_are_all_passed_on(tmp_path: Path) -> None:
    paths = files(tmp_path)
    paths["outputs"].write_text("a=1\nb=2\n")
    paths["structured"].write_text(json.dumps({"x": "y" * (LIMIT - 20)}))
    found = outcome_from_files(0, **paths)
    assert found.status == "succeeded"
    assert found.outputs == {"a": "1", "b": "2", "x": "y" * (LIMIT - 20)}


def test_a_failed_task_keeps_its_own_error_and_says_its_outputs_were_dropped(
    tmp_path: Path,
) -> None:
    paths = files(tmp_path)
    paths["outputs"].write_text("k=" + "v" * (2 * LIMIT))
    paths["error"].write_text("ValueError: bad row")
    found = outcome_from_files(1, **paths)
    assert (found.status, found.outputs, found.exit_code) == ("failed", {}, 1)
    assert found.error is not None
    first, second = found.error.split("\n")
    assert first == "ValueError: bad row"
    assert second.startswith("outputs: ")
    assert "more than the 1,000 bytes" in second


def test_an_error_over_the_limit_keeps_its_head_and_says_it_was_cut(tmp_path: Path) -> None:
    paths = files(tmp_path)
    paths["error"].write_text("E" * (3 * LIMIT))
    found = outcome_from_files(1, **paths)
    assert found.error == (
        "E" * LIMIT + f"\n[error cut: {3 * LIMIT:,} bytes written, the first 1,000 bytes kept]"
    )


@pytest.mark.parametrize("line", ["=value", "  = value", "\t=", "=a=b"])
def test_a_key_value_line_with_an_empty_key_fails_the_attempt_naming_its_line(
    tmp_path: Path, line: str
) -> None:
    # GIVEN a shell task whose outputs have a line with no key before its "=" (line 4)
    paths = files(tmp_path)
    paths["outputs"].write_text(f"rows=42\n# a comment\n\n{line}\nlast=1\n")
    # WHEN its attempt is read
    found = outcome_from_files(0, **paths)
    # THEN it failed naming that line, and passes nothing on (not even the good keys)
    assert (found.status, found.outputs, found.exit_code) == ("failed", {}, 0)
    assert found.error == (
        "outputs: line 4 of the outputs file ($STRATOFLOW_OUTPUT) has an empty key (=value); "
        "write key=value lines with a key"
    )


def test_a_failed_task_with_an_empty_key_keeps_its_own_error_first(tmp_path: Path) -> None:
    paths = files(tmp_path)
    paths["outputs"].write_text("=1\n")
    paths["error"].write_text("ValueError: bad row")
    found = outcome_from_files(1, **paths)
    assert (found.status, found.outputs) == ("failed", {})
    assert found.error is not None
    assert found.error.split("\n") == [
        "ValueError: bad row",
        "outputs: line 1 of the outputs file ($STRATOFLOW_OUTPUT) has an empty key (=value); "
        "write key=value lines with a key",
    ]


def test_lines_without_an_equals_sign_are_still_ignored(tmp_path: Path) -> None:
    paths = files(tmp_path)
    paths["outputs"].write_text("junk line\n# k=v\n a = 1 \n")
    found = outcome_from_files(0, **paths)
    assert (found.status, found.outputs) == ("succeeded", {"a": "1"})


def nested(depth: int) -> str:
    """Outputs ``{"deep": [[...]]}`` whose lists nest ``depth`` levels below the object."""
    return '{"deep": ' + "[" * depth + "]" * depth + "}"


def test_outputs_nested_as_deep_as_a_workflow_document_are_passed_on(tmp_path: Path) -> None:
    paths = files(tmp_path)
    paths["structured"].write_text(nested(taskexec.MAX_OUTPUT_DEPTH - 1))
    found = outcome_from_files(0, **paths)
    assert found.status == "succeeded"


@pytest.mark.parametrize("depth", [taskexec.MAX_OUTPUT_DEPTH, 900, 100_000])
def test_outputs_nested_deeper_fail_the_attempt_naming_the_limit(
    tmp_path: Path, depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A python task's outputs 900 levels deep left its attempt running for ever (masking
    them overflowed the stack, so its end was never told) and the server could not start
    again (recovery read them too). They fail the attempt, with none of them kept."""
    monkeypatch.setattr(taskexec, "MAX_RESULT_BYTES", 4 << 20)
    paths = files(tmp_path)
    paths["structured"].write_text(nested(depth))
    found = outcome_from_files(0, **paths)
    assert (found.status, found.outputs) == ("failed", {})
    assert found.error is not None
    if depth < 1000:  # deeper still, the JSON reader itself refuses it
        assert f"nested deeper than {taskexec.MAX_OUTPUT_DEPTH} levels" in found.error
    assert found.error.startswith("outputs: ")


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_numbers_in_outputs_fail_the_attempt(tmp_path: Path, value: str) -> None:
    """Python's json writes float('inf') as Infinity, which is not JSON: it reached the run
    view as null and a template as 'inf'."""
    paths = files(tmp_path)
    paths["structured"].write_text(f'{{"f": {value}, "ok": 1}}')
    found = outcome_from_files(0, **paths)
    assert (found.status, found.outputs) == ("failed", {})
    assert f"a non-finite number ({value})" in (found.error or "")
