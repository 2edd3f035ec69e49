"""Projects and roles: the permission table, what a refusal says, and groups from an IdP."""

from __future__ import annotations

import pytest

from stratoflow.auth import (
    Action,
    Forbidden,
    Principal,
    Role,
    principal_from_groups,
    require,
)
from stratoflow.errors import NotFound

# role -> the actions it allows (written out, not derived, so the table is checked, not echoed)
ALLOWED = {
    Role.VIEWER: {Action.READ},
    Role.OPERATOR: {Action.READ, Action.OPERATE},
    Role.EDITOR: {Action.READ, Action.OPERATE, Action.EDIT},
    Role.ADMIN: {Action.READ, Action.OPERATE, Action.EDIT, Action.ADMINISTER},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_each_role_allows_exactly_its_actions_in_its_own_project(
    role: Role, action: Action
) -> None:
    alice = Principal("alice", {"a": role})
    assert alice.can(action, "a") is (action in ALLOWED[role])
    assert not alice.can(action, "b"), "a role in a says nothing about b"
    if action in ALLOWED[role]:
        require(alice, action, "a", what="run r1")
    else:
        with pytest.raises(Forbidden, match=f"alice is {role.value} in project a"):
            require(alice, action, "a", what="run r1")


def test_no_role_in_a_project_reads_as_not_found() -> None:
    alice = Principal("alice", {"a": Role.ADMIN})
    with pytest.raises(NotFound, match=r"^run r9 not found$"):
        require(alice, Action.READ, "b", what="run r9")


def test_a_superuser_is_admin_everywhere() -> None:
    root = Principal("root", superuser=True)
    assert root.role_in("anything") is Role.ADMIN
    assert root.allowed_actions("x") == list(Action)


def test_visible_keeps_order_and_drops_foreign_projects() -> None:
    bob = Principal("bob", {"b": Role.VIEWER, "a": Role.OPERATOR})
    assert bob.visible(["a", "b", "c"]) == ["a", "b"]


def test_groups_map_to_roles_and_the_highest_wins() -> None:
    p = principal_from_groups(
        "carol",
        ["analytics.viewer", "analytics.editor", "ops.operator", "ops.bogus", "noise", ".admin"],
    )
    assert p.roles == {"analytics": Role.EDITOR, "ops": Role.OPERATOR}
    assert not p.superuser
    assert principal_from_groups("dan", ["stratoflow-admins"]).superuser
    assert principal_from_groups("eve", ["admins"], superuser_group="admins").superuser
