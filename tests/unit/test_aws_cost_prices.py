"""benchmarks/aws_cost.py prices Lambda's GB-s at the price of each function's architecture as
template.yaml deploys it: read from the template, so that the figure cannot disagree with it."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import aws_cost  # noqa: E402

X86, ARM = 0.0000166667, 0.0000133334
TASKS = 100


def measured() -> aws_cost.Measured:
    """A run that only used Lambda time: the rest of the bill at zero."""
    return aws_cost.Measured(
        kind="lambda", tasks=TASKS, seconds=1.0, requests=Counter(), invocations=Counter(),
        by_function=Counter(), sfn_side=Counter(), transitions=[3], standard_transitions=0,
        express_executions=0, rru=0.0, wru=0.0, writes=cast(Any, None), events_put=0,
        run_state="succeeded", samples={}, quiet={}, cold={},
    )  # fmt: skip


@pytest.fixture
def billed_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    # advance: 2 s at 512 MB = 1 GB-s; runner: 1 s at 1,024 MB = 1 GB-s
    monkeypatch.setattr(aws_cost, "lambda_ms", lambda m: {"advance": 2000.0, "runner": 1000.0})


def gb_s_per_task(template: Path | None = None) -> float:
    if template is not None:
        aws_cost.TEMPLATE = template
    return float(aws_cost.cost_per_task(measured())["Lambda GB-s"])


def test_the_prices_are_the_published_ones() -> None:
    assert aws_cost.LAMBDA_GB_SECOND == {"x86_64": X86, "arm64": ARM}


def test_every_function_of_the_template_is_priced_at_arm64() -> None:
    architectures = aws_cost.function_architectures()
    assert {"advance", "api", "trigger", "reconciler", "lifecycle", "runner"} <= set(architectures)
    assert set(architectures.values()) == {"arm64"}


def test_gb_s_follow_the_architecture_the_template_gives_each_function(
    billed_ms: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws_cost, "TEMPLATE", aws_cost.TEMPLATE)
    assert gb_s_per_task() == pytest.approx((ARM + ARM) / TASKS)

    # the same stack with its functions on x86_64 (the Globals' one line): advance at x86's
    # price, the runner still at the layer's architecture
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    globals_line = "    Architectures: [arm64]\n"
    assert text.count(globals_line) == 1
    x86 = tmp_path / "template.yaml"
    x86.write_text(text.replace(globals_line, "    Architectures: [x86_64]\n"), encoding="utf-8")
    assert aws_cost.function_architectures(x86)["advance"] == "x86_64"
    assert gb_s_per_task(x86) == pytest.approx((X86 + ARM) / TASKS)

    # a function that names its own architecture: its own, not the Globals'
    own = text.replace(
        "      CodeUri: functions/advance/\n",
        "      CodeUri: functions/advance/\n      Architectures: [x86_64]\n",
    )
    assert own != text
    x86.write_text(own, encoding="utf-8")
    assert aws_cost.function_architectures(x86)["advance"] == "x86_64"
    assert aws_cost.function_architectures(x86)["api"] == "arm64"
    assert gb_s_per_task(x86) == pytest.approx((X86 + ARM) / TASKS)


def test_a_layer_built_for_another_architecture_than_the_runners_is_refused(
    tmp_path: Path,
) -> None:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    layer = "      CompatibleArchitectures:\n        - arm64\n"
    assert text.count(layer) == 1
    other = tmp_path / "template.yaml"
    other.write_text(text.replace(layer, "      CompatibleArchitectures:\n        - x86_64\n"))
    with pytest.raises(ValueError, match=r"CoreLayer is built for x86_64, but projects\.py"):
        aws_cost.function_architectures(other)


def test_a_function_the_template_does_not_deploy_has_no_price() -> None:
    with pytest.raises(ValueError, match=r"nightly: not a function of template\.yaml"):
        aws_cost.gb_second_price("nightly", aws_cost.function_architectures())
