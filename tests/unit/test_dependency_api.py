"""No project sees another's data: a dependency task reads its upstream runs' states, so
whoever applies a workflow with a dependency on another project's workflow must be allowed to
read that project (a project they have no role in reads as one that does not exist)."""

from __future__ import annotations

from tests.unit.test_authorization_matrix import World, world  # noqa: F401 - the fixture

REPORT = """\
name: weekly_report
project: a
tasks:
  wait:
    type: dependency
    all: [{workflow: b/flow, date: last7Days}]
  report: {type: shell, depends_on: [wait], command: echo report}
"""


def test_applying_a_dependency_on_another_project_needs_to_read_it(world: World) -> None:  # noqa: F811
    before = world.snapshot()
    reply = world.call("editor", "POST", "/workflows", {"source": REPORT})
    assert reply.status == 404, reply.body
    assert "project 'b' not found" in str(reply.body)
    assert world.snapshot() == before
    assert "weekly_report" not in {v.name for v in world.store.list_workflows("a")}
    own = REPORT.replace("workflow: b/flow", "workflow: a/flow")
    assert world.call("editor", "POST", "/workflows", {"source": own}).status == 201
    assert world.call("root", "POST", "/workflows", {"source": REPORT}).status == 201
