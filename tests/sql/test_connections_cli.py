"""``stratoflow connections ...`` through the API of a local server: a literal password or a
URL carrying one refused (exit 2 / 400 naming the setting, nothing stored), add / list / show
/ test / delete, the audit log without credentials, and the routes in the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from stratoflow.adapters.local.connections import LocalConnections
from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.connections import validate_connection
from stratoflow.errors import InvalidInput
from tests.cli_server import Server, serving

PASSWORD = "pw-CANARY-0001-zz"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.delenv("STRATOFLOW_TOKEN", raising=False)
    rt = LocalRuntime(tmp_path / "home")
    backend = LocalConnections(rt.connections, rt.secret_source, rt.clock)
    with serving(rt, connections=backend) as server:
        yield server


@pytest.mark.parametrize(
    ("settings", "field", "words"),
    [
        ([f"url=postgresql://app:{PASSWORD}@db:5432/dw"], "--setting url", "carries a password"),
        (["url=postgresql://app@db:5432/dw", f"password={PASSWORD}"], "--setting password",
         "secret reference"),
        (["url=postgresql://app@db:5432/dw", "colour=red"], "--setting colour", "unknown setting"),
        (["url=mysql://app@db/dw"], "--setting url", "postgresql://USER@HOST:PORT/DB"),
        ([], "--setting url", "required"),
        (["url=postgresql://app@db/dw", "sslmode={{ secrets.x }}"], "--setting sslmode",
         "not a credential"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_naming_the_setting_and_nothing_is_stored(
    server: Server, settings: list[str], field: str, words: str
) -> None:
    args = [a for s in settings for a in ("--setting", s)]
    code, out = server.run("connections", "add", "wh", "--type", "postgresql", *args)
    assert code == 2, out
    assert field in out  # the option the user typed (or would type), not the body's field
    assert "settings." not in out
    assert words in out
    assert PASSWORD not in out
    code, out = server.run("connections", "list", "--output", "json")
    assert (code, json.loads(out)) == (0, {"connections": []})


def test_other_types_are_validated_too() -> None:
    with pytest.raises(InvalidInput, match="exactly one of cluster_identifier or workgroup_name"):
        validate_connection("p", "rs", "redshift-data", {"database": "dev"})
    with pytest.raises(InvalidInput, match=r"settings\.resource_arn: required"):
        validate_connection("p", "au", "aurora-data-api", {"secret_arn": "x"})
    with pytest.raises(InvalidInput, match=r"settings\.output_location: has the wrong form"):
        validate_connection("p", "lake", "athena", {"database": "d", "output_location": "http://x"})
    lake = validate_connection("p", "lake", "athena", {"database": "d", "workgroup": "etl"})
    assert lake.settings == {"database": "d", "workgroup": "etl"}
    ok = validate_connection("p", "m", "mysql", {"url": "mysql://root@h/db",
                                                 "password": "{{secrets.my_pw}}"})  # fmt: skip
    assert ok.settings["password"] == "{{ secrets.my_pw }}"  # the canonical form


def test_add_list_show_test_delete_and_the_audit_log(
    server: Server, pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = server.run("connections", "add", "wh", "--type", "postgresql",
                           "--setting", f"url={pg_db}",
                           "--setting", "password={{ secrets.wh_pw }}")  # fmt: skip
    assert code == 0, out
    code, out = server.run("connections", "show", "wh", "--output", "json")
    assert json.loads(out)["settings"] == {"url": pg_db, "password": "{{ secrets.wh_pw }}"}
    # the secret is not set yet: the test says so, exit 1
    code, out = server.run("connections", "test", "wh")
    assert code == 1
    assert "secret 'wh_pw' is not set" in out
    server.runtime.secrets.put("default", "wh_pw", PASSWORD)
    code, out = server.run("connections", "test", "wh", "--output", "json")
    assert code == 0, out
    assert json.loads(out)["ok"] is True
    # a server that is not there: exit 1 with the driver's reason
    code, out = server.run("connections", "add", "gone", "--type", "mysql",
                           "--setting", "url=mysql://root@127.0.0.1:1/x",
                           "--setting", "connect_timeout=2")  # fmt: skip
    assert code == 0, out
    code, out = server.run("connections", "test", "gone")
    assert code == 1
    assert "cannot connect" in out
    code, out = server.run("connections", "list")
    assert out.splitlines()[0].startswith("gone\tmysql\t")
    assert server.run("connections", "delete", "gone")[0] == 0
    code, out = server.run("connections", "show", "gone")
    assert code == 2  # a 4xx: the CLI says what was wrong
    assert "connection 'gone' is not defined in project 'default'" in out
    audit = server.runtime.readmodel.list_audit(project="default", limit=50, cursor=None)
    actions = [e.action for e in audit.items]
    assert actions.count("connections.put") == 2
    assert {"connections.test", "connections.delete"} <= set(actions)
    assert PASSWORD not in json.dumps([e.details for e in audit.items])


def test_a_mysql_connection_tests_ok_on_the_real_server(server: Server, mysql_db: str) -> None:
    code, out = server.run(
        "connections", "add", "my", "--type", "mysql", "--setting", f"url={mysql_db}"
    )
    assert code == 0, out
    code, out = server.run("connections", "test", "my", "--output", "json")
    assert code == 0, out
    answer = json.loads(out)
    assert answer["ok"] is True
    assert "connected and ran SELECT 1" in answer["message"]


def test_a_test_in_the_server_never_offers_the_server_s_own_database_password(
    server: Server, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the server's read model may take its password from PGPASSWORD or a password file
    # (`server --db` refuses one on the command line): libpq in the server's process would
    # send it to any host a project's connection without a password names
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:*:from-the-server-s-pgpass\n")
    passfile.chmod(0o600)
    offered: list[str] = []
    connect = psycopg.connect

    def recording(*args: object, **kwargs: object) -> psycopg.Connection[object]:
        conn = connect(*args, **kwargs)  # type: ignore[arg-type]
        offered.append(conn.info.password)  # what libpq had to send, if asked
        return conn

    monkeypatch.setattr(psycopg, "connect", recording)
    for name, value in (("PGPASSWORD", "from-the-server-s-env"), ("PGPASSFILE", str(passfile))):
        monkeypatch.setenv(name, value)
        code, out = server.run(
            "connections", "add", "pg", "--type", "postgresql", "--setting", f"url={pg_db}"
        )
        assert code == 0, out
        code, out = server.run("connections", "test", "pg")  # trust auth: asks for none
        assert (code, out.split(":")[0]) == (0, "ok"), out
        monkeypatch.delenv(name)
    assert offered == ["", ""]


def test_the_api_names_bad_fields_and_documents_the_routes(server: Server) -> None:
    with httpx.Client(base_url=server.url) as http:
        bad = http.put("/connections/Not_A_Name", json={"type": "mysql", "settings": {}})
        assert bad.status_code in (400, 422)
        assert "name" in bad.text
        unknown = http.put("/connections/ok", json={"type": "oracle", "settings": {}})
        assert unknown.status_code == 400
        assert "unknown connection type 'oracle'" in unknown.text
        many = {f"k{i}": "v" for i in range(40)}
        big = http.put("/connections/ok", json={"type": "mysql", "settings": many})
        assert big.status_code in (400, 422)
        assert http.get("/connections").json() == {"connections": []}
        assert http.post("/connections/none/test").status_code == 404
        paths = http.get("/openapi.json", timeout=60).json()["paths"]  # built on first request
    assert {"/connections", "/connections/{name}", "/connections/{name}/test"} <= set(paths)
