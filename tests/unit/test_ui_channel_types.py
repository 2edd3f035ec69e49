"""The web UI's channel form is shaped by ui/src/channelTypes.json: it must name the same
types, settings, credentials and choices as the API validates (stratoflow.alerts)."""

from __future__ import annotations

import json
from pathlib import Path

from stratoflow.alerts import CHANNEL_TYPES

UI_TABLE = Path(__file__).resolve().parents[2] / "ui" / "src" / "channelTypes.json"


def test_the_ui_channel_table_matches_the_api() -> None:
    table = json.loads(UI_TABLE.read_text(encoding="utf-8"))
    assert list(table) == list(CHANNEL_TYPES)
    for name, kind in CHANNEL_TYPES.items():
        ui = table[name]
        assert ui["summary"] == kind.summary, name
        assert ui["required"] == list(kind.required), name
        assert ui["optional"] == list(kind.optional), name
        assert sorted(ui["credentials"]) == sorted(kind.credentials), name
        assert ui.get("choices", {}) == {k: list(v) for k, v in kind.choices.items()}, name
