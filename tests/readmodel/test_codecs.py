"""The text codecs for values read as text (the local feed's rows): what ``ts`` and
``to_json`` make of the decoded values, without decoding what is already in that form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stratoflow.readmodel import json_text, to_json, ts_text
from stratoflow.readmodel._records import ts


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-01T12:00:00.123456Z",  # the form both stores write: kept as it is
        "2026-03-01T12:00:00Z",  # no microseconds
        "2026-03-01T13:00:00.000001+01:00",  # an offset
        "2026-03-01 12:00:00.123456+00:00",  # a space, +00:00
        "0999-01-02T03:04:05.000006Z",  # a year before 1000 (ts writes "999-...")
    ],
)
def test_a_time_as_text_is_what_ts_makes_of_it(text: str) -> None:
    assert ts_text(text) == ts(datetime.fromisoformat(text))


def test_a_time_in_the_stored_form_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    import stratoflow.readmodel._records as records

    class NoParsing(datetime):
        @classmethod
        def fromisoformat(cls, text: str) -> datetime:
            raise AssertionError(f"parsed {text}")

    monkeypatch.setattr(records, "datetime", NoParsing)
    assert ts_text("2026-03-01T12:00:00.123456Z") == "2026-03-01T12:00:00.123456Z"
    assert ts_text(None) is None
    with pytest.raises(AssertionError):
        ts_text("2026-03-01T12:00:00Z")


def test_a_naive_time_is_refused_as_ts_refuses_it() -> None:
    with pytest.raises(ValueError, match="naive"):
        ts_text("2026-03-01T12:00:00.123456")


def test_a_time_in_another_zone_is_stored_as_utc() -> None:
    later = datetime(2026, 3, 1, 12, tzinfo=UTC) + timedelta(hours=2)
    text = later.astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert ts_text(text) == "2026-03-01T14:00:00.000000Z"


@pytest.mark.parametrize(
    "value",
    [{}, {"b": 1, "a": [3, {"z": None, "y": "é"}]}, [], {"n": 1.5e300}, {"when": "x"}],
)
def test_json_as_text_is_what_to_json_makes_of_it(value: object) -> None:
    stored = json.dumps(value)  # insertion order, spaces, ASCII escapes: another writer's text
    assert json_text(stored) == to_json(value)
