"""API Gateway REST hands the api function ``event.path`` still percent-encoded (the local
server decodes it: ``api.local_server.to_event``). A run id with ':' (the web UI's
encodeURIComponent and ``stratoflow runs output`` send it as %3A) and an output key with a
space (%20) must be found on AWS as they are locally: the path is decoded exactly once, and an
encoded '/' splits segments as it does locally."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from .harness import aws_stack

SOURCE = """
name: encoded
tasks:
  a:
    type: shell
    command: 'echo "my key=1" >> "$STRATOFLOW_OUTPUT"'
"""


def test_encoded_run_ids_and_output_keys_are_found_as_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with aws_stack(monkeypatch) as stack:
        stack.apply_with_runner(SOURCE)
        key = "2026-01-01T00:00:00"
        status, body = stack.api("POST", "/workflows/encoded/runs", {"run_id": key})
        assert status == 201, body
        run_id = body["run"]["id"]
        assert ":" in run_id
        assert stack.run_ends(run_id) == "succeeded"
        encoded = quote(run_id, safe="")  # what encodeURIComponent / quote(safe='') send

        status, body = stack.api("GET", f"/runs/{encoded}")
        assert status == 200, body
        assert body["run"]["id"] == run_id

        status, text = stack.api("GET", f"/runs/{encoded}/tasks/a/outputs/{quote('my key')}")
        assert (status, text) == (200, "1")

        # decoded once only: a double-encoded id names the id with '%3A' in it, which is not
        # there (the local server answers the same)
        status, body = stack.api("GET", f"/runs/{quote(encoded, safe='')}")
        assert status == 404, body
        assert body["message"] == f"run {run_id.replace(':', '%3A')!r} not found"

        # an encoded '/' is a '/' after decoding, as locally: it splits the segment, so no
        # route matches (and it reaches no other route)
        status, body = stack.api("GET", f"/runs/{quote('a/b', safe='')}")
        assert status == 404, body
        assert body["message"] == "no route for GET /runs/a/b", body
