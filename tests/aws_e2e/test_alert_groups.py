"""An unknown alert group is refused at apply on the AWS stack in moto, as an unknown pool is
(tests/aws_e2e/test_pools.py): the api function checks the alert table the /alerts routes
write, and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws_e2e.harness import Stack, aws_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]

FLOW = """
name: paged
alerts: [{on: [failure], group: oncall}]
tasks:
  load: {type: shell, command: "true", alerts: [{on: [retry], group: chat}]}
"""


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with aws_stack(monkeypatch) as built:
        yield built


def test_apply_refuses_an_alert_group_the_alert_table_lacks(stack: Stack) -> None:
    # GIVEN only the group "oncall" in the project
    hook = {"type": "webhook", "settings": {"url": "{{ secrets.hook }}"}}
    status, body = stack.api("PUT", "/alerts/channels/hook", hook)
    assert status in (200, 201), body
    status, body = stack.api("PUT", "/alerts/groups/oncall", {"channels": ["hook"]})
    assert status in (200, 201), body
    # WHEN a workflow naming "oncall" and the task's "chat" is applied
    status, body = stack.api("POST", "/workflows", {"source": FLOW})
    # THEN it is refused, naming the field and the group, and nothing is stored
    assert status == 400, body
    assert body["message"] == (
        "tasks.load.alerts.0.group: unknown alert group 'chat' in project 'default' "
        "(create it first: stratoflow alerts groups set chat --channels NAME[,NAME...] "
        "[--project default])"
    )
    assert stack.api("GET", "/workflows/paged")[0] == 404
    # and once "chat" exists it applies
    status, body = stack.api("PUT", "/alerts/groups/chat", {"channels": ["hook"]})
    assert status in (200, 201), body
    status, body = stack.api("POST", "/workflows", {"source": FLOW})
    assert status == 201, body
