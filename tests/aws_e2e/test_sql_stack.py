"""sql tasks on the whole AWS stack (moto): a connection and its password's secret set through
the api function, a workflow whose sql task loads and counts rows in the real PostgreSQL on
the project's runner, the count passed to the next task; the password is in no execution
input; a task whose connection is missing fails at once, naming it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from stratoflow.adapters.aws import runner as aws_runner
from stratoflow.adapters.aws.secrets import SecretsManagerSource
from tests.aws_e2e.harness import REGION, Stack, aws_stack
from tests.sql.conftest import pg_db  # noqa: F401 - a fixture, used through request

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:No application metrics")]

PASSWORD = f"pw-{uuid.uuid4().hex}"  # trust auth takes any: the runner must have resolved it
WORKFLOW = """
name: counted
params: {region: eu}
tasks:
  load:
    type: sql
    connection: wh
    outputs: none
    sql: "CREATE TABLE s (region text); INSERT INTO s VALUES ('eu'), ('eu'), ('us')"
  count:
    type: sql
    connection: wh
    depends_on: [load]
    sql: "SELECT count(*) AS n FROM s WHERE region = %(region)s"
    parameters: {region: "{{ params.region }}"}
  report:
    type: shell
    depends_on: [count]
    command: echo "n={{ tasks.count.outputs.n }}" >> "$STRATOFLOW_OUTPUT"
  elsewhere:
    type: sql
    connection: gone
    sql: "SELECT 1"
"""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        yield built


def test_sql_tasks_run_on_the_runner_with_their_connection(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_db")
    manager = boto3.client("secretsmanager", region_name=REGION)
    s3 = stack.counted_client("s3")
    stack.lambdas.handlers["RunnerFunction"] = lambda attempt: aws_runner.handle(
        attempt, None, s3=s3, secrets=SecretsManagerSource(manager, "stratoflow/")
    )

    def api(method: str, path: str, body: Any = None, **query: str) -> Any:
        status, reply = stack.api(method, path, body, query or None)
        assert status < 300, (status, reply)
        return reply

    api("PUT", "/secrets/wh_pw", {"value": PASSWORD}, project="default")
    api("PUT", "/connections/wh", {"type": "postgresql", "settings": {
        "url": url, "password": "{{ secrets.wh_pw }}"}}, project="default")  # fmt: skip
    api("POST", "/workflows", {"source": WORKFLOW})
    run_id = api("POST", "/workflows/counted/runs", {})["run"]["id"]
    stack.deliver_kicks()
    assert stack.run_ends(run_id) == "failed"  # `elsewhere` names a missing connection
    tasks = api("GET", f"/runs/{run_id}")["tasks"]
    assert tasks["load"]["outputs"] == {"row_count": 3}
    assert tasks["count"]["outputs"] == {"n": "2", "row_count": 1}
    assert tasks["report"]["outputs"] == {"n": "2"}
    assert tasks["elsewhere"]["state"] == "failed"
    assert "connection 'gone' is not defined in project 'default'" in tasks["elsewhere"]["error"]
    inputs = [stack.execution_input(name) for name in stack.starts]
    count = next(i for i in inputs if i["task_id"] == "count")
    assert count["task"]["__connection"]["settings"]["password"] == "{{ secrets.wh_pw }}"
    assert PASSWORD not in json.dumps([inputs, stack.histories()], default=str)
