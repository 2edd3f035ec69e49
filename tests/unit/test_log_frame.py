"""The wrapper's frame in an attempt's log: read back by recovery, left out of error tails."""

from __future__ import annotations

from pathlib import Path

from stratoflow.taskexec import (
    HEAD_WINDOW,
    RECORD_WINDOW,
    STARTED_LINE,
    LogRecord,
    log_record,
    tail,
)


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.1.log"
    path.write_text(text)
    return path


START = STARTED_LINE.format(task="t", attempt=1, pid=4242)


def test_a_framed_log_gives_its_start_and_its_last_status(tmp_path: Path) -> None:
    text = START + "work\n[stratoflow] task t attempt 1 exited with code 4\n"
    path = _log(tmp_path, text)
    # written_at: the log's mtime, when the attempt ended (recovery's end time)
    assert log_record(path, "t", 1) == LogRecord(True, 4, path.stat().st_mtime, pid=4242)


def test_no_start_line_is_no_start_and_no_record_is_no_status(tmp_path: Path) -> None:
    assert log_record(_log(tmp_path, ""), "t", 1)[:2] == (False, None)
    assert log_record(_log(tmp_path, START + "half way"), "t", 1)[:2] == (True, None)
    assert log_record(tmp_path / "missing.log", "t", 1) == LogRecord(False, None)
    # a start line within a line is not one; one beyond the head window is not looked for
    assert log_record(_log(tmp_path, "x" + START), "t", 1).started is False
    far = "x" * (HEAD_WINDOW - 10) + "\n" + START
    assert log_record(_log(tmp_path, far), "t", 1).started is False


def test_what_bash_wrote_before_the_start_line_does_not_hide_it(tmp_path: Path) -> None:
    # a task whose locale is not installed: bash warns before the wrapper's first line (a
    # start looked for at the top only was "never started", and started again beside itself)
    warned = "bash: warning: setlocale: LC_ALL: cannot change locale (xx_XX.UTF-8)\n" + START
    assert log_record(_log(tmp_path, warned + "x\n"), "t", 1)[::3] == (True, 4242)


def test_the_start_line_names_the_wrapper_s_pid_and_an_older_one_still_counts(
    tmp_path: Path,
) -> None:
    # the pid recovery finds a wrapper by once its body replaced it with `exec`
    assert log_record(_log(tmp_path, START + "x\n"), "t", 1)[::3] == (True, 4242)
    # an earlier version's start line names none: started all the same
    old = "[stratoflow] task t attempt 1 started\nx\n"
    assert log_record(_log(tmp_path, old), "t", 1)[::3] == (True, None)
    # a pid cut short or garbled: started (never started afresh), no pid to look for
    for garbled in (", pid \n", ", pid 12x\n", ", pid 12"):
        text = "[stratoflow] task t attempt 1 started" + garbled + "x\n"
        assert log_record(_log(tmp_path, text), "t", 1)[::3] == (True, None), garbled
    # attempt 1's prefix is not attempt 10's
    ten = STARTED_LINE.format(task="t", attempt=10, pid=7)
    assert log_record(_log(tmp_path, ten), "t", 1).started is False
    assert log_record(_log(tmp_path, ten), "t", 10)[::3] == (True, 7)


def test_a_record_for_another_attempt_or_task_is_not_this_ones(tmp_path: Path) -> None:
    text = START + "[stratoflow] task t attempt 2 exited with code 0\n"
    text += "[stratoflow] task u attempt 1 exited with code 0\n"
    assert log_record(_log(tmp_path, text), "t", 1).status is None


def test_the_record_is_found_after_late_output_but_not_beyond_the_window(
    tmp_path: Path,
) -> None:
    record = "[stratoflow] task t attempt 1 exited with code 0\n"
    late = "a background process wrote this after the trap\n"
    assert log_record(_log(tmp_path, START + record + late), "t", 1).status == 0
    far = START + record + "x" * RECORD_WINDOW
    assert log_record(_log(tmp_path, far), "t", 1).status is None  # LOST: the safe answer


def test_an_error_tail_holds_the_tasks_output_not_the_frame(tmp_path: Path) -> None:
    text = START + "one\n\nthree" + "[stratoflow] task t attempt 1 exited with code 3\n"
    assert tail(_log(tmp_path, text)) == "one\n\nthree"
    framed_only = START + "[stratoflow] task t attempt 1 exited with code 1\n"
    assert tail(_log(tmp_path, framed_only)) == ""
