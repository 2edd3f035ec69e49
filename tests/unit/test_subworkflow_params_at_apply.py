"""A sub-workflow task's ``params`` are checked at apply against the child workflow, where
it exists (as an unknown pool or alert group is): a name the child does not declare fails
every run of the parent, at run time, with "unknown parameter". A child not applied yet is
accepted (its latest version is read when the task starts). On both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.stores import STORE_KINDS
from tests.unit.test_subworkflow import CHILD, PARENT, Harness

from stratoflow.errors import InvalidInput, NotFound

TYPO = PARENT.replace('params: {region: "{{ params.region }}"}', "params: {regoin: eu}")


@pytest.fixture(params=STORE_KINDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with Harness.opened(request.param, tmp_path) as harness:
        yield harness


def test_a_param_the_child_does_not_declare_is_refused_naming_it(h: Harness) -> None:
    h.scheduler.apply(CHILD)
    with pytest.raises(InvalidInput) as caught:
        h.scheduler.apply(TYPO)
    message = str(caught.value)
    assert "tasks.child.params.regoin" in message
    assert "workflow default/load_region has no parameter 'regoin' (its params: region)" in message
    with pytest.raises(NotFound):  # nothing was stored
        h.scheduler.catalog.get_version("default", "parent")


def test_declared_params_and_a_child_not_applied_yet_are_accepted(h: Harness) -> None:
    h.scheduler.apply(TYPO)  # no child yet: read when the task starts
    h.scheduler.apply(CHILD)
    version, _ = h.scheduler.apply(PARENT)
    assert version.version == 2
