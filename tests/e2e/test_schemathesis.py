"""schemathesis against the OpenAPI document of a running local server (issue 4): every
operation is called with generated input — valid, invalid and in sequences linked by the
document — and no answer may be a server error or break the document's own schema.

One allowance, and why: schemathesis 4's generator sometimes crashes inside Hypothesis
(``TOOL_CRASH``) on one operation; that is tolerated as an error of the tool, never a
failure of the API's.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from stratoflow.api.long_poll import MAX_WAIT
from tests.e2e.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("schemathesis") / "home")
    proc.start()
    with httpx.Client(base_url=proc.url, headers=proc.headers, timeout=30) as http:
        # the pool examples/warehouse_pool.yaml uses (apply refuses an unknown pool)
        assert http.put("/pools/warehouse", json={"slots": 2}).status_code == 200
        # and the alert groups examples/alerting.yaml names (apply refuses unknown ones)
        hook = {"type": "webhook", "settings": {"url": "{{ secrets.hook }}"}}
        assert http.put("/alerts/channels/hook", json=hook).status_code in (200, 201)
        for group in ("data-oncall", "data-team"):
            made = http.put(f"/alerts/groups/{group}", json={"channels": ["hook"]})
            assert made.status_code in (200, 201), made.text
        for path in sorted((ROOT / "examples").glob("*.yaml")):
            reply = http.post("/workflows", json={"source": path.read_text(encoding="utf-8")})
            assert reply.status_code in (200, 201), reply.text
        assert http.post("/workflows/etl_chain/runs", json={}).status_code == 201
    yield proc
    proc.stop()


# A long poll (``wait``) is held for up to MAX_WAIT seconds by design: a generated
# ``GET /runs/{id}?until=ended&wait=15`` of a run that does not end in time is answered after 15 s,
# which schemathesis' default 10-second request timeout reported as a network error.
REQUEST_TIMEOUT = MAX_WAIT + 15

# A crash inside schemathesis' own generator, not a finding about the API: Hypothesis'
# lambda-source introspection trips CPython 3.11's AST recursion check now and then (seen on
# GET /audit and elsewhere, never twice in a row). Such an operation is reported as an error
# of the run; any other error, and every failure, fails this test.
TOOL_CRASH = "AST constructor recursion depth mismatch"


def schemathesis(server: ServerProcess, tmp_path: Path, *args: str) -> None:
    st = Path(sys.executable).parent / "st"
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}"
    result = subprocess.run(
        [
            str(st), "run", f"{server.url}/openapi.json",
            "--header", f"Authorization: Bearer {server.token}",
            "--checks", CHECKS, "--max-examples", "30", "--workers", "2", "--seed", "1",
            "--request-timeout", str(REQUEST_TIMEOUT),
            "--report", "junit", "--report-dir", str(report), *args,
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
    )  # fmt: skip
    output = result.stdout[-6000:] + result.stderr[-2000:]
    (junit,) = report.glob("*.xml")
    suites = ElementTree.parse(junit).getroot()
    assert int(suites.get("tests", "0")) >= 20, output
    problems = []
    for case in suites.iter("testcase"):
        for outcome in case:
            text = f"{outcome.get('message', '')} {outcome.text or ''}"
            if outcome.tag == "failure" or (outcome.tag == "error" and TOOL_CRASH not in text):
                problems.append(f"{case.get('name')}: {outcome.tag}: {text[:500]}")
    assert not problems, "\n".join(problems) + "\n" + output
    assert result.returncode == 0 or TOOL_CRASH in output, output


# two schemathesis runs of up to 600 s each (their subprocess timeout): the suite's 120 s
# default cut it off at load ~19 on 2 cores (189 s), main's tree as well (205 s)
@pytest.mark.timeout(1200)
def test_generated_requests_get_no_server_error_and_no_schema_break(
    server: ServerProcess, tmp_path: Path
) -> None:
    schemathesis(server, tmp_path, "--phases", "examples,fuzzing,stateful")
    schemathesis(server, tmp_path, "--phases", "coverage")
    log = server.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-4000:]
