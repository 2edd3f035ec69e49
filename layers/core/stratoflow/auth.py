"""Who may do what: projects, roles and the permission check every endpoint makes.

Every workflow belongs to a project; a user holds at most one role per project. Roles are
ordered — each includes what the ones below it may do:

- ``viewer``: see workflows, versions, runs, task instances and logs;
- ``operator``: also trigger runs, pause/resume/stop/rerun them, mark tasks, and pause or
  unpause a workflow's schedule;
- ``editor``: also apply workflows (new versions);
- ``admin``: also manage the project's members and read its audit log.

A superuser is admin of every project (the first user of a local install is one).

A principal with no role at all in a project is told the thing does not exist (404), so a
user of project A learns nothing about project B; one whose role is too low is told so (403).

This module is pure: identities come from an adapter (local API tokens, or the AWS API's
authorizer claims) as a :class:`Principal`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from stratoflow.errors import NotFound, StratoflowError


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.EDITOR: 2, Role.ADMIN: 3}
_ROLE_NAMES = frozenset(role.value for role in Role)


class Action(StrEnum):
    READ = "read"
    OPERATE = "operate"
    EDIT = "edit"
    ADMINISTER = "administer"


# the lowest role allowed each action
REQUIRED_ROLE: Mapping[Action, Role] = {
    Action.READ: Role.VIEWER,
    Action.OPERATE: Role.OPERATOR,
    Action.EDIT: Role.EDITOR,
    Action.ADMINISTER: Role.ADMIN,
}


class Unauthenticated(StratoflowError):
    """No identity, or one that is not valid (HTTP 401)."""


class Forbidden(StratoflowError):
    """The principal may see the project but its role does not allow the action (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    name: str
    roles: Mapping[str, Role] = field(default_factory=dict)  # project -> role
    superuser: bool = False

    def role_in(self, project: str) -> Role | None:
        if self.superuser:
            return Role.ADMIN
        return self.roles.get(project)

    def can(self, action: Action, project: str) -> bool:
        role = self.role_in(project)
        return role is not None and role.rank >= REQUIRED_ROLE[action].rank

    def visible(self, projects: Iterable[str]) -> list[str]:
        """The given projects this principal may see, in order."""
        return [p for p in projects if self.role_in(p) is not None]

    def allowed_actions(self, project: str) -> list[Action]:
        return [action for action in Action if self.can(action, project)]


def require(principal: Principal, action: Action, project: str, *, what: str) -> None:
    """Raise unless ``principal`` may do ``action`` in ``project``. ``what`` names the target
    ("run r-1", "workflow default/etl") for the error message."""
    role = principal.role_in(project)
    if role is None:
        # the same words as a missing thing: no hint that it exists in another project
        raise NotFound(f"{what} not found")
    needed = REQUIRED_ROLE[action]
    if role.rank < needed.rank:
        raise Forbidden(
            f"{principal.name} is {role.value} in project {project}; "
            f"{action.value} on {what} needs {needed.value}"
        )


ANONYMOUS_ADMIN = Principal("local", superuser=True)
"""Who acts when authentication is switched off (``stratoflow run``, tests of the engine)."""


def principal_from_groups(
    name: str, groups: Iterable[str], *, superuser_group: str = "stratoflow-admins"
) -> Principal:
    """A principal from identity-provider groups (Cognito ``cognito:groups``): a group
    ``<project>.<role>`` grants that role in that project (the highest wins when several
    name one project); ``superuser_group`` makes a superuser. Other groups are ignored."""
    roles: dict[str, Role] = {}
    superuser = False
    for group in groups:
        if group == superuser_group:
            superuser = True
            continue
        project, sep, role_name = group.rpartition(".")
        if not sep or not project or role_name not in _ROLE_NAMES:
            continue
        role = Role(role_name)
        current = roles.get(project)
        if current is None or role.rank > current.rank:
            roles[project] = role
    return Principal(name, roles, superuser)
