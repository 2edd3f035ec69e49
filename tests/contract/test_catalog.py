"""The Catalog contract (``stratoflow.ports.Catalog``), for every adapter in conftest.

Workflow definitions are immutable versions: applying the same content again is a no-op,
applying changed content makes the next version, and a version once written never changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stratoflow.errors import NotFound
from stratoflow.model import WorkflowSpec, load_workflow
from stratoflow.ports import Catalog, WorkflowVersion

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def yaml(name: str = "sales_daily", project: str = "analytics", command: str = "echo 1") -> str:
    return f"""\
name: {name}
project: {project}
tasks:
  extract: {{type: shell, command: "{command}"}}
"""


def spec_of(source: str) -> WorkflowSpec:
    return load_workflow(source)


def put(catalog: Catalog, source: str, minute: float = 0) -> tuple[WorkflowVersion, bool]:
    return catalog.put_version(spec_of(source), source, at(minute))


def names(versions: list[WorkflowVersion]) -> list[tuple[str, str, int]]:
    return sorted((v.project, v.name, v.version) for v in versions)


# ---------------------------------------------------------------------------- put_version
def test_the_first_version_is_1(catalog: Catalog) -> None:
    source = yaml()
    spec = spec_of(source)

    version, created = catalog.put_version(spec, source, at(0))

    assert created is True
    assert version == WorkflowVersion(
        project="analytics",
        name="sales_daily",
        version=1,
        digest=spec.digest,
        document=spec.document,
        source=source,
        created_at=at(0),
        paused=False,
    )
    assert catalog.get_version("analytics", "sales_daily") == version


def test_the_same_content_again_is_the_same_version(catalog: Catalog) -> None:
    first, _ = put(catalog, yaml(), 0)

    again, created = put(catalog, yaml(), 5)

    assert created is False
    assert again == first
    assert [v.version for v in catalog.list_versions("analytics", "sales_daily")] == [1]


def test_the_same_content_written_differently_is_the_same_version(catalog: Catalog) -> None:
    first, _ = put(catalog, yaml(), 0)
    reformatted = "# the same workflow, laid out differently\n" + yaml().replace(
        '  extract: {type: shell, command: "echo 1"}',
        "  extract:\n    type: shell\n    command: echo 1",
    )
    assert reformatted != yaml()

    again, created = put(catalog, reformatted, 5)

    assert created is False
    assert again == first


def test_changed_content_is_the_next_version_and_earlier_ones_stay(catalog: Catalog) -> None:
    # GIVEN version 1
    v1, _ = put(catalog, yaml(command="echo 1"), 0)
    # WHEN the workflow changes
    v2, created = put(catalog, yaml(command="echo 2"), 5)
    # THEN it is version 2, the latest, and version 1 is unchanged
    assert created is True
    assert v2.version == 2
    assert v2.digest == spec_of(yaml(command="echo 2")).digest
    assert v2.digest != v1.digest
    assert v2.source == yaml(command="echo 2")
    assert v2.created_at == at(5)
    assert catalog.get_version("analytics", "sales_daily") == v2
    assert catalog.get_version("analytics", "sales_daily", 1) == v1
    assert catalog.get_version("analytics", "sales_daily", 2) == v2


def test_going_back_to_earlier_content_is_a_new_version(catalog: Catalog) -> None:
    v1, _ = put(catalog, yaml(command="echo 1"), 0)
    put(catalog, yaml(command="echo 2"), 1)

    v3, created = put(catalog, yaml(command="echo 1"), 2)

    assert created is True
    assert v3.version == 3
    assert v3.digest == v1.digest
    assert catalog.get_version("analytics", "sales_daily", 1) == v1


def test_versions_are_counted_per_workflow_and_project(catalog: Catalog) -> None:
    put(catalog, yaml("sales_daily", "analytics", "echo 1"))
    put(catalog, yaml("sales_daily", "analytics", "echo 2"))

    other_name, created_name = put(catalog, yaml("billing", "analytics", "echo 2"))
    other_project, created_project = put(catalog, yaml("sales_daily", "ops", "echo 2"))

    assert (created_name, other_name.version) == (True, 1)
    assert (created_project, other_project.version) == (True, 1)
    assert catalog.get_version("analytics", "sales_daily").version == 2


# ---------------------------------------------------------------------------- get_version
def test_get_version_of_an_unknown_workflow_raises_not_found(catalog: Catalog) -> None:
    put(catalog, yaml())
    with pytest.raises(NotFound):
        catalog.get_version("analytics", "nothing")
    with pytest.raises(NotFound):
        catalog.get_version("ops", "sales_daily")
    with pytest.raises(NotFound):
        catalog.get_version("ops", "sales_daily", 1)


def test_get_version_of_an_unknown_version_raises_not_found(catalog: Catalog) -> None:
    put(catalog, yaml(command="echo 1"))
    put(catalog, yaml(command="echo 2"))
    with pytest.raises(NotFound):
        catalog.get_version("analytics", "sales_daily", 3)
    with pytest.raises(NotFound):
        catalog.get_version("analytics", "sales_daily", 0)


def test_latest_version_is_the_newest_number(catalog: Catalog) -> None:
    put(catalog, yaml(command="echo 1"))
    assert catalog.latest_version("analytics", "sales_daily") == 1
    put(catalog, yaml(command="echo 2"))
    put(catalog, yaml(command="echo 2"))  # unchanged: no new version
    assert catalog.latest_version("analytics", "sales_daily") == 2
    with pytest.raises(NotFound):
        catalog.latest_version("analytics", "nothing")
    with pytest.raises(NotFound):
        catalog.latest_version("ops", "sales_daily")


# ---------------------------------------------------------------------------- listing
def test_list_workflows_gives_the_latest_version_of_each(catalog: Catalog) -> None:
    assert catalog.list_workflows() == []
    put(catalog, yaml("sales_daily", "analytics", "echo 1"), 0)
    sales, _ = put(catalog, yaml("sales_daily", "analytics", "echo 2"), 1)
    billing, _ = put(catalog, yaml("billing", "analytics"), 2)
    ops, _ = put(catalog, yaml("sales_daily", "ops"), 3)

    everything = catalog.list_workflows()

    assert names(everything) == [
        ("analytics", "billing", 1),
        ("analytics", "sales_daily", 2),
        ("ops", "sales_daily", 1),
    ]
    assert sales in everything
    assert billing in everything
    assert ops in everything


def test_list_workflows_of_one_project(catalog: Catalog) -> None:
    put(catalog, yaml("sales_daily", "analytics"))
    put(catalog, yaml("billing", "analytics"))
    ops, _ = put(catalog, yaml("sales_daily", "ops"))

    assert names(catalog.list_workflows("analytics")) == [
        ("analytics", "billing", 1),
        ("analytics", "sales_daily", 1),
    ]
    assert catalog.list_workflows("ops") == [ops]
    assert catalog.list_workflows("nobody") == []


def test_list_versions_is_newest_first(catalog: Catalog) -> None:
    v1, _ = put(catalog, yaml(command="echo 1"), 0)
    v2, _ = put(catalog, yaml(command="echo 2"), 1)
    v3, _ = put(catalog, yaml(command="echo 3"), 2)
    put(catalog, yaml("billing", command="echo 4"), 3)

    assert catalog.list_versions("analytics", "sales_daily") == [v3, v2, v1]


def test_list_versions_reads_a_page_not_every_version(catalog: Catalog) -> None:
    """A page of versions (``limit``, older than ``before``): the API's listing read every
    version's source and document (2 MiB each at most, as many as were ever applied) to
    answer one page."""
    made = [put(catalog, yaml(command=f"echo {n}"), n)[0] for n in range(6)]
    put(catalog, yaml("billing", command="echo 7"), 7)
    newest = made[::-1]

    assert catalog.list_versions("analytics", "sales_daily", limit=2) == newest[:2]
    assert catalog.list_versions("analytics", "sales_daily", limit=2, before=5) == [
        made[3], made[2],
    ]  # fmt: skip
    assert catalog.list_versions("analytics", "sales_daily", limit=10, before=3) == [
        made[1], made[0],
    ]  # fmt: skip
    assert catalog.list_versions("analytics", "sales_daily", before=1) == []
    assert catalog.list_versions("analytics", "sales_daily", limit=3, before=99) == newest[:3]
    assert catalog.list_versions("analytics", "sales_daily") == newest


def test_list_workflows_reads_a_page_by_name(catalog: Catalog) -> None:
    """A page of a project's workflows by name (``limit``, after the name ``after``), as the
    API's listing pages them, read alone: not every workflow of the project each time."""
    for name in ("a1", "b2", "c3", "d4"):
        put(catalog, yaml(name, "analytics"))
    put(catalog, yaml("a0", "ops"))

    def page(**kwargs: object) -> list[str]:
        return [v.name for v in catalog.list_workflows("analytics", **kwargs)]  # type: ignore[arg-type]

    assert page(limit=2) == ["a1", "b2"]
    assert page(limit=2, after="b2") == ["c3", "d4"]
    assert page(after="b") == ["b2", "c3", "d4"]
    assert page(limit=5, after="d4") == []
    assert page() == ["a1", "b2", "c3", "d4"]


