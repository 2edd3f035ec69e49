"""Rendering is bounded: each template bomb fails fast with an error naming the bound it hit,
ordinary templates render as before, and on the scheduler a poison template fails its task
once (not retried, not rendered again after a restart) while the other tasks go on."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.fakes import FakeClock, RecordingDispatcher

from stratoflow import _jinja_templating, engine
from stratoflow.adapters.local.sqlite_store import SqliteStore
from stratoflow.api.app import create_app
from stratoflow.engine import TaskState
from stratoflow.model import load_workflow
from stratoflow.service import Scheduler
from stratoflow.templating import Limits, TemplateError, bounded, check_syntax, render

CTX = {"params": {"region": "eu", "tables": ["a", "b"], "n": "3"}, "ds": "2026-03-07"}
BIG = "{% set a = 'A' * 1000000 %}"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NO_HURRY = Limits(seconds=60)

# (template, the bound its error must name)
BOMBS = [
    ("echo {{ 7**(7**9) }}", "max_int_bits"),
    ("{{ (2**6000) * (2**6000) }}", "max_int_bits"),
    ("{{ 1.5 | round(999999999, 'ceil') }}", "max_int_bits"),
    ("{{ 'A' * 2000000000 }}", "max_chars"),
    ("{{ 2000000000 * 'A' }}", "max_chars"),
    ("{{ [1, 2] * 2000000000 }}", "max_chars"),
    ("{{ '%999999999d' % 1 }}", "max_width"),
    ("{{ '%.999999999f' % 1.5 }}", "max_width"),
    ("{{ '%*d' % (999999999, 1) }}", "max_width"),
    ("{{ '%999999999d' | format(1) }}", "max_width"),
    ("{{ '{:>999999999}'.format(1) }}", "max_width"),
    ("{{ '{:{}}'.format(1, 999999999) }}", "max_width"),
    ("{{ '{a:>{w}}'.format_map({'a': 1, 'w': 999999999}) }}", "max_width"),
    ("{{ 'x' | center(999999999) }}", "max_width"),
    ("{{ 'x' | indent(999999999) }}", "max_width"),
    ("{{ 'x' | wordwrap(999999999) }}", "max_width"),
    ("{{ [1] | batch(999999999, 0) | list }}", "max_width"),
    ("{{ [1] | slice(999999999) | list }}", "max_width"),
    ("{{ 'x'.center(999999999) }}", "max_width"),
    ("{{ 'x'.rjust(999999999) }}", "max_width"),
    ("{{ 'x'.zfill(999999999) }}", "max_width"),
    ("{{ ('\t' * 100).expandtabs(999999999) }}", "max_width"),
    ("{{ range(999999999) | list }}", "max_range"),
    ("{{ range(10**30) | list }}", "max_range"),
    ("{% for i in range(100001) %}{% endfor %}", "max_range"),
    ("{{ lipsum(99999999) }}", "max_chars"),
    (BIG + "{{ a ~ a }}", "max_chars"),
    (BIG + "{{ a + a }}", "max_chars"),
    (BIG + "{{ [a, a] | join }}", "max_chars"),
    (BIG + "{{ ','.join([a, a]) }}", "max_chars"),
    (BIG + "{{ '%s%s' % (a, a) }}", "max_chars"),
    (BIG + "{{ '%(a)s%(a)s' % {'a': a} }}", "max_chars"),
    (BIG + "{{ '{0}{0}'.format(a) }}", "max_chars"),
    (BIG + "{{ a }}{{ a }}", "max_chars"),
    (BIG + "{{ a | tojson }}", "max_chars"),
    # an indent is a width, and the lines it pads are counted before anything is written
    ("{{ range(10) | list | tojson(indent=10000000) | length }}", "max_width"),
    ("{{ [1] | tojson(indent='x' * 999999) }}", "max_width"),
    ("{{ range(1000) | list | tojson(indent=5000) | length }}", "max_chars"),
    ("{{ ('A' * 1000) | replace('A', 'B' * 100000) }}", "max_chars"),
    ("{{ ('A' * 1000).replace('A', 'B' * 100000) }}", "max_chars"),
    ("{{ 'x\ny' | indent('A' * 900000) }}", "max_chars"),
    # Markup's methods, and a list printed before it is replaced in
    ("{{ (('A' * 1000) | safe).replace('A', 'B' * 100000) }}", "max_chars"),
    ("{{ ('x' | safe).center(999999999) }}", "max_width"),
    ("{{ ([1] * 30000) | replace('1', 'X' * 1000) }}", "max_chars"),
    ("{{ ('A' * 2000) | replace('A', 10 ** 999) }}", "max_chars"),
    ("{{ [[1] * 1000] * 1000 }}", "max_chars"),
    # doubling in a loop, by every means of concatenating
    (
        "{% set ns = namespace(s='A') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "max_chars",
    ),
    (
        "{% set ns = namespace(s='A') %}{% for i in range(40) %}"
        "{% set s %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = s %}{% endfor %}",
        "max_chars",
    ),
    # a block or macro that writes a bounded piece many times
    (
        "{% set a = 'A' * 500000 %}{% set b %}{% for i in range(100) %}{{ a }}{% endfor %}"
        "{% endset %}{{ b | length }}",
        "max_chars",
    ),
    (
        "{% macro m(x) %}{% for i in range(100) %}{{ x }}{% endfor %}{% endmacro %}"
        "{{ m('A' * 500000) | length }}",
        "max_chars",
    ),
    # structures that share their parts: small to build, exponential to print or hash
    (
        "{% set ns = namespace(t=1) %}{% for i in range(100) %}"
        "{% set ns.t = [ns.t, ns.t] %}{% endfor %}{{ ns.t }}",
        "max_chars",
    ),
    (BIG + "{% set b = [a, a, a, a, a, a, a, a, a, a] %}{{ b | length }}", "max_chars"),
    ("{% set a = [[1] * 1000] * 999 %}{{ a | sum(start=[]) | length }}", "max_chars"),
]


@pytest.mark.parametrize(("template", "bound"), BOMBS, ids=[b[0][-48:] for b in BOMBS])
def test_a_template_bomb_fails_naming_its_bound(template: str, bound: str) -> None:
    # a deadline far off, so that a loaded machine cannot make the deadline answer first
    with bounded(NO_HURRY), pytest.raises(TemplateError) as caught:
        render(template, CTX)
    message = str(caught.value)
    assert bound in message
    assert "over" in message


def test_the_bombs_stay_within_a_bounded_memory() -> None:
    # every bomb above, in one process: the peak stays far below what any of them asks for
    # (Python's own allocations, traced: the process's maximum RSS would be that of every
    # test before this one in the same pytest run)
    tracemalloc.start()
    try:
        for template, _ in BOMBS:
            with bounded(NO_HURRY), pytest.raises(TemplateError):
                render(template, CTX)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    peak_mb = peak / (1 << 20)
    assert peak_mb < 256  # 'A' * 2000000000 alone would be 2 GB; 7**(7**9) 14 MB and hours


@pytest.mark.parametrize(
    "template",
    [
        # ~8,000,000 characters of indentation: refused before json writes any of it
        "{{ range(1000) | list | tojson(indent=8000) | length }}",
        "{{ range(1000) | list | tojson(indent='\t' * 8000) | length }}",
        # nested: each level indents its items once more (~7,800,000 characters)
        "{% set ns = namespace(t=[1]) %}{% for i in range(250) %}{% set ns.t = [ns.t, 1] %}"
        "{% endfor %}{{ ns.t | tojson(indent=250) | length }}",
    ],
)
def test_an_indented_tojson_is_refused_before_it_is_written(template: str) -> None:
    with pytest.raises(TemplateError):  # compiled (and cached) outside the trace
        render(template, {})
    tracemalloc.start()
    try:
        with bounded(NO_HURRY), pytest.raises(TemplateError) as caught:
            render(template, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "the result of tojson with an indent of" in str(caught.value)
    assert "max_chars" in str(caught.value)
    assert peak < 2 << 20  # the text alone would be 8 MB


def test_an_indented_tojson_within_the_bounds_renders_as_json() -> None:
    assert render("{{ {'a': [1, 2]} | tojson(indent=2) }}", CTX) == (
        '{\n  "a": [\n    1,\n    2\n  ]\n}'
    )
    assert render("{{ [1] | tojson(indent='\t') }}", CTX) == "[\n\t1\n]"
    rendered = render("{{ range(90) | list | tojson(indent=10000) | length }}", CTX)
    assert 900_000 < int(rendered) < 1_000_000


@pytest.mark.parametrize(
    "template",
    [
        # nested loops that write nothing: only the deadline stops them
        "{% set l = 'x' * 100000 %}{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}",
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
        "{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}",
        # a loop that only calls and computes
        "{% for a in range(10000) %}{% for b in range(10000) %}{% set c = b * 2 %}"
        "{% endfor %}{% endfor %}",
        # nested tuples hashed: exponential unless the size bound stops them first
        "{% set ns = namespace(t=1) %}{% for i in range(100) %}"
        "{% set ns.t = (ns.t, ns.t) %}{% endfor %}{{ {ns.t: 1} }}",
    ],
)
def test_a_long_render_stops_at_its_deadline(template: str) -> None:
    with bounded(Limits(seconds=0.05)), pytest.raises(TemplateError) as caught:
        render(template, CTX)
    message = str(caught.value)
    assert "deadline of 0.05 s" in message or "max_chars" in message


def test_one_budget_covers_every_render_inside_it() -> None:
    # GIVEN a deadline already spent by a first render
    loop = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
    with bounded(Limits(seconds=0.05)):
        with pytest.raises(TemplateError, match="deadline"):
            render(loop, CTX)
        # THEN a second render in the same budget fails at once, even a trivial one
        with pytest.raises(TemplateError, match="deadline"):
            render("{{ params.region }}", CTX)
    # AND outside it, rendering is back to normal
    assert render("{{ params.region }}", CTX) == "eu"


class _PausedProcess:
    """``time`` as seen by a process paused for a second at each look at its monotonic clock
    (descheduled on a busy machine, or a laptop asleep), with its CPU clock as it is."""

    def __init__(self) -> None:
        self.paused = 0.0

    def monotonic(self) -> float:
        self.paused += 1.0
        return time.monotonic() + self.paused

    def thread_time(self) -> float:
        return time.thread_time()


def test_a_render_paused_past_its_deadline_is_not_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a process paused far longer than the deadline while it renders
    paused = _PausedProcess()
    monkeypatch.setattr(_jinja_templating, "time", paused)
    loop = "{% for a in range(200) %}{{ a }}{% endfor %}"
    # WHEN a task's templates render, one by one and under one budget
    assert render("echo {{ params.region }}", CTX) == "echo eu"
    with bounded(Limits(seconds=0.05)):
        assert render(loop, CTX) == "".join(map(str, range(200)))
        assert render("{{ params.tables | join(',') }}", CTX) == "a,b"
    # THEN they render: the wall clock ran for minutes, the renders used little CPU time
    assert paused.paused > 60


def test_a_paused_render_that_burns_its_cpu_time_still_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the wall clock far ahead of the CPU clock, the deadline moved on each look
    monkeypatch.setattr(_jinja_templating, "time", _PausedProcess())
    loop = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
    started = time.thread_time()
    with bounded(Limits(seconds=0.05)), pytest.raises(TemplateError) as caught:
        render(loop, CTX)
    # THEN the loop stops once it has used its CPU time, not much later
    assert "deadline of 0.05 s of CPU time" in str(caught.value)
    assert time.thread_time() - started < 2


def test_a_bound_in_a_branch_never_taken_does_not_fail_the_render() -> None:
    # constant folding runs filters at compile time: a bound hit there must not count
    template = "{% if params.region == 'us' %}{{ 'x' | center(999999) }}{% endif %}done"
    assert render(template, CTX) == "done"
    assert render(template, CTX) == "done"  # compiled and cached: the same answer


def test_a_bound_swallowed_by_a_filter_still_fails_the_render() -> None:
    # `int` catches ValueError; the bound is not one, and the budget remembers it anyway
    with pytest.raises(TemplateError, match="max_chars"):
        render("{{ ('A' * 2000000000) | int }}", CTX)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("echo {{ params.region }}", "echo eu"),
        ("{{ params.n | int + 1 }}", "4"),
        ("{{ 2 ** 10 }} {{ 7 ** 9 }} {{ 2 ** -1 }} {{ 10 ** 100 > 0 }}", "1024 40353607 0.5 True"),
        ("{{ 'ab' * 3 }}{{ 2 * 'c' }}{{ [0] * 2 }}", "abababcc[0, 0]"),
        ("{{ 'a' + 'b' }}{{ [1] + [2] }}{{ 1 + 2 }}", "ab[1, 2]3"),
        ("{{ '%05d|%-4s|%.2f' % (7, 'x', 1.234) }}", "00007|x   |1.23"),
        ("{{ '%(a)s-%(b)s' % {'a': 1, 'b': 2} }}", "1-2"),
        ("{{ '%s' | format(params.region) }}", "eu"),
        ("{{ '{:>5}|{:.3f}|{}'.format(1, 2.5, 'x') }}", "    1|2.500|x"),
        ("{{ '{r}'.format_map({'r': params.region}) }}", "eu"),
        ("{{ params.tables | join(',') }}{{ '-'.join(params.tables) }}", "a,ba-b"),
        ("{{ 'x' | center(5) }}|{{ 'a\nb' | indent(2) }}", "  x  |a\n  b"),
        ("{{ 'aaa' | replace('a', 'bb') }}{{ 'aaa'.replace('a', 'c', 2) }}", "bbbbbbcca"),
        ("{{ range(3) | list }}{{ range(1, 10, 4) | sum }}", "[0, 1, 2]15"),
        ("{{ [3, 1, 2] | sort | batch(2) | list }}", "[[1, 2], [3]]"),
        ("{{ 1.25 | round(1, 'ceil') }} {{ 'ab' ~ 1 ~ [2] }}", "1.3 ab1[2]"),
        ("{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }},{% endfor %}", "3,7,"),
        (
            "{% for t in params.tables %}{{ loop.index }}/{{ loop.length }}{{ t }} {% endfor %}",
            "1/2a 2/2b ",
        ),
        ("{% for t in [] %}x{% else %}none{% endfor %}", "none"),
        ("{% set x %}[{{ ds }}]{% endset %}{{ x }}", "[2026-03-07]"),
        ("{% macro q(v) %}'{{ v }}'{% endmacro %}{{ q(params.region) }}", "'eu'"),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "6",
        ),
        ("{{ {'a': [1, (2, 3)]} | tojson }}", '{"a": [1, [2, 3]]}'),
        ("{% filter upper %}{{ params.region }}{% endfilter %}", "EU"),
        (
            'n="${#files[@]}" h="${HOME}" b="${path%/*}" {{ ds }}',
            'n="${#files[@]}" h="${HOME}" b="${path%/*}" 2026-03-07',
        ),
        ("plain text with ${HOME} and no template", "plain text with ${HOME} and no template"),
    ],
)
def test_ordinary_templates_render_as_before(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


def test_values_up_to_the_bounds_render() -> None:
    assert len(render("{{ 'A' * 1000000 }}", CTX)) == 1_000_000
    assert len(render("{{ 'x' | center(10000) }}", CTX)) == 10_000
    assert render("{{ range(10000) | length }}", CTX) == "10000"


def test_validation_only_parses_it_never_evaluates() -> None:
    check_syntax("echo {{ 7**(7**9) }}")  # valid syntax: refused when rendered, not before
    with pytest.raises(TemplateError, match="syntax error"):
        check_syntax("echo {{ 7**(7**9) }")


POISON = """
name: poison
tasks:
  bomb: {type: shell, retries: 3, command: "echo {{ 7**(7**9) }}"}
  repeat: {type: shell, retries: 3, command: "echo {{ 'A' * 2000000000 }}"}
  fine: {type: shell, command: "echo {{ params.x }}"}
  after: {type: shell, depends_on: [fine], command: "echo {{ tasks.fine.outputs }}"}
