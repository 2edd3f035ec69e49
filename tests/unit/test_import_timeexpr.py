"""DolphinScheduler parameters and ``$[...]`` time expressions, and Airflow macros, rewritten
by ``stratoflow import`` into templates that render the same values: date arithmetic in
calendar days on the schedule's time zone's wall clock."""

from __future__ import annotations

import pytest

from stratoflow.importers._timeexpr import (
    AirflowDates,
    DsContext,
    Unsupported,
    java_date_format,
    js_condition,
    rewrite_airflow,
    rewrite_ds,
    time_expression,
)
from stratoflow.templating import TemplateError, render, render_condition, shift_date

# 2026-03-01 16:30 UTC is 2026-03-02 00:30 in Shanghai: a different calendar day
LOGICAL = "2026-03-01T16:30:00+00:00"


def ds(text: str, tz: str = "Asia/Shanghai", logical: str = LOGICAL, **params: str) -> str:
    ctx = DsContext(tz, {k: f"params.{k}" for k in params}, [])
    template = rewrite_ds(text, ctx)
    assert not ctx.problems, ctx.problems
    return render(
        template,
        {
            "logical_date": logical,
            "params": params,
            "run": {"id": "r1", "workflow": "w", "project": "p"},
            "task": {"id": "t"},
        },
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$[yyyyMMdd]", "20260302"),
        ("$[yyyyMMdd-1]", "20260301"),
        ("$[yyyy-MM-dd+7*2]", "2026-03-16"),
        ("$[yyyy-MM-dd HH:mm:ss]", "2026-03-02 00:30:00"),
        ("$[HHmmss-1/24]", "233000"),
        ("$[HH:mm-30/24/60]", "00:00"),
        ("$[add_months(yyyyMMdd,-1)]", "20260202"),
        ("$[add_months(yyyyMMdd,12*1)]", "20270302"),
        ("$[month_first_day(yyyy-MM-dd,-1)]", "2026-02-01"),
        ("$[month_last_day(yyyy-MM-dd,-1)]", "2026-02-28"),
        ("$[month_last_day(yyyy-MM-dd)]", "2026-03-31"),
        ("$[week_first_day(yyyy-MM-dd,0)]", "2026-03-02"),  # a Monday
        ("$[week_last_day(yyyy-MM-dd,-1)]", "2026-03-01"),
        ("$[this_day(yyyy-MM-dd)]", "2026-03-02"),
        ("$[last_day(yyyy-MM-dd)]", "2026-03-01"),
        ("$[month_begin(yyyyMMdd,1)]", "20260302"),
        ("$[month_end(yyyyMMdd,-1)]", "20260330"),
        ("${system.biz.date}", "20260301"),
        ("${system.biz.curdate}", "20260302"),
        ("${system.datetime}", "20260302003000"),
        ("${system.workflow.instance.id}/${system.task.definition.name}", "r1/t"),
    ],
)
def test_dolphinscheduler_time_expressions(expression: str, expected: str) -> None:
    assert ds(expression) == expected


def test_days_are_calendar_days_across_a_daylight_saving_change() -> None:
    # GIVEN 2026-03-09 00:30 in New York, the day after the clocks went forward (23-hour day)
    logical = "2026-03-09T04:30:00+00:00"
    # THEN one day back is the 8th at the same wall time (24 hours back would be 23:30 on the 7th)
    assert ds("$[yyyy-MM-dd HH:mm-1]", "America/New_York", logical) == "2026-03-08 00:30"
    assert ds("$[yyyy-MM-dd HH:mm-24/24]", "America/New_York", logical) == "2026-03-08 00:30"
    # while an offset that is not whole days is elapsed time: 1439 minutes back crosses the
    # lost hour and lands on the 7th
    assert ds("$[yyyy-MM-dd HH:mm-1439/24/60]", "America/New_York", logical) == "2026-03-07 23:31"


def test_hours_are_elapsed_time_across_a_daylight_saving_change() -> None:
    # 2026-03-08 03:30 EDT minus one hour is 01:30 EST (02:30 does not exist that night)
    assert ds("$[HH:mm-1/24]", "America/New_York", "2026-03-08T07:30:00+00:00") == "01:30"


def test_parameters_and_literal_braces() -> None:
    assert ds("echo ${dt} ${UNKNOWN} $HOME", dt="2026") == "echo 2026 ${UNKNOWN} $HOME"
    assert ds("echo '{{ not a template }}' {% x %}") == "echo '{{ not a template }}' {% x %}"


@pytest.mark.parametrize(
    "expression",
    ["year_week(yyyy-MM-dd)", "timestamp(yyyyMMdd)", "yyyyMMddEEE", "yyyyMMdd-1/7"],
)
def test_expressions_without_an_equivalent_are_refused(expression: str) -> None:
    with pytest.raises(Unsupported):
        time_expression(expression, "UTC")