# ---------------------------------------------------------------------------- paused
def test_set_paused_pauses_and_unpauses_the_workflow(catalog: Catalog) -> None:
    put(catalog, yaml(command="echo 1"))
    put(catalog, yaml(command="echo 2"))
    put(catalog, yaml("billing"))

    catalog.set_paused("analytics", "sales_daily", True)

    assert catalog.get_version("analytics", "sales_daily").paused is True
    assert catalog.get_version("analytics", "sales_daily", 1).paused is True
    assert all(v.paused for v in catalog.list_versions("analytics", "sales_daily"))
    assert {v.name: v.paused for v in catalog.list_workflows("analytics")} == {
        "sales_daily": True,
        "billing": False,
    }

    catalog.set_paused("analytics", "sales_daily", False)

    assert catalog.get_version("analytics", "sales_daily").paused is False
    assert not any(v.paused for v in catalog.list_workflows())


def test_a_paused_workflow_stays_paused_across_a_new_version(catalog: Catalog) -> None:
    put(catalog, yaml(command="echo 1"))
    catalog.set_paused("analytics", "sales_daily", True)

    v2, created = put(catalog, yaml(command="echo 2"))

    assert created is True
    assert v2.paused is True
    assert catalog.get_version("analytics", "sales_daily").paused is True


