"""An API URL that is no http(s) URL is refused as invalid input (exit 2, naming it and what
to write), before any request. `STRATOFLOW_API=127.0.0.1:8321` (no scheme, a common slip)
said "cannot reach the Stratoflow API ...; start it with `stratoflow server`" and exited 3,
as if the server were down, while it was running."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stratoflow.cli import main


@pytest.mark.parametrize(
    "api", ["127.0.0.1:8321", "localhost:8321", "notaurl", "ftp://x", "http://"]
)
def test_an_api_that_is_no_http_url_is_invalid_input(api: str) -> None:
    result = CliRunner().invoke(main, ["runs", "list", "--api", api])
    assert result.exit_code == 2, result.output
    assert f"{api!r} is no API URL" in result.stderr
    assert "http://127.0.0.1:8321" in result.stderr  # what to write instead
    assert "stratoflow server" not in result.stderr


def test_the_environment_s_api_is_checked_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATOFLOW_API", "127.0.0.1:18799")
    result = CliRunner().invoke(main, ["runs", "show", "r"])
    assert result.exit_code == 2, result.output
    assert "'127.0.0.1:18799' is no API URL" in result.stderr


def test_an_http_api_that_does_not_answer_is_still_unreachable() -> None:
    result = CliRunner().invoke(main, ["runs", "list", "--api", "http://127.0.0.1:1"])
    assert result.exit_code == 3, result.output
    assert "cannot reach the Stratoflow API at http://127.0.0.1:1" in result.stderr
