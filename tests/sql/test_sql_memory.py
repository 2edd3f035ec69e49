"""An sql task's memory is bounded by the rows it keeps, not by the rows its query returns:
the task runner (``python -m stratoflow.taskexec.taskrunner``, as the executor starts it) runs
a query of 300,000 rows of 200 characters (some 60 MB of data; buffered, libpq and PyMySQL
took ~100 MB more than a query of one row) and its peak resident size is measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stratoflow.taskexec.sql import SqlFailed, execute

pytestmark = pytest.mark.e2e

ROWS = 300_000
BIG = {
    "postgresql": f"SELECT g, repeat('x', 200) AS pad FROM generate_series(1, {ROWS}) g",
    # MariaDB's sequence engine: seq_1_to_N is a table of N rows, made on the fly
    "mysql": f"SELECT seq AS g, repeat('x', 200) AS pad FROM seq_1_to_{ROWS}",
}
# far below what buffering the result took (the baseline is the runner with psycopg or
# PyMySQL loaded and one row read), far above what the kept rows take
MAX_GROWTH_KB = 25 * 1024
MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(os.wait4(proc.pid, 0)[2].ru_maxrss)
"""


def run_task(
    tmp: Path, name: str, engine: str, url: str, sql: str, outputs: str
) -> tuple[dict[str, object], int]:
    """The runner's outputs (or ``{"error": ...}``) and its peak resident size in KiB."""
    spec = tmp / f"{name}.1.json"
    fields = {
        "connection": "wh",
        "sql": sql,
        "outputs": outputs,
        "__connection": {"type": engine, "settings": {"url": url}},
    }
    spec.write_text(json.dumps({"type": "sql", "fields": fields, "params": {}}))
    # A process's peak size counts what it had before it exec'd (Linux keeps the larger), and
    # a child of pytest starts as a copy of pytest: a small Python in between starts the
    # runner and reports its peak (os.wait4).
    report = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "stratoflow.taskexec.taskrunner",
         str(spec)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    peak = int(report.stdout.split()[-1])
    result, error = tmp / f"{name}.1.result", tmp / f"{name}.1.error"
    if error.exists():
        return {"error": error.read_text()}, peak
    return json.loads(result.read_text()), peak


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_large_result_is_not_held_by_the_task(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_db" if engine == "postgresql" else "mysql_db")
    baseline_outputs, baseline = run_task(
        tmp_path, "one", engine, url, "SELECT 1 AS one", "first_row"
    )
    assert baseline_outputs == {"one": "1", "row_count": 1}
    for outputs, expected in (
        ("none", {"row_count": ROWS}),
        ("first_row", {"g": "1", "pad": "x" * 200, "row_count": ROWS}),
        ("rows", {"error": f"the query returned {ROWS:,} rows; outputs: rows holds at most 1,000 "
                  "(select fewer, or use outputs: first_row or none)"}),
    ):  # fmt: skip
        found, peak = run_task(tmp_path, outputs, engine, url, BIG[engine], outputs)
        assert found == expected, outputs
        assert peak - baseline < MAX_GROWTH_KB, (outputs, peak, baseline)


def test_what_a_cursor_cannot_hold_runs_as_before(pg_db: str) -> None:
    """A script that starts with a SELECT, a data-modifying WITH, an INSERT ... RETURNING and
    a SELECT INTO are not one query a server-side cursor holds: they run as a script (the
    last statement's result; committed); an error is reported in the query's own words."""
    settings = {"url": pg_db}
    execute("postgresql", settings, "CREATE TABLE t (x int)", None, "none")
    script = "SELECT 1 AS a; INSERT INTO t VALUES (1), (2); SELECT count(*) AS n FROM t"
    assert execute("postgresql", settings, script, None, "first_row") == {"n": "2", "row_count": 1}
    with_insert = "WITH i AS (INSERT INTO t VALUES (3) RETURNING x) SELECT x * 10 AS y FROM i"
    assert execute("postgresql", settings, with_insert, None, "rows") == {
        "rows": [{"y": 30}],
        "row_count": 1,
    }
    returning = "INSERT INTO t VALUES (%(x)s) RETURNING x AS z"
    assert execute("postgresql", settings, returning, {"x": 4}, "first_row") == {
        "z": "4",
        "row_count": 1,
    }
    execute("postgresql", settings, "SELECT x INTO u FROM t", None, "none")
    count = "SELECT count(*) AS n, %(tag)s AS tag FROM u WHERE x::text LIKE '%%'"
    assert execute("postgresql", settings, count, {"tag": "a"}, "first_row") == {
        "n": "4",
        "tag": "a",
        "row_count": 1,
    }
    with pytest.raises(SqlFailed, match=r'relation "nowhere" does not exist.*LINE 1: SELECT'):
        execute("postgresql", settings, "SELECT * FROM nowhere", None, "none")


def test_an_error_past_the_kept_rows_fails_the_task_and_rolls_it_back(pg_db: str) -> None:
    """The rows after those kept still run (on the server): an error there fails the task,
    and what the query did before it is rolled back."""
    settings = {"url": pg_db}
    execute("postgresql", settings, """
        CREATE TABLE t (x int);
        CREATE FUNCTION mark(g int) RETURNS int LANGUAGE sql AS
          'INSERT INTO t VALUES (g) RETURNING x';
    """, None, "none")  # fmt: skip
    failing = "SELECT mark(g) AS m, 10 / (5000 - g) AS r FROM generate_series(1, 10000) g"
    for outputs in ("first_row", "none"):
        with pytest.raises(SqlFailed, match="division by zero"):
            execute("postgresql", settings, failing, None, outputs)
    counted = execute("postgresql", settings, "SELECT count(*) AS n FROM t", None, "first_row")
    assert counted == {"n": "0", "row_count": 1}
    done = execute("postgresql", settings, "SELECT mark(g) FROM generate_series(1, 3000) g", None,
                   "first_row")  # fmt: skip
    assert done == {"mark": "1", "row_count": 3000}
    counted = execute("postgresql", settings, "SELECT count(*) AS n FROM t", None, "first_row")
    assert counted == {"n": "3000", "row_count": 1}