# ---------------------------------------------------------------------------- cursor
def test_the_cursor_is_none_until_set_then_the_last_value_set(catalog: Catalog) -> None:
    put(catalog, yaml("sales_daily"))
    put(catalog, yaml("billing"))
    assert catalog.get_cursor("analytics", "sales_daily") is None

    catalog.set_cursor("analytics", "sales_daily", at(0))
    catalog.set_cursor("analytics", "sales_daily", datetime(2026, 3, 2, 2, 0, 0, 1, tzinfo=UTC))

    cursor = catalog.get_cursor("analytics", "sales_daily")
    assert cursor == datetime(2026, 3, 2, 2, 0, 0, 1, tzinfo=UTC)
    assert cursor is not None
    assert cursor.utcoffset() == timedelta(0)
    assert catalog.get_cursor("analytics", "billing") is None


def test_the_cursor_never_moves_back(catalog: Catalog) -> None:
    """Its writers read it, then write a later one (a firing its new cursor, an apply that
    changed the schedule's times the apply's time): two at once must not have the one that
    read first move it back below the other's (a firing that read the cursor before an apply
    restarted it, writing after: the restart undone, and the catch-up makes the runs of the
    new times from before the apply)."""
    put(catalog, yaml())
    catalog.set_cursor("analytics", "sales_daily", at(60))  # the apply's restart

    catalog.set_cursor("analytics", "sales_daily", at(30))  # the firing that read before

    assert catalog.get_cursor("analytics", "sales_daily") == at(60)
    catalog.set_cursor("analytics", "sales_daily", at(60))  # the same again: nothing moves
    catalog.set_cursor("analytics", "sales_daily", at(90))  # a later firing moves it on
    assert catalog.get_cursor("analytics", "sales_daily") == at(90)


def test_the_cursor_survives_a_new_version(catalog: Catalog) -> None:
    put(catalog, yaml(command="echo 1"))
    catalog.set_cursor("analytics", "sales_daily", at(60))

    put(catalog, yaml(command="echo 2"))

    assert catalog.get_cursor("analytics", "sales_daily") == at(60)


# ---------------------------------------------------------------------------- schedule_error
def test_a_schedule_error_is_read_back_with_the_workflow_until_cleared(catalog: Catalog) -> None:
    put(catalog, yaml())
    put(catalog, yaml(name="other"))
    assert catalog.get_version("analytics", "sales_daily").schedule_error is None

    catalog.set_schedule_error("analytics", "sales_daily", "OverflowError: date value out of range")

    assert catalog.get_version("analytics", "sales_daily").schedule_error == (
        "OverflowError: date value out of range"
    )
    listed = {v.name: v.schedule_error for v in catalog.list_workflows("analytics")}
    assert listed == {"sales_daily": "OverflowError: date value out of range", "other": None}
    catalog.set_schedule_error("analytics", "sales_daily", None)
    assert catalog.get_version("analytics", "sales_daily").schedule_error is None
    assert all(v.schedule_error is None for v in catalog.list_workflows())
