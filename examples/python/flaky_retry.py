"""examples/flaky_retry.yaml in Python, builder style: a task retried with backoff."""

from __future__ import annotations

from datetime import timedelta

from stratoflow.sdk import Workflow, python, shell

with Workflow(
    "flaky_retry", description="Retries with backoff until a flaky dependency answers"
) as flaky_retry:
    call = shell(
        "call_flaky_service",
        """\
echo "attempt $STRATOFLOW_ATTEMPT"
if [ "$STRATOFLOW_ATTEMPT" -lt 3 ]; then
  echo "service unavailable" >&2
  exit 1
fi
echo "answer=42" >> "$STRATOFLOW_OUTPUT"
""",
        retries=3,
        retry_delay=timedelta(seconds=1),  # written as 1s
        retry_backoff=2.0,  # waits 1s, then 2s, then 4s
        timeout="30s",
    )
    use = python(
        "use_answer",
        'assert params["answer"] == "42", params\noutputs["ok"] = True\n',
        params={"answer": call.outputs.answer},
    )
    call >> use  # already implied by the output in its params; written for the reader
