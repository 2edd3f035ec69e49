"""stratoflow.sdk: the builder and the decorators give the document a YAML file holds, are
validated by the model with the model's messages, and point at the lines of the Python file."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stratoflow.errors import InvalidInput
from stratoflow.model import load_workflow
from stratoflow.model._loader import load_yaml
from stratoflow.sdk import (
    Task,
    Workflow,
    batch,
    case,
    http,
    kubernetes,
    lambda_,
    load_module_workflows,
    python,
    shell,
    switch,
    task,
    workflow,
)


def same_as_yaml(wf: Workflow, text: str) -> None:
    """The SDK's document is what the YAML loads into, and both validate to one digest."""
    text = textwrap.dedent(text)
    assert wf.to_dict() == yaml.safe_load(text)
    assert wf.spec().digest == load_workflow(text).digest
    assert yaml.safe_load(wf.to_yaml()) == wf.to_dict()


def test_builder_with_context_and_shift_operators() -> None:
    with Workflow("chain", params={"n": 3}, defaults={"retries": 1}) as wf:
        a = shell("a", "echo a")
        b = shell("b", "echo b", timeout=timedelta(minutes=5))
        c = shell("c", "echo c")
        d = shell("d", "echo d", trigger_rule="all_done")
        a >> [b, c]
        [b, c] >> d
    same_as_yaml(
        wf,
        """
        name: chain
        params: {n: 3}
        defaults: {retries: 1}
        tasks:
          a: {type: shell, command: echo a}
          b: {type: shell, command: echo b, timeout: 5m, depends_on: [a]}
          c: {type: shell, command: echo c, depends_on: [a]}
          d: {type: shell, command: echo d, trigger_rule: all_done, depends_on: [b, c]}
        """,
    )


def test_left_shift_after_and_depends_on_count_a_dependency_once() -> None:
    with Workflow("deps") as wf:
        a = shell("a", "echo a")
        b = shell("b", "echo b", depends_on=[a])
        b << a  # already there
        c = shell("c", "echo c").after(a, "b", [b])
        [c] << a
    assert wf["b"].upstream == ["a"]
    assert wf["c"].upstream == ["a", "b"]


def test_every_task_helper_writes_its_type_and_fields() -> None:
    with Workflow("kinds", project="analytics", schedule="0 2 * * *", params={"big": True}) as wf:
        shell("sh", "echo", runner="batch", env={"A": "1"})
        python("py", callable="pkg.mod:fn")
        http("web", "https://example.com", method="POST", body={"k": 1}, expected_status=[200])
        batch("job", "img:1", ["run", "--fast"], vcpus=2, memory=4096, job_queue="q")
        kubernetes("pod", "img:1", "run", namespace="ns", cpu="500m", memory="1Gi")
        lambda_("fn", "my-function", payload={"x": "{{ ds }}"})
        route = switch("route", [case("{{ params.big }}", "job", "pod")], default=["fn"])
        route >> [wf["job"], wf["pod"], wf["fn"]]
        Task("custom", "shell", command="echo generic", retries=2)
    same_as_yaml(
        wf,
        """
        name: kinds
        project: analytics
        schedule: {cron: "0 2 * * *"}
        params: {big: true}
        tasks:
          sh: {type: shell, command: echo, runner: batch, env: {A: "1"}}
          py: {type: python, callable: "pkg.mod:fn"}
          web: {type: http, url: "https://example.com", method: POST, body: {k: 1}, expected_status: [200]}
          job: {type: batch, image: "img:1", command: [run, --fast], vcpus: 2, memory: 4096, job_queue: q, depends_on: [route]}
          pod: {type: kubernetes, image: "img:1", command: run, namespace: ns, cpu: 500m, memory: 1Gi, depends_on: [route]}
          fn: {type: lambda, function: my-function, payload: {x: "{{ ds }}"}, depends_on: [route]}
          route:
            type: switch
            cases: [{when: "{{ params.big }}", next: [job, pod]}]
            default: [fn]
          custom: {type: shell, command: echo generic, retries: 2}
        """,
    )


