"""``type: sql`` on the local runtime, against the real PostgreSQL and MariaDB servers."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.engine import RunState
from stratoflow.taskexec.sql import MAX_ROWS, MAX_ROWS_BYTES
from tests.e2e.test_runtime import finish, start
from tests.sql.conftest import add_connection, mysql_admin
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def log_of(rt: LocalRuntime, run_id: str, task_id: str, attempt: int = 1) -> str:
    return rt.executor.log_path(run_id, task_id, attempt).read_text()


SALES = """
name: sales
params: {region: eu}
tasks:
  load:
    type: sql
    connection: wh
    outputs: none
    sql: |
      CREATE TABLE sales (ds date, region text, amount int);
      INSERT INTO sales VALUES ('2024-05-01', 'eu', 3), ('2024-05-01', 'eu', 4),
                               ('2024-05-01', 'us', 5), ('2024-05-02', 'eu', 9);
  count:
    type: sql
    connection: wh
    depends_on: [load]
    sql: "SELECT count(*) AS n, sum(amount) AS total FROM sales WHERE ds = %(ds)s AND region = %(region)s"
    parameters: {ds: "2024-05-01", region: "{{ params.region }}"}
  report:
    type: shell
    depends_on: [count]
    command: echo "got={{ tasks.count.outputs.n }}/{{ tasks.count.outputs.total }}" >> "$STRATOFLOW_OUTPUT"
"""


def prepare(rt: LocalRuntime, sql: str) -> None:
    """Run ``sql`` (no double quotes in it) on connection ``wh`` as a workflow of its own,
    which must succeed: the tables a test then queries."""
    assert '"' not in sql, sql
    setup = start(rt, f"""
name: setup
tasks:
  make: {{type: sql, connection: wh, outputs: none, sql: "{sql}"}}
""")  # fmt: skip
    assert finish(rt, setup) is RunState.SUCCEEDED


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_statement_its_first_row_and_the_count_passed_on(
    engine: str, runtime: LocalRuntime, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_db" if engine == "postgresql" else "mysql_db")
    add_connection(runtime, "wh", engine, url=url)
    text = SALES if engine == "postgresql" else SALES.replace("region text", "region varchar(8)")
    run_id = start(runtime, text)
    assert finish(runtime, run_id) is RunState.SUCCEEDED, runtime.store.get_tasks(run_id)
    count = runtime.store.get_task(run_id, "count")
    assert count.outputs == {"n": "2", "total": "7", "row_count": 1}
    assert runtime.store.get_task(run_id, "load").outputs == {"row_count": 4}
    assert runtime.store.get_task(run_id, "report").outputs == {"got": "2/7"}
    assert "row_count=1" in log_of(runtime, run_id, "count")


INJECTION = """
name: injection
params: {who: "x"}
tasks:
  lookup:
    type: sql
    connection: wh
    sql: "SELECT count(*) AS n FROM victims WHERE name = %(who)s"
    parameters: {who: "{{ params.who }}"}
"""


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_a_parameter_is_bound_never_executed(
    engine: str, runtime: LocalRuntime, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_db" if engine == "postgresql" else "mysql_db")
    add_connection(runtime, "wh", engine, url=url)
    prepare(
        runtime, "CREATE TABLE victims (name varchar(64)); INSERT INTO victims VALUES ('alice')"
    )
    evil = "'; DROP TABLE victims; --"
    run_id = start(runtime, INJECTION, who=evil)
    assert finish(runtime, run_id) is RunState.SUCCEEDED, runtime.store.get_tasks(run_id)
    assert runtime.store.get_task(run_id, "lookup").outputs["n"] == "0"
    # the table is still there, with its row, and the value matches as data
    again = start(runtime, INJECTION, who="alice")
    assert finish(runtime, again) is RunState.SUCCEEDED
    assert runtime.store.get_task(again, "lookup").outputs["n"] == "1"


def test_rows_as_json_and_the_caps_named(runtime: LocalRuntime, pg_db: str) -> None:
    add_connection(runtime, "wh", "postgresql", url=pg_db)
    run_id = start(runtime, f"""