def test_unsupported_expressions_are_reported_and_left_as_written() -> None:
    ctx = DsContext("UTC", {}, [])
    assert rewrite_ds("x $[year_week(yyyy-MM-dd)] ${system.task.execute.path}", ctx) == (
        "x $[year_week(yyyy-MM-dd)] ${system.task.execute.path}"
    )
    assert len(ctx.problems) == 2


def test_java_patterns() -> None:
    assert java_date_format("yyyy-MM-dd HH:mm:ss") == "%Y-%m-%d %H:%M:%S"
    assert java_date_format("yy/MM 100%") == "%y/%m 100%%"


def _js(condition: str, types: dict[str, str] | None = None, **params: object) -> bool:
    """What the converted condition decides for these params (each declared VARCHAR unless
    ``types`` says otherwise)."""
    ctx = DsContext("UTC", {k: f"params.{k}" for k in params}, [], types=types or {})
    expr, _ = js_condition(condition, ctx)
    return render_condition("{{ " + expr + " }}", {"params": params})


def test_switch_conditions_from_javascript() -> None:
    condition = '${n} > 1 && ${s} === "eu" || !(${n} == 3)'
    assert _js(condition, n="2", s="eu") is True
    assert _js(condition, n="3", s="us") is False
    assert _js(condition, n="4", s="us") is True


@pytest.mark.parametrize(
    ("condition", "types", "params", "taken"),
    [
        # a parameter is pasted in as text: a number literal when its text is one
        ("${rows} > 0", {"rows": "INTEGER"}, {"rows": "42"}, True),
        ("${rows} > 0", {}, {"rows": "42"}, True),
        ("${status} == 1", {}, {"status": "1"}, True),
        ("${status} == 1", {}, {"status": "01"}, True),
        ("${status} == '1'", {}, {"status": "1.0"}, True),  # 1.0 == "1": JavaScript converts
        ("${status} === 1", {}, {"status": "1"}, True),
        # inside a string literal, its text
        ("'${n}' == '5'", {}, {"n": "5"}, True),
        ("'${n}' == '5'", {}, {"n": "6"}, False),
        ('"v${n}" == "v5"', {"n": "INTEGER"}, {"n": "5"}, True),
        ("'${n}' === 5", {}, {"n": "5"}, False),  # a string is never === a number
        ('${region} == "eu"', {}, {"region": "eu"}, True),
        ("${region} > 3", {}, {"region": "eu"}, False),  # NaN: false, not a failed task
        ("${a} < ${b}", {}, {"a": "9", "b": "10"}, True),  # as numbers
        ("'${a}' < '${b}'", {}, {"a": "9", "b": "10"}, False),  # as strings
        ("${flag}", {"flag": "BOOLEAN"}, {"flag": "true"}, True),
        ("${flag}", {}, {"flag": "true"}, False),  # the string "true" is not true
        ("${n}", {}, {"n": "1"}, False),  # nor is 1: DolphinScheduler wants the boolean
        ("!${flag} || ${n} * 2 == 10", {"flag": "BOOLEAN"}, {"flag": "true", "n": "5"}, True),
        ("${n} % 3 == -1", {}, {"n": "-7"}, True),
        ("(${n} + 1) + '' == '61'", {"n": "INTEGER"}, {"n": "6"}, False),  # 7 + '' = '7'
        ("${n} + 1 == '51'", {}, {"n": "5"}, False),  # a number: 6
        ("${s} + 1 == 'x1'", {}, {"s": "x"}, True),
        ("true && null == undefined", {}, {}, True),
        ("0x10 == 16 && 1e1 == 10 && .5 == 0.5", {}, {}, True),
        ("'it\\'s' == \"it's\"", {}, {}, True),
    ],
)
def test_switch_conditions_keep_javascript_s_meaning(
    condition: str, types: dict[str, str], params: dict[str, object], taken: bool
) -> None:
    assert _js(condition, types, **params) is taken


@pytest.mark.parametrize(
    "condition",
    ["${s}.startsWith('a')", "[1, 2].includes(${n})", "${n} > 1 ? true : false", "${x} == 1",
     "Math.max(${n}, 1) > 2", "(${n} > 1", "${n} >", ""],
)  # fmt: skip
def test_javascript_the_importer_does_not_convert_is_refused(condition: str) -> None:
    ctx = DsContext("UTC", {"n": "params.n", "s": "params.s"}, [])
    with pytest.raises(Unsupported):
        js_condition(condition, ctx)


