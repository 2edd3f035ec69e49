"""The RDS Data API adapter (Aurora Serverless v2 PostgreSQL, no VPC).

No Aurora here: the nearest real boundaries are used. moto's rds-data backend answers
``ExecuteStatement`` with results queued through its API
(``/moto-api/static/rds-data/statement-results``), so the tests check the SQL and typed
parameters the adapter sends (captured from botocore's request hook) and the decoding of
what comes back. moto does not implement ``BatchExecuteStatement`` or transactions: those
calls are checked with botocore's ``Stubber``, which validates each request against the
service model. The SQL itself is the SQL the PostgreSQL tests run on a real server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.stub import ANY, Stubber
from moto import mock_aws

from stratoflow.engine import RunState
from stratoflow.errors import Unavailable
from stratoflow.faults import machine_fault
from stratoflow.readmodel import Change, DataApiDatabase, ReadModel, load_migrations, migrate
from stratoflow.readmodel._db import MIGRATION_LOCK_KEY, data_api_parameter, decode_records
from stratoflow.readmodel._projection import UPSERT_RUN
from stratoflow.readmodel._records import run_row
from tests.readmodel import factories as f

ARN = "arn:aws:rds:us-east-1:123456789012:cluster:readmodel"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rm"
BASE = {"resourceArn": ARN, "secretArn": SECRET, "database": "stratoflow"}
RESULTS_URL = "http://motoapi.amazonaws.com/moto-api/static/rds-data/statement-results"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def moto_client(aws_env: None) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """An rds-data client on moto, and the list of ExecuteStatement requests it sent."""
    with mock_aws():
        client = boto3.client("rds-data", region_name="us-east-1")
        sent: list[dict[str, Any]] = []
        client.meta.events.register(
            "provide-client-params.rds-data.ExecuteStatement",
            lambda params, **_: sent.append(dict(params)),
        )
        yield client, sent


def queue_result(result: dict[str, Any]) -> None:
    """moto pops its queue from the end: queue one result right before the call it answers."""
    resp = requests.post(RESULTS_URL, json={"results": [result]}, timeout=5)
    assert resp.status_code == 201


RUN_META = [
    {"name": n, "typeName": t}
    for n, t in [
        ("id", "text"), ("project", "text"), ("workflow", "text"), ("workflow_version", "int4"),
        ("state", "text"), ("params", "text"), ("logical_date", "text"), ("created_at", "text"),
        ("started_at", "text"), ("ended_at", "text"), ("run_trigger", "text"),
        ("n_tasks", "int4"), ("n_done", "int4"), ("n_failed", "int4"), ("n_running", "int4"),
        ("error", "text"), ("parent", "text"),
    ]
]  # fmt: skip


def typed(value: Any) -> dict[str, Any]:
    return data_api_parameter("x", value)["value"]


def test_a_query_sends_named_typed_parameters_and_decodes_typed_records(
    moto_client: tuple[Any, list[dict[str, Any]]],
) -> None:
    client, sent = moto_client
    db = DataApiDatabase(client, ARN, SECRET, "stratoflow")
    run = f.run("r1", state=RunState.FAILED, n_tasks=2, n_failed=1, error="boom")
    row = run_row(run, 7)
    queue_result(
        {
            "records": [[typed(row[m["name"]]) for m in RUN_META]],
            "columnMetadata": RUN_META,
        }
    )
    # WHEN the ReadModel asks for a run through the Data API
    got = ReadModel(db, apply_migrations=False).run("r1")
    # THEN the typed record decodes to the same domain object
    assert got == run
    # AND the request carried the statement, the named parameter, and asked for metadata
    (request,) = sent
    assert request["sql"].startswith("SELECT id, project, workflow, workflow_version")
    assert request["sql"].endswith("FROM runs WHERE id = :id")
    assert request["parameters"] == [{"name": "id", "value": {"stringValue": "r1"}}]
    assert request["includeResultMetadata"] is True
    assert {k: request[k] for k in BASE} == BASE


def test_json_formatted_records_are_decoded(
    moto_client: tuple[Any, list[dict[str, Any]]],
) -> None:
    client, sent = moto_client
    db = DataApiDatabase(client, ARN, SECRET, "stratoflow", records_as="json")
    run = f.run("r2", started_at=f.T0)
    row = {k: v for k, v in run_row(run, 1).items() if k != "rev"}
    queue_result({"formattedRecords": json.dumps([row])})
    assert ReadModel(db, apply_migrations=False).run("r2") == run
    assert sent[0]["formatRecordsAs"] == "JSON"
    assert "includeResultMetadata" not in sent[0]


def test_list_runs_filters_become_named_parameters(
    moto_client: tuple[Any, list[dict[str, Any]]],
) -> None:
    from stratoflow.readmodel import RunFilter

    client, sent = moto_client
    rm = ReadModel(DataApiDatabase(client, ARN, SECRET, "stratoflow"), apply_migrations=False)
    page = rm.list_runs(
        RunFilter(project="p", workflow="w", states=[RunState.FAILED], created_from=f.T0), limit=5
    )
    assert page.items == []  # moto answers an empty result when nothing is queued
    (request,) = sent
    assert request["sql"] == (
        "SELECT id, project, workflow, workflow_version, state, params, logical_date, "
        "created_at, started_at, ended_at, run_trigger, n_tasks, n_done, n_failed, n_running, "
        "error, parent FROM runs WHERE project = :project AND workflow = :workflow AND state IN (:s0) "
        "AND created_at >= :t2 ORDER BY created_at DESC, id DESC LIMIT :limit"
    )
    assert sorted(request["parameters"], key=lambda p: p["name"]) == [
        {"name": "limit", "value": {"longValue": 6}},
        {"name": "project", "value": {"stringValue": "p"}},
        {"name": "s0", "value": {"stringValue": "failed"}},
        {"name": "t2", "value": {"stringValue": "2026-03-01T12:00:00.123456Z"}},
        {"name": "workflow", "value": {"stringValue": "w"}},
    ]


def test_typed_fields_of_every_kind_decode() -> None:
    rows = decode_records(
        {
            "columnMetadata": [{"name": n} for n in "abcdefg"] + [{"name": "x", "label": "h"}],
            "records": [
                [
                    {"stringValue": "s"},
                    {"longValue": 7},
                    {"doubleValue": 1.5},
                    {"booleanValue": True},
                    {"isNull": True},
                    {"arrayValue": {"longValues": [1, 2]}},
                    {"arrayValue": {"arrayValues": [{"stringValues": ["a"]}]}},
                    {"blobValue": b"\x00"},
                ]
            ],
        }
    )
    assert rows == [
        {"a": "s", "b": 7, "c": 1.5, "d": True, "e": None, "f": [1, 2], "g": [["a"]], "h": b"\x00"}
    ]
    assert decode_records({"records": []}) == []
    with pytest.raises(ValueError, match="columnMetadata"):
        decode_records({"records": [[{"longValue": 1}]]})
    with pytest.raises(ValueError, match="unknown Data API field"):
        decode_records({"columnMetadata": [{"name": "a"}], "records": [[{"structValue": {}}]]})
    with pytest.raises(ValueError, match="not a JSON array"):
        decode_records({"formattedRecords": '{"a": 1}'})
    with pytest.raises(TypeError, match="parameter 'when': datetime cannot be sent"):
        data_api_parameter("when", f.T0)
    assert data_api_parameter("b", False) == {"name": "b", "value": {"booleanValue": False}}
    assert data_api_parameter("d", 0.5) == {"name": "d", "value": {"doubleValue": 0.5}}
    assert data_api_parameter("n", None) == {"name": "n", "value": {"isNull": True}}


@pytest.fixture
def stubbed(aws_env: None) -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("rds-data", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_a_projection_batch_is_one_transaction_of_batch_statements(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stub = stubbed
    db = DataApiDatabase(client, ARN, SECRET, "stratoflow")
    runs = [f.run(f"r{i}", minute=i) for i in range(3)]
    stub.add_response("begin_transaction", {"transactionId": "tx1"}, BASE)
    stub.add_response(
        "batch_execute_statement",
        {"updateResults": [{}, {}, {}]},
        {
            **BASE,
            "sql": UPSERT_RUN,
            "transactionId": "tx1",
            "parameterSets": [
                [data_api_parameter(k, v) for k, v in run_row(r, 5).items()] for r in runs
            ],
        },
    )
    stub.add_response(
        "commit_transaction",
        {"transactionStatus": "Transaction Committed"},
        {"resourceArn": ARN, "secretArn": SECRET, "transactionId": "tx1"},
    )
    # duplicates within the batch collapse to the highest revision before anything is sent
    offered = ReadModel(db, apply_migrations=False).apply(
        [Change(5, r) for r in runs] + [Change(1, runs[0].with_(state=RunState.FAILED))]
    )
    assert offered == 3


def test_a_failed_statement_rolls_the_transaction_back(stubbed: tuple[Any, Stubber]) -> None:
    client, stub = stubbed
    db = DataApiDatabase(client, ARN, SECRET, "stratoflow")
    stub.add_response("begin_transaction", {"transactionId": "tx9"}, BASE)
    stub.add_client_error(
        "batch_execute_statement", service_error_code="BadRequestException", http_status_code=400
    )
    stub.add_response(
        "rollback_transaction",
        {"transactionStatus": "Rollback Complete"},
        {"resourceArn": ARN, "secretArn": SECRET, "transactionId": "tx9"},
    )
    with pytest.raises(client.exceptions.BadRequestException):
        ReadModel(db, apply_migrations=False).apply([Change(1, f.run())])


def test_a_resuming_cluster_is_waited_for(stubbed: tuple[Any, Stubber]) -> None:
    """Aurora at 0 ACU answers DatabaseResumingException while it wakes up."""
    client, stub = stubbed
    slept: list[float] = []
    db = DataApiDatabase(client, ARN, SECRET, "stratoflow", sleep=slept.append)
    for _ in range(2):
        stub.add_client_error(
            "execute_statement",
            service_error_code="DatabaseResumingException",
            http_status_code=400,
        )
    stub.add_response("execute_statement", {"numberOfRecordsUpdated": 2})
    assert db.execute("UPDATE runs SET state = :s", {"s": "failed"}) == 2
    assert slept == [0.5, 1.0]
    # and gives up after resume_wait
    impatient = DataApiDatabase(
        client, ARN, SECRET, "stratoflow", resume_wait=0, sleep=slept.append
    )
    stub.add_client_error(
        "execute_statement", service_error_code="DatabaseResumingException", http_status_code=400
    )
    with pytest.raises(client.exceptions.DatabaseResumingException):
        impatient.execute("SELECT 1")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("DatabaseResumingException", 400),  # still waking after resume_wait
        ("DatabaseUnavailableException", 504),
        ("ServiceUnavailableError", 503),
        ("InternalServerErrorException", 500),
    ],
)
def test_an_aurora_that_cannot_answer_is_unavailable_not_a_bug(
    stubbed: tuple[Any, Stubber], code: str, status: int
) -> None:
    """The API's lists on AWS read Aurora: a cluster that cannot answer now is a 503 with
    Retry-After (the machine's fault), not an internal error; a bad statement stays a bug."""
    client, stub = stubbed
    db = DataApiDatabase(client, ARN, SECRET, "stratoflow", resume_wait=0)
    stub.add_client_error("execute_statement", service_error_code=code, http_status_code=status)
    with pytest.raises(client.exceptions.ClientError) as down:
        db.query("SELECT 1")
    assert isinstance(machine_fault(down.value), Unavailable)
    stub.add_client_error(
        "execute_statement", service_error_code="BadRequestException", http_status_code=400
    )
    with pytest.raises(client.exceptions.BadRequestException) as bad:
        db.query("SELECT nonsense")
    assert machine_fault(bad.value) is None


def test_migrations_run_statement_by_statement_under_the_advisory_lock(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stub = stubbed
    db = DataApiDatabase(client, ARN, SECRET, "stratoflow", records_as="json")
    sent: list[str] = []
    client.meta.events.register(
        "provide-client-params.rds-data.ExecuteStatement",
        lambda params, **_: sent.append(params["sql"]),
    )
    migration = load_migrations()[0]  # one migration's statements, in its transaction
    stub.add_response("begin_transaction", {"transactionId": "tx"}, BASE)
    stub.add_response(
        "execute_statement",
        {"formattedRecords": "[{}]"},
        {
            **BASE,
            "sql": "SELECT pg_advisory_xact_lock(:key)",
            "parameters": [{"name": "key", "value": {"longValue": MIGRATION_LOCK_KEY}}],
            "transactionId": "tx",
            "formatRecordsAs": "JSON",
        },
    )
    stub.add_response("execute_statement", {"numberOfRecordsUpdated": 0})  # schema_migrations
    stub.add_response("execute_statement", {"formattedRecords": "[]"})  # nothing applied yet
    for _ in migration.statements():
        stub.add_response("execute_statement", {"numberOfRecordsUpdated": 0})
    stub.add_response(
        "execute_statement",
        {"numberOfRecordsUpdated": 1},
        {**BASE, "sql": ANY, "parameters": ANY, "transactionId": "tx", "formatRecordsAs": "JSON"},
    )
    stub.add_response("commit_transaction", {"transactionStatus": "Transaction Committed"})
    assert migrate(db, [migration]) == [1]
    assert sent[3:-1] == migration.statements()
    assert sent[1].startswith("CREATE TABLE IF NOT EXISTS schema_migrations")
    assert sent[-1].startswith("INSERT INTO schema_migrations")


def test_from_env_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("STRATOFLOW_DB_CLUSTER_ARN", "STRATOFLOW_DB_SECRET_ARN", "STRATOFLOW_DB_NAME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("STRATOFLOW_DB_NAME", "stratoflow")
    with pytest.raises(RuntimeError, match="STRATOFLOW_DB_CLUSTER_ARN, STRATOFLOW_DB_SECRET_ARN"):
        DataApiDatabase.from_env(client=object())  # type: ignore[arg-type]
    monkeypatch.setenv("STRATOFLOW_DB_CLUSTER_ARN", ARN)
    monkeypatch.setenv("STRATOFLOW_DB_SECRET_ARN", SECRET)
    db = DataApiDatabase.from_env(client=object())  # type: ignore[arg-type]
    assert db.base == BASE
