"""The web UI's connection form is shaped by ui/src/connectionTypes.json: it must name the same
types, settings, credentials and defaults as the API validates (stratoflow.connection_types).
Regenerate it with ``stratoflow.connections.ui_table()``."""

from __future__ import annotations

import json
from pathlib import Path

from stratoflow.connection_types import CONNECTION_TYPES
from stratoflow.connections import ui_table

UI_TABLE = Path(__file__).resolve().parents[2] / "ui" / "src" / "connectionTypes.json"


def test_the_ui_connection_table_matches_the_api() -> None:
    table = json.loads(UI_TABLE.read_text(encoding="utf-8"))
    assert list(table) == list(CONNECTION_TYPES)
    assert table == ui_table()
    assert table["postgresql"]["credentials"] == ["password"]
    assert "url" in table["mysql"]["required"]