@pytest.mark.parametrize(
    ("condition", "expr"),
    [
        # text that is no number: JavaScript's == says what Python's does of the plain value
        ('${region} == "eu"', "(params.region == 'eu')"),
        ("'eu' != ${region}", "(params.region != 'eu')"),
        ('${region} == "5"', "((params.region | js_value) | js_op('==', '5'))"),
        ("${n} > 3", "((params.n | js_value('number')) > 3)"),
        ("${n}", "(((params.n | js_value('number'))) is true)"),
    ],
)
def test_what_a_condition_is_written_as(condition: str, expr: str) -> None:
    ctx = DsContext("UTC", {"region": "params.region", "n": "params.n"}, [], types={"n": "LONG"})
    assert js_condition(condition, ctx) == (expr, [])


def test_a_varchar_compared_by_order_or_strictly_is_a_caveat() -> None:
    ctx = DsContext("UTC", {"a": "params.a", "b": "params.b"}, [], types={"b": "INTEGER"})
    assert js_condition("${a} == 1 && ${a} > 1 && ${b} > 1", ctx)[1] == []
    _, caveats = js_condition("${a} > ${b} || ${a} === '1'", ctx)
    assert len(caveats) == 1
    assert "${a}" in caveats[0]
    assert "3.1" in caveats[0]


def test_airflow_macros() -> None:
    problems: list[str] = []
    text = "{{ ds }} {{ ds_nodash }} {{ macros.ds_add(ds, -2) }} {{ run_id }} {{ params.x | upper }} {{ 'ds' }}"
    out = rewrite_airflow(text, AirflowDates(), problems)
    assert not problems
    rendered = render(
        out,
        {
            "logical_date": LOGICAL,
            "ds": "2026-03-01",
            "ds_nodash": "20260301",
            "run": {"id": "r1"},
            "params": {"x": "a"},
        },
    )
    assert rendered == "2026-03-01 20260301 2026-02-27 r1 A ds"


def test_airflow2_dates_are_the_interval_start() -> None:
    problems: list[str] = []
    out = rewrite_airflow("{{ ds }}/{{ yesterday_ds_nodash }}", AirflowDates(days=-1), problems)
    assert render(out, {"logical_date": LOGICAL}) == "2026-02-28/20260227"
    # ds_add reads the same ds: the interval's start, moved back once, not twice
    out = rewrite_airflow(
        "{{ macros.ds_add(ds, 0) }} {{ macros.ds_add(ds, 3) }} {{ macros.ds_add(ds, -1) }}",
        AirflowDates(days=-1),
        problems,
    )
    assert render(out, {"logical_date": LOGICAL}) == "2026-02-28 2026-03-03 2026-02-27"
    weekly = rewrite_airflow("{{ macros.ds_add(ds, 1) }}", AirflowDates(days=-7), problems)
    assert render(weekly, {"logical_date": LOGICAL}) == "2026-02-23"
    assert not problems
    rewrite_airflow("{{ ti.xcom_pull(task_ids='a') }} {{ var.value.k }}", AirflowDates(), problems)
    assert len(problems) == 1  # var.value.k is a project variable: kept as it is
    assert "ti.xcom_pull" in problems[0]
    changes: list[str] = []
    out = rewrite_airflow(
        "{{ ti.xcom_pull(task_ids='a', key='k') }} {{ ti.xcom_pull(key='k', task_ids='gone') }}"
        " {{ ti.xcom_pull(task_ids=['a'], key='k') }} {{ ti.xcom_pull(task_ids=t, key='k') }}",
        AirflowDates(),
        problems,
        {"a": "a"},
        changes,
    )
    assert out.startswith("{{ tasks.a.outputs.k }} {{ ti.xcom_pull(key='k', task_ids='gone') }}")
    assert "ti.xcom_pull(task_ids=['a']" in out
    assert len(changes) == 1


def test_shift_date_filter_is_bounded_and_checked() -> None:
    assert shift_date("2026-01-31T12:00:00+00:00", "%Y-%m-%d", "UTC", months=1) == "2026-02-28"
    assert shift_date("2026-03-01T00:00:00", "%d", "Europe/Berlin", to="month_end") == "31"
    # read, and shifted, on Berlin's clock; written on another
    berlin = "2026-03-30T01:00:00+02:00"
    assert shift_date(berlin, "%Y-%m-%d %H", "Europe/Berlin", days=-1) == "2026-03-29 01"
    assert shift_date(berlin, "%Y-%m-%d %H", "Europe/Berlin", days=-1, out_tz="UTC") == (
        "2026-03-29 00"
    )
    assert shift_date(berlin, "%H:%M", "UTC", out_tz="Asia/Kolkata") == "04:30"
    for bad in (
        {"tz": "../../etc/passwd"},
        {"tz": "Mars/Olympus"},
        {"out_tz": "../../etc/passwd"},
        {"out_tz": "Mars/Olympus"},
        {"out_tz": 5},
        {"days": 10**9},
        {"days": 1.5},
        {"to": "year_end"},
        {"fmt": "%Y" * 40},
    ):
        with pytest.raises(TemplateError):
            shift_date(LOGICAL, **bad)  # type: ignore[arg-type]
    with pytest.raises(TemplateError):
        shift_date("yesterday")
    with pytest.raises(TemplateError, match="shift_date"):
        render(
            "{{ logical_date | shift_date('%Y', 'UTC', days=-10000000) }}",
            {"logical_date": LOGICAL},
        )