name: rows
tasks:
  some:
    type: sql
    connection: wh
    outputs: rows
    sql: "SELECT g AS id, g * 1.5::numeric AS price, NULL AS nothing, DATE '2024-01-01' + g AS day
          FROM generate_series(1, 3) g"
  too_many:
    type: sql
    connection: wh
    outputs: rows
    sql: "SELECT g FROM generate_series(1, {MAX_ROWS + 1}) g"
  too_big:
    type: sql
    connection: wh
    outputs: rows
    sql: "SELECT repeat('x', 1000) AS pad FROM generate_series(1, {MAX_ROWS_BYTES // 1000}) g"
  exactly:
    type: sql
    connection: wh
    outputs: none
    sql: "SELECT g FROM generate_series(1, 5000) g"
  shown:
    type: shell
    depends_on: [some]
    command: echo 'json={{{{ tasks.some.outputs.rows }}}}' >> "$STRATOFLOW_OUTPUT"
""")  # fmt: skip
    assert finish(runtime, run_id) is RunState.FAILED
    some = runtime.store.get_task(run_id, "some")
    assert some.outputs == {
        "rows": [
            {"id": 1, "price": "1.5", "nothing": None, "day": "2024-01-02"},
            {"id": 2, "price": "3.0", "nothing": None, "day": "2024-01-03"},
            {"id": 3, "price": "4.5", "nothing": None, "day": "2024-01-04"},
        ],
        "row_count": 3,
    }
    # what a template sees of them is the JSON the README promises
    shown = runtime.store.get_task(run_id, "shown").outputs["json"]
    assert json.loads(shown) == some.outputs["rows"]
    assert runtime.store.get_task(run_id, "exactly").outputs == {"row_count": 5000}
    many = runtime.store.get_task(run_id, "too_many")
    assert many.state.value == "failed"
    assert f"at most {MAX_ROWS:,}" in (many.error or "")
    big = runtime.store.get_task(run_id, "too_big")
    assert f"at most {MAX_ROWS_BYTES:,} bytes" in (big.error or "")


def test_a_missing_connection_fails_the_run_naming_it(runtime: LocalRuntime) -> None:
    run_id = start(runtime, """
name: nowhere
tasks:
  q: {type: sql, connection: warehouse, sql: "SELECT 1"}
""")  # fmt: skip
    assert finish(runtime, run_id) is RunState.FAILED
    task = runtime.store.get_task(run_id, "q")
    assert "connection 'warehouse' is not defined in project 'default'" in (task.error or "")
    assert task.attempt == 1  # not retried: nothing would change


def test_the_password_is_a_secret_resolved_only_at_the_executor(
    runtime: LocalRuntime, pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trust auth accepts any password: the secret must be set for the task to start at all
    add_connection(runtime, "wh", "postgresql", url=pg_db, password="{{ secrets.pg_pw }}")
    text = "name: pw\ntasks:\n  q: {type: sql, connection: wh, sql: 'SELECT 1 AS one'}\n"
    run_id = start(runtime, text)
    assert finish(runtime, run_id) is RunState.FAILED
    assert "secret 'pg_pw' is not set" in (runtime.store.get_task(run_id, "q").error or "")
    runtime.secrets.put("default", "pg_pw", "s3cret-value")
    run_id = start(runtime, text)
    assert finish(runtime, run_id) is RunState.SUCCEEDED
    assert runtime.store.get_task(run_id, "q").outputs == {"one": "1", "row_count": 1}
    assert runtime.connections.get("default", "wh").settings["password"] == "{{ secrets.pg_pw }}"


def test_sql_file_from_the_working_directory(runtime: LocalRuntime, pg_db: str) -> None:
    add_connection(runtime, "wh", "postgresql", url=pg_db)
    run_id = start(runtime, """
name: fromfile
tasks:
  q: {type: sql, connection: wh, sql_file: queries/count.sql}
