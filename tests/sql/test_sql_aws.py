"""The AWS connection types of ``type: sql`` on moto: Athena (results queued in moto),
Redshift Data and the RDS Data API. Parameters go as the service's parameters, never into the
SQL; the query id and row count come back; a stop cancels the query on the service."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws
from moto.athena.models import QueryResults, athena_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api import state_manager
from moto.redshiftdata.models import redshiftdata_backends

from stratoflow.taskexec.sql import SqlFailed, execute
from stratoflow.taskexec.sql_aws import placeholders

REGION = "us-east-1"
EVIL = "'; DROP TABLE x; --"
ATHENA = {"database": "sales", "workgroup": "primary", "output_location": "s3://out/q/",
          "region": REGION}  # fmt: skip
REDSHIFT = {"database": "dev", "cluster_identifier": "dw", "db_user": "etl", "region": REGION}
ARN = "arn:aws:rds:us-east-1:123456789012:cluster:dw"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dw-AbCdEf"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def test_placeholders_become_the_services_own() -> None:
    sql = "SELECT * FROM t WHERE a = %(a)s AND b LIKE 'x%%' AND c = %(a)s"
    assert placeholders(sql, {"a": 1}, "qmark") == (
        "SELECT * FROM t WHERE a = ? AND b LIKE 'x%' AND c = ?", ["a", "a"])  # fmt: skip
    assert placeholders(sql, {"a": 1}, "named")[0] == (
        "SELECT * FROM t WHERE a = :a AND b LIKE 'x%' AND c = :a")  # fmt: skip
    assert placeholders("SELECT 100 % 7", None, "named") == ("SELECT 100 % 7", [])
    with pytest.raises(SqlFailed, match="parameters has no 'b'"):
        placeholders("SELECT %(b)s", {"a": 1}, "qmark")


def _athena_backend() -> Any:
    return athena_backends[DEFAULT_ACCOUNT_ID][REGION]


def test_athena_first_row_rows_the_query_id_and_bound_parameters(aws: None) -> None:
    header = {"Data": [{"VarCharValue": "n"}, {"VarCharValue": "region"}]}
    rows = [{"Data": [{"VarCharValue": str(i)}, {"VarCharValue": "eu"}]} for i in (7, 8)]
    columns = [{"Name": "n", "Type": "bigint"}, {"Name": "region", "Type": "varchar"}]
    _athena_backend().query_results_queue.append(QueryResults([header, *rows], columns))
    sql = "SELECT n, region FROM sales WHERE region = %(region)s AND ds = %(ds)s"
    lines: list[str] = []
    got = execute("athena", ATHENA, sql, {"region": EVIL, "ds": "2024-05-01"}, "rows",
                  log=lines.append)  # fmt: skip
    assert got["rows"] == [{"n": "7", "region": "eu"}, {"n": "8", "region": "eu"}]
    assert got["row_count"] == 2
    [execution] = _athena_backend().executions.values()
    assert got["query_id"] == execution.id
    assert f"query_id={execution.id}" in lines  # the attempt's log has them too
    assert any(line.endswith("row_count=2") for line in lines), lines
    assert execution.query == "SELECT n, region FROM sales WHERE region = ? AND ds = ?"
    assert execution.execution_parameters == ["'''; DROP TABLE x; --'", "'2024-05-01'"]
    assert execution.workgroup.name == "primary"


def test_athena_a_stop_cancels_the_query(aws: None) -> None:
    # the query never ends by itself: moto moves it on only when asked 1,000 times
    state_manager.set_transition("athena::execution", {"progression": "manual", "times": 1000})
    try:
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        with pytest.raises(SqlFailed, match="cancelled on the server"):
            execute("athena", ATHENA, "SELECT 1", None, "none", stop=stop, log=lambda _: None)
        [execution] = _athena_backend().executions.values()
        assert execution.status == "CANCELLED"
    finally:
        state_manager.unset_transition("athena::execution")


def _statement() -> Any:
    backend = redshiftdata_backends[DEFAULT_ACCOUNT_ID][REGION]
    # the driver's first client takes seconds on a loaded machine (5 s ran out at load 20, and
    # the statement then never finished: the test hung until its timeout)
    deadline = time.monotonic() + 60
    while not backend.statements and time.monotonic() < deadline:
        time.sleep(0.01)
    return next(iter(backend.statements.values()))


def test_redshift_data_named_parameters_the_result_and_the_statement_id(aws: None) -> None:
    def finish() -> None:
        statement = _statement()
        statement.has_result_set = True
        statement.status = "FINISHED"

    threading.Thread(target=finish).start()
    sql = "SELECT * FROM addresses WHERE city <> %(city)s"
    lines: list[str] = []
    got = execute("redshift-data", REDSHIFT, sql, {"city": EVIL}, "first_row", log=lines.append)
    statement = _statement()
    assert f"query_id={statement.id}" in lines  # the attempt's log has them too
    assert any(line.endswith("row_count=3") for line in lines), lines
    # moto answers every statement with the same three addresses
    assert got == {"Number": "10", "Street": "Alpha st", "City": "Vancouver", "row_count": 3,
                   "query_id": statement.id}  # fmt: skip
    assert statement.query_string == "SELECT * FROM addresses WHERE city <> :city"
    assert statement.query_parameters == [{"name": "city", "value": EVIL}]


def test_redshift_data_a_stop_cancels_the_statement(aws: None) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(SqlFailed, match="cancelled on the server"):
        execute("redshift-data", REDSHIFT, "SELECT pg_sleep(60)", None, "none", stop=stop,
                log=lambda _: None)  # fmt: skip
    assert _statement().status == "ABORTED"


def test_aurora_data_api_typed_parameters_and_records(aws: None) -> None:
    sent: list[dict[str, Any]] = []
    # the driver makes its client from boto3's default session: record what it sends
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("provide-client-params.rds-data.ExecuteStatement",
                                          lambda params, **_: sent.append(dict(params)))  # fmt: skip
    result = {"records": [[{"longValue": 3}, {"stringValue": "eu"}, {"isNull": True}]],
              "columnMetadata": [{"name": "n", "label": "n"}, {"name": "region", "label": "region"},
                                 {"name": "note", "label": "note"}]}  # fmt: skip
    resp = requests.post("http://motoapi.amazonaws.com/moto-api/static/rds-data/statement-results",
                         json={"results": [result]}, timeout=5)  # fmt: skip
    assert resp.status_code == 201
    settings = {"resource_arn": ARN, "secret_arn": SECRET, "database": "dw", "region": REGION}
    got = execute("aurora-data-api", settings, "SELECT n, region, note FROM t WHERE r = %(r)s "
                  "AND k = %(k)s", {"r": EVIL, "k": 5}, "first_row", log=lambda _: None)  # fmt: skip
    assert got == {"n": "3", "region": "eu", "note": "", "row_count": 1}
    [request] = sent
    assert request["sql"] == "SELECT n, region, note FROM t WHERE r = :r AND k = :k"
    assert request["parameters"] == [{"name": "r", "value": {"stringValue": EVIL}},
                                     {"name": "k", "value": {"longValue": 5}}]  # fmt: skip
    assert (request["resourceArn"], request["secretArn"], request["database"]) == (
        ARN,
        SECRET,
        "dw",
    )
    boto3.DEFAULT_SESSION = None