params: {x: ok}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "state.db")
    yield opened
    opened.close()


def test_render_task_names_the_field_and_the_bound() -> None:
    spec = load_workflow(POISON)
    run, _ = engine.new_run(spec, run_id="p-1", version=1, params={}, logical_date=T0, now=T0)
    with pytest.raises(TemplateError, match=r"^command: .*max_int_bits"):
        engine.render_task(spec, run, "bomb", {})


def test_a_poison_template_fails_its_task_once_and_the_others_go_on(
    store: SqliteStore,
) -> None:
    # GIVEN a run with two template bombs next to an ordinary task
    clock, dispatcher = FakeClock(T0), RecordingDispatcher()
    scheduler = Scheduler(store, store, dispatcher, clock)
    scheduler.apply(POISON)
    run, _ = scheduler.trigger("default", "poison")
    # WHEN the scheduler turns
    scheduler.step()
    # THEN each bomb failed without a retry, its error naming the bound
    for task_id, bound in (("bomb", "max_int_bits"), ("repeat", "max_chars")):
        task = store.get_task(run.id, task_id)
        assert task.state is TaskState.FAILED
        assert task.attempt == 1
        assert task.error is not None
        assert bound in task.error
    # AND the ordinary task was dispatched, rendered
    assert dispatcher.dispatched[(run.id, "fine", 1)].task.fields["command"] == "echo ok"
    # AND a scheduler restarted on the same state renders neither bomb again
    restarted_dispatcher = RecordingDispatcher()
    restarted = Scheduler(store, store, restarted_dispatcher, clock)
    restarted.recover()
    restarted.step()
    assert not any(key[1] in ("bomb", "repeat") for key in restarted_dispatcher.dispatched)
    assert store.get_task(run.id, "bomb").attempt == 1