""")  # fmt: skip
    assert finish(runtime, run_id) is RunState.FAILED
    error = runtime.store.get_task(run_id, "q").error or ""
    assert "sql_file 'queries/count.sql' is not in the task's working directory" in error


def test_sql_file_from_the_projects_resources_in_the_version_the_run_pinned(
    runtime: LocalRuntime, pg_db: str
) -> None:
    """A DolphinScheduler user keeps the script in the resource centre: ``sql_file`` names a
    file the task lists in ``resources``; its parameters are bound as for inline SQL, and the
    run reads the version it pinned, not one uploaded after it was created."""
    add_connection(runtime, "wh", "postgresql", url=pg_db)
    prepare(runtime, "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (2)")
    runtime.resources.put(
        "default", "queries/count.sql", b"SELECT count(*) AS n FROM t WHERE x = %(x)s"
    )
    run_id = start(runtime, """
name: fromresource
tasks:
  q:
    type: sql
    connection: wh
    resources: [queries/count.sql]
    sql_file: queries/count.sql
    parameters: {x: 2}
""")  # fmt: skip
    runtime.resources.put("default", "queries/count.sql", b"SELECT 999 AS n")  # after the pin
    assert finish(runtime, run_id) is RunState.SUCCEEDED, runtime.store.get_tasks(run_id)
    assert runtime.store.get_task(run_id, "q").outputs == {"n": "2", "row_count": 1}
    assert runtime.resources.pins(run_id) == {"queries/count.sql": "1"}


def _backends(url: str, marker: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
            (f"%{marker}%",),
        ).fetchall()
    return [r[0] for r in rows]


def _drive(rt: LocalRuntime, check: object, timeout: float = 20) -> bool:
    """Run the scheduler until ``check()`` holds."""
    deadline = time.monotonic() + timeout
    rt.run_until(lambda: check() or time.monotonic() > deadline)  # type: ignore[operator]
    return bool(check())  # type: ignore[operator]


def test_the_timeout_cancels_the_query_on_the_server(runtime: LocalRuntime, pg_db: str) -> None:
    # 8 s: room for the task runner's start on a loaded machine; the query asks for 60
    add_connection(runtime, "wh", "postgresql", url=pg_db)
    run_id = start(runtime, """
name: slow
tasks:
  q: {type: sql, connection: wh, timeout: 8s, sql: "SELECT pg_sleep(60) /* sf-timeout-marker */"}
""")  # fmt: skip
    assert _drive(runtime, lambda: bool(_backends(pg_db, "sf-timeout-marker")))
    assert finish(runtime, run_id, timeout=30) is RunState.FAILED
    # gone at once, not after the 60 s the statement asked for
    assert wait_for(lambda: not _backends(pg_db, "sf-timeout-marker"), timeout=5)
    assert "cancelling the query on the server" in log_of(runtime, run_id, "q")


def test_a_stop_of_the_run_cancels_the_query_on_the_server(
    runtime: LocalRuntime, pg_db: str
) -> None:
    add_connection(runtime, "wh", "postgresql", url=pg_db)
    run_id = start(runtime, """
name: stopped
tasks:
  q: {type: sql, connection: wh, sql: "SELECT pg_sleep(60) /* sf-stop-marker */"}
""")  # fmt: skip
    assert _drive(runtime, lambda: bool(_backends(pg_db, "sf-stop-marker")))
    runtime.scheduler.stop(run_id)
    assert finish(runtime, run_id, timeout=30) is RunState.STOPPED
    assert wait_for(lambda: not _backends(pg_db, "sf-stop-marker"), timeout=5)
    assert "cancelling the query on the server" in log_of(runtime, run_id, "q")


def test_mysql_timeout_kills_the_query(runtime: LocalRuntime, mysql_db: str) -> None:
    add_connection(runtime, "wh", "mysql", url=mysql_db)
    run_id = start(runtime, """
name: slow
tasks:
  q: {type: sql, connection: wh, timeout: 8s, sql: "SELECT SLEEP(60) /* sf-my-marker */"}
""")  # fmt: skip
    admin = mysql_admin(mysql_db)

    def running() -> bool:
        with admin.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute("SELECT count(*) FROM information_schema.processlist "
                        "WHERE info LIKE '%sf-my-marker%' AND id <> CONNECTION_ID()")  # fmt: skip
            return bool(cur.fetchone()[0])

    assert _drive(runtime, running)
    assert finish(runtime, run_id, timeout=30) is RunState.FAILED
    assert wait_for(lambda: not running(), timeout=5)
    admin.close()  # type: ignore[attr-defined]