def test_outputs_render_as_templates() -> None:
    t = shell("t", "echo")
    assert str(t.outputs.rows) == "{{ tasks.t.outputs.rows }}"
    assert str(t.outputs["body.status"]) == "{{ tasks.t.outputs.body.status }}"
    assert str(t.outputs.body["my-key"]) == "{{ tasks.t.outputs.body['my-key'] }}"
    assert f"n={t.outputs.rows}" == "n={{ tasks.t.outputs.rows }}"


def test_a_function_becomes_its_importable_callable_reference() -> None:
    assert python("p", callable=textwrap.dedent).fields["callable"] == "textwrap:dedent"

    def local() -> None: ...

    with pytest.raises(InvalidInput, match="top level of an importable module"):
        python("p", callable=local)


def test_taskflow_body_params_and_output_dependencies() -> None:
    @task(retries=2)
    def double(params: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Doubles the rows."""
        # a comment survives
        rows = int(params["rows"])
        outputs["doubled"] = sum(rows * k for k in (2,))

    @workflow(params={"region": "eu"})
    def flow() -> None:
        """Made by decorators."""
        first = shell("first", "echo rows=4 >> $STRATOFLOW_OUTPUT")
        double(rows=first.outputs.rows)

    assert isinstance(flow, Workflow)
    same_as_yaml(
        flow,
        """
        name: flow
        description: Made by decorators.
        params: {region: eu}
        tasks:
          first: {type: shell, command: echo rows=4 >> $STRATOFLOW_OUTPUT}
          double:
            type: python
            description: Doubles the rows.
            retries: 2
            depends_on: [first]
            params: {rows: "{{ tasks.first.outputs.rows }}"}
            code: |
              # a comment survives
              rows = int(params["rows"])
              outputs["doubled"] = sum(rows * k for k in (2,))
        """,
    )


def test_taskflow_callable_mode_names_the_function() -> None:
    fn = task(callable=True, task_id="dedent", description="strip")(textwrap.dedent)
    assert fn.function is textwrap.dedent
    with Workflow("c") as wf:
        fn(text="x")
    assert wf.to_dict()["tasks"]["dedent"] == {
        "type": "python",
        "description": "strip",
        "callable": "textwrap:dedent",
        "params": {"text": "x"},
    }


def test_a_function_without_source_is_refused() -> None:
    scope: dict[str, Any] = {}
    exec("def t(params):\n    pass\n", scope)
    with pytest.raises(InvalidInput, match="its source is not available"):
        task(scope["t"])


def _module(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (  # a module-level name is not there when the code runs on its own
            """
            import json
            from stratoflow.sdk import task

            @task
            def t(params):
                outputs["x"] = json.dumps(params)
            """,
            5,
            "uses 'json' from outside it",
        ),
        (
            """
            from stratoflow.sdk import task

            @task
            def t(params):
                if params:
                    return 1
            """,
            7,
            "cannot return",
        ),
        (
            """
            from stratoflow.sdk import task

            @task
            def t(params, rows):
                pass
            """,
            4,
            "takes only params, outputs or context",
        ),
        (
            """
            from stratoflow.sdk import task

            def outer():
                limit = 3
                @task
                def t(params):
                    outputs["ok"] = limit
            outer()
            """,
            6,
            "uses 'limit' from outside it",
        ),
    ],
)
def test_inline_task_bodies_that_cannot_run_alone_are_refused_at_their_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = _module(tmp_path, "sdk_bad_task", text)
    with pytest.raises(InvalidInput) as exc:
        load_module_workflows(path)
    assert str(exc.value).startswith(f"{path}: module (line {line}): @task t: ")
    assert words in str(exc.value)


def test_validation_is_the_models_with_python_lines(tmp_path: Path) -> None:
    path = _module(
        tmp_path,
        "sdk_invalid",
        """
        from stratoflow.sdk import Workflow, shell

        with Workflow("invalid") as wf:
            a = shell("a", "echo a")
            b = shell("b", "echo b", retries=500)
            c = shell("c", "echo", bogus=1)
        """,
    )
    [wf] = load_module_workflows(path)
    with pytest.raises(InvalidInput) as exc:
        wf.spec(source=str(path))
    yaml_form = textwrap.dedent(
        """\
        name: invalid
        tasks:
          a: {type: shell, command: echo a}
          b: {type: shell, command: echo b, retries: 500}
          c: {type: shell, command: echo, bogus: 1}
        """
    )
    with pytest.raises(InvalidInput) as from_yaml:
        load_workflow(yaml_form)
    messages = [(p.path, p.message) for p in exc.value.problems]
    assert messages == [(p.path, p.message) for p in from_yaml.value.problems]
    assert [p.line for p in exc.value.problems] == [6, 7]  # where b and c were made
    assert str(exc.value).startswith(f"{path}: 2 problems:")


def test_a_cycle_and_an_unknown_dependency_read_as_in_yaml() -> None:
    with Workflow("loop") as wf:
        a, b = shell("a", "x"), shell("b", "x")
        a >> b >> a
        shell("c", "x").after("nowhere")
    with pytest.raises(InvalidInput) as exc:
        wf.spec()
    text = "name: loop\ntasks:\n  a: {type: shell, command: x, depends_on: [b]}\n"
    text += "  b: {type: shell, command: x, depends_on: [a]}\n"
    text += "  c: {type: shell, command: x, depends_on: [nowhere]}\n"
    with pytest.raises(InvalidInput) as from_yaml:
        load_workflow(text)
    assert [p.message for p in exc.value.problems] == [p.message for p in from_yaml.value.problems]


def test_a_duplicate_task_id_is_refused_where_it_is_made() -> None:
    with Workflow("dup"):
        shell("a", "echo")
        with pytest.raises(InvalidInput) as exc:
            shell("a", "echo again")
    [problem] = exc.value.problems
    assert problem.path == "tasks.a"
    assert problem.message.startswith("duplicate task id 'a' (first at line ")
    assert problem.line is not None


def test_a_task_belongs_to_one_workflow() -> None:
    t = shell("t", "echo")
    Workflow("one", tasks=[t])
    with pytest.raises(InvalidInput, match="already belongs to workflow 'one'"):
        Workflow("two", tasks=[t])


def test_values_yaml_cannot_hold_are_refused_by_path() -> None:
    with Workflow("odd") as wf:
        shell("t", "echo", params={"when": {1, 2}})
    with pytest.raises(InvalidInput, match=r"tasks\.t\.params\.when: a set cannot be written"):
        wf.spec()


def test_shift_refuses_what_is_not_a_task() -> None:
    with pytest.raises(TypeError, match=">> links tasks"):
        shell("a", "x") >> "b"  # type: ignore[operator]


# ------------------------------------------------------------------ module discovery
def test_discovery_takes_every_top_level_workflow_in_order(tmp_path: Path) -> None:
    path = _module(
        tmp_path,
        "sdk_several",
        """
        from stratoflow.sdk import Workflow, shell, workflow

        second = Workflow("second", tasks=[shell("t", "echo")])

        @workflow
        def first():
            shell("t", "echo")

        alias = second  # the same object counts once
        """,
    )
    assert [wf.name for wf in load_module_workflows(path)] == ["second", "first"]


def test_a_workflows_list_chooses_and_orders(tmp_path: Path) -> None:
    path = _module(
        tmp_path,
        "sdk_listed",
        """
        from stratoflow.sdk import Workflow, shell

        def make(region):
            return Workflow(f"load_{region}", tasks=[shell("t", f"echo {region}")])

        ignored = make("us")
        workflows = [make("eu"), make("ap")]
        """,
    )
    assert [wf.name for wf in load_module_workflows(path)] == ["load_eu", "load_ap"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1\n", "module: it defines no workflow"),
        ("workflows = [1]\n", "module: the module's `workflows` must be a list"),
        ("x = (\n", "module (line 1): invalid Python: '(' was never closed"),
        ("\n\nraise RuntimeError('boom')\n", "module (line 3): RuntimeError: boom"),
        ("import sys\nsys.exit(3)\n", "module (line 2): SystemExit: 3"),
        (
            "from stratoflow.sdk import Workflow, shell\n"
            "a = Workflow('same', tasks=[shell('t', 'x')])\n"
            "b = Workflow('same', tasks=[shell('t', 'x')])\n",
            "module (line 3): two workflows named default/same (the first at line 2)",
        ),
    ],
)
def test_module_problems_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sdk_mod.py"
    path.write_text(text)
    with pytest.raises(InvalidInput) as exc:
        load_module_workflows(path)
    assert str(exc.value).startswith(f"{path}: {message}")


def test_a_module_without_workflows_may_be_skipped(tmp_path: Path) -> None:
    assert load_module_workflows(_module(tmp_path, "sdk_helpers", "X = 1\n"), required=False) == []


def test_a_module_is_imported_under_its_package_name(tmp_path: Path) -> None:
    package = tmp_path / "dags_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "common.py").write_text("REGION = 'eu'\n")
    path = package / "daily.py"
    path.write_text(
        textwrap.dedent(
            """
            from stratoflow.sdk import Workflow, task
            from dags_pkg.common import REGION

            @task(callable=True)
            def report(params):
                return {"region": params["region"]}

            with Workflow("daily", params={"region": REGION}) as wf:
                report()
            """
        )
    )
    [wf] = load_module_workflows(path)
    assert wf.to_dict()["tasks"]["report"]["callable"] == "dags_pkg.daily:report"
    assert wf.to_dict()["params"] == {"region": "eu"}


# ------------------------------------------------------------------ the YAML the CLI sends
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
_VALUES = st.one_of(
    _TEXT,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


@settings(max_examples=150, deadline=None)
@given(_TEXT, _TEXT, st.dictionaries(_TEXT, _VALUES, max_size=4))
def test_the_rendered_yaml_loads_back_to_the_same_document(
    command: str, description: str, params: dict[str, Any]
) -> None:
    """Whatever the text (line breaks YAML knows as NEL or LS, quotes, 'yes', '1e3', control
    characters), the real loader reads the rendered YAML back to the very same document."""
    wf = Workflow("w", description=description, tasks=[shell("t", command, params=params)])
    data, _ = load_yaml(wf.to_yaml(header="rendered"))
    assert data == wf.to_dict()


def test_what_the_yaml_loader_refuses_is_refused_before_sending() -> None:
    wf = Workflow("big", tasks=[shell("t", "echo", params={"n": 2**64})])
    wf.spec()  # the model alone takes any integer
    with pytest.raises(InvalidInput, match="integer 18446744073709551616 is out of range"):
        wf.checked_yaml(source="flow.py")
    spec, text = Workflow("ok", tasks=[shell("t", "echo")]).checked_yaml(header="from flow.py")
    assert text.startswith("# from flow.py\n")
    assert spec.digest == load_workflow(text).digest


def test_override_adds_one_function_twice_under_two_ids() -> None:
    @task
    def load(params: dict[str, Any]) -> None:
        print(params["region"])

    with Workflow("regions") as wf:
        load.override(task_id="load_eu")(region="eu")
        load.override(task_id="load_us", retries=3)(region="us")
        with pytest.raises(InvalidInput, match="duplicate task id 'load_eu'"):
            load.override(task_id="load_eu")()
    tasks = wf.to_dict()["tasks"]
    assert tasks["load_eu"] == {
        "type": "python",
        "code": 'print(params["region"])\n',
        "params": {"region": "eu"},
    }
    assert tasks["load_us"]["retries"] == 3
    assert "retries" not in load.options


def test_an_output_given_as_a_field_value_adds_its_task_once() -> None:
    with Workflow("outs") as wf:
        first = shell("first", "echo")
        second = shell("second", "echo")
        uses = lambda_(
            "uses",
            "fn",
            depends_on=[second],
            payload={"a": first.outputs.a, "b": [first.outputs.b]},
            env={"C": second.outputs.c},
        )
        text_only = shell("text_only", f"echo {first.outputs.a}")
        first >> uses  # already there: counted once
    assert uses.upstream == ["second", "first"]
    assert text_only.upstream == []
    assert wf.to_dict()["tasks"]["uses"]["payload"] == {
        "a": "{{ tasks.first.outputs.a }}",
        "b": ["{{ tasks.first.outputs.b }}"],
    }


def test_a_lambda_is_not_an_inline_task() -> None:
    with pytest.raises(InvalidInput, match="an inline task is a function made with def"):
        task(lambda params: params)