def test_a_trigger_request_creates_the_run_and_renders_nothing(store: SqliteStore) -> None:
    # GIVEN the API over a scheduler whose loop has not turned yet
    clock, dispatcher = FakeClock(T0), RecordingDispatcher()
    scheduler = Scheduler(store, store, dispatcher, clock)
    scheduler.apply(POISON)
    woken: list[bool] = []
    app = create_app(scheduler, on_change=lambda: woken.append(True))
    # WHEN a run of the poison workflow is triggered through it
    path = "/workflows/poison/runs"
    event = {
        "resource": "/{proxy+}", "path": path, "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None, "body": "{}",
        "isBase64Encoded": False, "requestContext": {"stage": "t", "requestId": "r", "path": path},
    }  # fmt: skip
    response = app.resolve(event, None)
    # THEN the request answered with the new run, woke the loop, and rendered nothing: the
    # bombs are still queued (a render would have failed them) and nothing was dispatched
    assert response["statusCode"] == 201
    run_id = json.loads(response["body"])["run"]["id"]
    assert woken == [True]
    assert {t.task_id: t.state for t in store.get_tasks(run_id)}["bomb"] is TaskState.QUEUED
    assert dispatcher.dispatched == {}
    # AND the loop's turn is where they fail
    scheduler.step()
    assert store.get_task(run_id, "bomb").state is TaskState.FAILED
