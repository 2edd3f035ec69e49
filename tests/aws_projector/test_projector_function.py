"""functions/projector/app.py: the Lambda handler wired to the real DynamoStore (moto, with
its stream) and to the read model through the RDS Data API.

No Aurora here: the Data API client is the real boto3 one under botocore's ``Stubber`` (moto
has no BatchExecuteStatement or transactions), which validates every request against the
service model; the statements and parameter sets the handler sends are captured from
botocore's own request hook and compared with what the store holds. The SQL itself runs on
SQLite and PostgreSQL in the other tests.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from stratoflow.engine import Upstream
from stratoflow.readmodel import load_migrations
from stratoflow.readmodel._projection import UPSERT_ATTEMPT, UPSERT_RUN, UPSERT_TASK
from stratoflow.readmodel._records import attempt_row, run_row, task_row
from tests.aws_projector.conftest import Env
from tests.aws_projector.test_stream_projector import ETL, drive

REPO = Path(__file__).resolve().parents[2]
ARN = "arn:aws:rds:us-east-1:123456789012:cluster:readmodel"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rm"


class FakeContext:
    function_name = "stratoflow-projector"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stratoflow-projector"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def app(env: Env, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {
        "STRATOFLOW_TABLE": env.table,
        "STRATOFLOW_DB_CLUSTER_ARN": ARN,
        "STRATOFLOW_DB_SECRET_ARN": SECRET,
        "STRATOFLOW_DB_NAME": "stratoflow",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "stratoflow",
        "POWERTOOLS_METRICS_NAMESPACE": "Stratoflow",
    }.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "projector_app", REPO / "functions/projector/app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "projector_app", module)
    spec.loader.exec_module(module)
    return module


def stub_migration_check(stub: Stubber) -> None:
    """The cold-start migration on a database that has every migration already."""
    for migration in load_migrations():
        stub.add_response("begin_transaction", {"transactionId": f"m{migration.version}"})
        stub.add_response("execute_statement", {"records": [], "columnMetadata": []})  # lock
        stub.add_response("execute_statement", {"numberOfRecordsUpdated": 0})  # CREATE IF NOT
        stub.add_response(
            "execute_statement",
            {
                "records": [
                    [{"longValue": m.version}, {"stringValue": m.checksum}]
                    for m in load_migrations()
                ],
                "columnMetadata": [{"name": "version"}, {"name": "checksum"}],
            },
        )
        stub.add_response("commit_transaction", {"transactionStatus": "Transaction Committed"})


def test_the_handler_projects_a_stream_batch_through_the_data_api(
    env: Env, app: Any, capsys: Any
) -> None:
    # GIVEN a finished run in the store and its stream records
    env.scheduler.apply(ETL)
    env.scheduler.trigger("analytics", "etl", run_id="etl-1")
    drive(env, "etl-1")
    records = env.stream.read()
    client = app.projector.readmodel.db.client
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.rds-data.BatchExecuteStatement",
        lambda params, **_: sent.append(dict(params)),
    )
    with Stubber(client) as stub:
        stub_migration_check(stub)
        stub.add_response("begin_transaction", {"transactionId": "tx1"})
        for _ in range(5):  # versions, workflows, runs, tasks, attempts
            stub.add_response("batch_execute_statement", {"updateResults": []})
        stub.add_response(
            "commit_transaction",
            {"transactionStatus": "Transaction Committed"},
            {"resourceArn": ARN, "secretArn": SECRET, "transactionId": "tx1"},
        )
        # WHEN Lambda hands the batch to the function
        response = app.handler({"Records": records}, FakeContext())
        stub.assert_no_pending_responses()

    # THEN no record failed, every statement ran in the one transaction
    assert response == {"batchItemFailures": []}
    assert {s["transactionId"] for s in sent} == {"tx1"}
    by_sql = {s["sql"]: s["parameterSets"] for s in sent}

    def sent_rows(sql: str) -> list[dict[str, Any]]:
        """The parameter sets of one statement, decoded (NULL travels as isNull)."""
        return sorted(
            (
                {
                    p["name"]: None if "isNull" in p["value"] else next(iter(p["value"].values()))
                    for p in params
                    if p["name"] != "rev"
                }
                for params in by_sql[sql]
            ),
            key=repr,
        )

    def store_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(({k: v for k, v in r.items() if k != "rev"} for r in rows), key=repr)

    # AND the rows sent are the store's run, tasks and attempts
    store = env.store
    assert sent_rows(UPSERT_RUN) == store_rows([run_row(store.get_run("etl-1"), 0)])
    tasks = [task_row(t.with_(upstream=Upstream()), 0) for t in store.get_tasks("etl-1")]
    assert sent_rows(UPSERT_TASK) == store_rows(tasks)
    assert len(tasks) == 5
    attempts = [attempt_row(a, 0) for a in store.list_attempts("etl-1")]
    assert sent_rows(UPSERT_ATTEMPT) == store_rows(attempts)
    assert len(attempts) == 7
    # AND the metrics went out as EMF
    printed = capsys.readouterr().out
    assert "RecordsProjected" in printed
    assert "StreamLag" in printed


def test_a_migrate_event_migrates_and_reports_what_it_applied(app: Any) -> None:
    client = app.projector.readmodel.db.client
    with Stubber(client) as stub:
        stub_migration_check(stub)
        assert app.handler({"action": "migrate"}, FakeContext()) == {"migrated": []}
        stub.assert_no_pending_responses()


def test_a_replay_audit_event_needs_an_aware_time_and_reports_what_it_delivered(
    app: Any,
) -> None:
    with pytest.raises(ValueError, match="names no time zone"):
        app.handler({"action": "replay-audit", "since": "2026-11-21T00:00:00"}, FakeContext())
    # an empty journal: nothing to deliver, and no statement sent (the stub has no response)
    client = app.projector.readmodel.db.client
    with Stubber(client) as stub:
        event = {"action": "replay-audit", "since": "2026-11-21T00:00:00+00:00"}
        assert app.handler(event, FakeContext()) == {"replayed": 0}
        stub.assert_no_pending_responses()