def test_a_method_of_an_airflow_datetime_is_reported() -> None:
    """Airflow's execution_date and logical_date are datetimes; Stratoflow's is text, so
    ``.strftime(...)`` or ``.year`` fails every render: said at import, not at run time."""
    problems: list[str] = []
    out = rewrite_airflow(
        "{{ execution_date.strftime('%Y') }} {{ logical_date.year }} {{ ds }}",
        AirflowDates(),
        problems,
    )
    assert out.startswith("{{ logical_date.strftime('%Y') }}")
    assert [p.split(":")[0] for p in problems] == [
        "the template reads 'execution_date.strftime'",
        "the template reads 'logical_date.year'",
    ]
    assert all("shift_date" in p for p in problems)


@pytest.mark.parametrize(
    ("condition", "params", "expected"),
    [
        ("${a} - 1 && true", {"a": "abc"}, False),  # NaN && true is NaN: falsy, not true
        ("${a} - 1 || true", {"a": "abc"}, True),  # NaN || true is true
        ("(${a} * 1) && ${b} == 'x'", {"a": "n/a", "b": "x"}, False),
        ("${a} && true", {"a": "0"}, False),  # 0 && true is 0
        ("${a} && true", {"a": "abc"}, True),  # a non-empty string is truthy
    ],
)
def test_switch_and_or_keep_javascripts_nan_falsy(
    condition: str, params: dict[str, str], expected: bool
) -> None:
    assert _js(condition, **params) is expected


@pytest.mark.parametrize(
    ("condition", "params", "expected"),
    [
        ("1e400 > 5", {}, True),  # Infinity, not the undefined name inf
        ("-1e400 < 5", {}, True),
        ("1" + "0" * 5000 + " > 5", {}, True),  # a long literal is Infinity, not a crash
        ("${a} == 1", {"a": "1" + "0" * 5000}, False),
        ("${a} > 1", {"a": "1" + "0" * 5000}, True),
        # JavaScript's numbers are doubles: 2**53 + 1 is 2**53
        ("${a} == 9007199254740992", {"a": "9007199254740993"}, True),
        ("9007199254740993 == 9007199254740992", {}, True),
    ],
)
def test_switch_numbers_are_javascripts_doubles(
    condition: str, params: dict[str, str], expected: bool
) -> None:
    assert _js(condition, **params) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("'\\x41' == 'A'", True),
        ("'\\u0041\\u00e9' == 'A\u00e9'", True),
        ("'\\u{1F600}' == '\U0001f600'", True),
        ("'\\ud83d\\ude00' == '\U0001f600'", True),  # a surrogate pair is one character
        ("'a\\qb' == 'aqb'", True),  # any other escaped character is itself
    ],
)
def test_switch_string_escapes_are_javascripts(condition: str, expected: bool) -> None:
    assert _js(condition) is expected


@pytest.mark.parametrize(
    ("condition", "params", "expected"),
    [
        # JavaScript orders strings by UTF-16 units: an astral character (a surrogate pair,
        # from 0xD800) sorts before U+FFFF, where Python's code points say after
        ("'${a}' < '\\uffff'", {"a": "\U0001f600"}, True),
        ("'\U0001f600' > '\\uffff'", {}, False),
        ("'${a}' < 'b'", {"a": "a"}, True),
    ],
)
def test_switch_string_order_is_javascripts(
    condition: str, params: dict[str, str], expected: bool
) -> None:
    assert _js(condition, **params) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # 2**30 + 1 squared is 2**60 + 2**31 + 1, which a double rounds to 2**60 + 2**31
        ("${a} * ${a} == 1152921506754330624", True),
        ("${a} * ${a} - 1152921506754330624 == 0", True),
        ("${big} + 1 == ${big}", True),  # 2**53 + 1 is 2**53
    ],
)
def test_switch_arithmetic_rounds_as_javascripts_doubles(condition: str, expected: bool) -> None:
    types = {"a": "INTEGER", "big": "LONG"}
    assert _js(condition, types, a="1073741825", big="9007199254740992") is expected
