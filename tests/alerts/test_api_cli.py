"""``stratoflow alerts ...`` through the API of a local server: channels refused with a
literal credential (exit 2 / 400 naming the setting, nothing stored), groups, a test alert,
the delivery log, the audit log without credentials, and the routes in the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stratoflow.adapters.local.runtime import LocalRuntime
from stratoflow.api.app import create_app
from stratoflow.api.local_server import start_in_thread
from tests.alerts.conftest import Recorder, secrets_of
from tests.cli_server import Server, serving

PD_KEY = "PD-ROUTING-KEY-CANARY-0001"


@pytest.fixture
def server(tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.delenv("STRATOFLOW_TOKEN", raising=False)
    rt = LocalRuntime(
        tmp_path / "home",
        resolve_secret=secrets_of({"pd_key": PD_KEY, "slack_hook": f"{recorder.url}/slack"}),
    )
    with serving(rt, alerts=rt.alerts) as server:
        rt.alerts.start()
        yield server


def add_channels(server: Server, recorder: Recorder) -> None:
    code, out = server.run("alerts", "channels", "add", "pd", "--type", "pagerduty",
                           "--setting", "routing_key={{ secrets.pd_key }}", "--url", recorder.url)  # fmt: skip
    assert code == 0, out
    code, out = server.run("alerts", "channels", "add", "chat", "--type", "slack",
                           "--url", "{{ secrets.slack_hook }}")  # fmt: skip
    assert code == 0, out


def test_a_literal_credential_is_refused_and_nothing_is_stored(server: Server) -> None:
    code, out = server.run("alerts", "channels", "add", "pd", "--type", "pagerduty",
                           "--setting", f"routing_key={PD_KEY}")  # fmt: skip
    assert code == 2
    assert "--setting routing_key" in out  # what was typed, not the body's settings.routing_key
    assert "secret reference" in out
    assert PD_KEY not in out
    code, out = server.run("alerts", "channels", "list", "--output", "json")
    assert (code, json.loads(out)) == (0, {"channels": []})
    code, out = server.run("alerts", "channels", "add", "x", "--type", "slack", "--setting", "oops")
    assert code == 2
    assert "name=value" in out


def test_channels_groups_test_and_the_delivery_log(server: Server, recorder: Recorder) -> None:
    add_channels(server, recorder)
    code, out = server.run("alerts", "channels", "list", "--output", "json")
    channels = {c["name"]: c for c in json.loads(out)["channels"]}
    assert channels["pd"]["settings"] == {
        "routing_key": "{{ secrets.pd_key }}",
        "base_url": recorder.url,
    }
    assert channels["chat"]["settings"] == {"url": "{{ secrets.slack_hook }}"}

    code, out = server.run("alerts", "groups", "set", "oncall", "--channels", "pd,ghost")
    assert code == 2
    assert "no channel 'ghost'" in out
    code, out = server.run("alerts", "groups", "set", "oncall", "--channels", "pd,chat")
    assert code == 0, out
    code, out = server.run("alerts", "groups", "list", "--output", "json")
    assert json.loads(out)["groups"] == [
        {"project": "default", "name": "oncall", "channels": ["pd", "chat"]}
    ]

    code, out = server.run("alerts", "test", "oncall", "--output", "json")
    assert code == 0, out
    assert {(d["channel"], d["status"]) for d in json.loads(out)["deliveries"]} == {
        ("pd", "sent"), ("chat", "sent"),
    }  # fmt: skip
    assert recorder.on("/v2/enqueue")[0].body["routing_key"] == PD_KEY
    assert len(recorder.on("/slack")) == 1

    code, out = server.run("alerts", "list", "--status", "sent", "--output", "json")
    listed = json.loads(out)["deliveries"]
    assert {(d["event"], d["channel"], d["attempts"]) for d in listed} == {
        ("test", "pd", 1), ("test", "chat", 1),
    }  # fmt: skip

    # a channel a group holds is not deleted; the group first, then the channel
    code, out = server.run("alerts", "channels", "delete", "pd")
    assert code == 2
    assert "oncall" in out
    assert server.run("alerts", "groups", "delete", "oncall") == (0, "group oncall deleted\n")
    assert server.run("alerts", "channels", "delete", "pd") == (0, "channel pd deleted\n")

    audit = server.runtime.readmodel.list_audit(project="default", limit=50, cursor=None)
    actions = [e.action for e in audit.items]
    assert actions.count("alerts.channel.put") == 2
    assert {"alerts.group.put", "alerts.group.test", "alerts.group.delete",
            "alerts.channel.delete"} <= set(actions)  # fmt: skip
    everything = json.dumps([e.details for e in audit.items]) + out
    assert PD_KEY not in everything
    assert recorder.url + "/slack" not in everything  # the webhook URL is a secret too


def test_deletes_take_output_json_as_every_configuration_command_does(
    server: Server, recorder: Recorder
) -> None:
    """DESIGN: every configuration command takes --project and --output json; `secrets
    delete` and `pools delete` did, `alerts channels delete` and `alerts groups delete`
    refused the option (exit 2, "No such option")."""
    add_channels(server, recorder)
    assert server.run("alerts", "groups", "set", "g", "--channels", "chat")[0] == 0
    code, out = server.run("alerts", "groups", "delete", "g", "--output", "json")
    assert (code, json.loads(out)) == (0, {"deleted": "g"})
    code, out = server.run("alerts", "channels", "delete", "chat", "--output", "json")
    assert (code, json.loads(out)) == (0, {"deleted": "chat"})
    assert server.run("alerts", "channels", "delete", "pd", "--output", "text") == (
        0,
        "channel pd deleted\n",
    )


def test_a_failing_test_alert_exits_1_with_its_error(server: Server, recorder: Recorder) -> None:
    add_channels(server, recorder)
    assert server.run("alerts", "groups", "set", "chat-only", "--channels", "chat")[0] == 0
    recorder.answer((404, {"error": "no_service"}))
    code, out = server.run("alerts", "test", "chat-only")
    assert code == 1
    assert "failed" in out
    assert "HTTP 404" in out


def test_the_api_names_bad_fields_and_documents_the_routes(server: Server) -> None:
    with httpx.Client(base_url=server.url) as http:
        bad = http.put("/alerts/channels/Not_A_Name", json={"type": "slack", "settings": {}})
        assert bad.status_code in (400, 422)
        assert "name" in bad.text
        extra = http.put("/alerts/channels/ok", json={"type": "slack", "colour": "red"})
        assert extra.status_code in (400, 422)
        assert "colour" in extra.text
        many = {f"header.X{i}": "v" for i in range(40)}
        big = http.put("/alerts/channels/ok", json={"type": "webhook", "settings": many})
        assert big.status_code in (400, 422)
        assert http.get("/alerts/channels").json() == {"channels": []}
        assert http.post("/alerts/groups/none/test").status_code == 404
        paths = http.get("/openapi.json").json()["paths"]
    assert {"/alerts", "/alerts/channels", "/alerts/channels/{name}", "/alerts/groups",
            "/alerts/groups/{name}", "/alerts/groups/{name}/test"} <= set(paths)  # fmt: skip


def test_roles_guard_the_alert_routes(tmp_path: Path, recorder: Recorder) -> None:
    from stratoflow.adapters.local.identity import SqliteIdentities
    from stratoflow.api.access import token_authenticator
    from stratoflow.auth import Role

    rt = LocalRuntime(tmp_path / "home", resolve_secret=secrets_of({}))
    identities = SqliteIdentities(rt.home / "stratoflow.db")
    tokens = {}
    for name, role in (("viewer", Role.VIEWER), ("operator", Role.OPERATOR), ("admin", Role.ADMIN)):
        identities.create_user(name, superuser=False, now=rt.clock.now())
        identities.set_role(name, "a", role)
        tokens[name] = identities.create_token(name, "t", rt.clock.now())[1]
    app = create_app(rt.scheduler, authenticate=token_authenticator(identities, rt.clock),
                     readmodel=rt.readmodel, alerts=rt.alerts)  # fmt: skip
    httpd, url = start_in_thread(app, "127.0.0.1", 0)
    channel = {"type": "slack", "url": "{{ secrets.hook }}"}

    def call(user: str | None, method: str, path: str, **kw: object) -> int:
        headers = {"Authorization": f"Bearer {tokens[user]}"} if user else {}
        with httpx.Client(base_url=url, headers=headers) as http:
            return http.request(method, path, params={"project": "a"}, **kw).status_code  # type: ignore[arg-type]

    try:
        assert call(None, "GET", "/alerts/channels") == 401
        assert call("viewer", "PUT", "/alerts/channels/c", json=channel) == 403
        assert call("operator", "PUT", "/alerts/channels/c", json=channel) == 403
        assert call("admin", "PUT", "/alerts/channels/c", json=channel) == 201
        assert call("viewer", "GET", "/alerts/channels") == 200
        assert call("admin", "PUT", "/alerts/groups/g", json={"channels": ["c"]}) == 201
        assert call("viewer", "POST", "/alerts/groups/g/test") == 403
        assert call("viewer", "GET", "/alerts") == 200
        assert call("viewer", "DELETE", "/alerts/groups/g") == 403
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {tokens['admin']}"}
        ) as h:
            other = h.get("/alerts/channels", params={"project": "b"})  # no role there
        assert other.status_code in (403, 404)
    finally:
        httpd.shutdown()
        identities.close()
        rt.close()


@pytest.mark.parametrize(
    ("args", "said", "not_said"),
    [
        # --url of a channel whose URL setting is base_url: the user typed --url
        (["--type", "pagerduty", "--setting", "routing_key={{ secrets.pd_key }}",
          "--url", "ftp://events.example"], "--url: must be an http(s) URL", "--setting base_url"),
        # a literal webhook URL typed as --setting url, not --url
        (["--type", "slack", "--setting", "url=https://hooks.example/T0"],
         "--setting url: is a credential", "--url:"),
        # --url of a type that takes none: the body's top-level url is the --url option
        (["--type", "email", "--setting", "host=smtp.example", "--setting", "from=a@example",
          "--setting", "to=b@example", "--url", "https://x.example"],
         "--url: an email channel takes no URL", "\nurl:"),
        # neither given: the URL a slack channel requires is the --url option
        (["--type", "slack"], "--url: required", "--setting url"),
    ],
)  # fmt: skip
def test_a_channel_refusal_names_the_option_the_url_was_typed_with(
    server: Server, args: list[str], said: str, not_said: str
) -> None:
    code, out = server.run("alerts", "channels", "add", "c", *args)
    assert code == 2, out
    assert said in out
    assert not_said not in "\n" + out
