"""Every example exists in both forms, examples/NAME.yaml and examples/python/NAME.py, and the
two give the same document: the dict the YAML loads into, the validated canonical form and
its digest (what a run pins), and the YAML the CLI sends for the module."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratoflow.model import load_workflow_file
from stratoflow.model._loader import load_yaml
from stratoflow.sdk import load_module_workflows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML_FORMS = sorted(EXAMPLES.glob("*.yaml"))
PYTHON_FORMS = sorted(p for p in (EXAMPLES / "python").glob("*.py") if p.name != "__init__.py")


def test_each_yaml_example_has_a_python_twin_and_back() -> None:
    assert YAML_FORMS
    assert [p.stem for p in YAML_FORMS] == [p.stem for p in PYTHON_FORMS]


@pytest.mark.parametrize("yaml_path", YAML_FORMS, ids=lambda p: p.stem)
def test_the_python_form_gives_the_yaml_forms_document(yaml_path: Path) -> None:
    [workflow] = load_module_workflows(EXAMPLES / "python" / f"{yaml_path.stem}.py")
    document = workflow.to_dict()
    assert document == load_yaml(yaml_path.read_text())[0]  # the loader reads `on:` as a word
    from_yaml, from_python = load_workflow_file(yaml_path), workflow.spec()
    assert from_python.document == from_yaml.document
    assert from_python.digest == from_yaml.digest
    assert load_yaml(workflow.to_yaml(header="rendered"))[0] == document


def test_the_readme_example_validates(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("```python\nfrom stratoflow.sdk")
    code = readme[start + len("```python\n") : readme.index("```", start + 10)]
    module = tmp_path / "sdk_readme_example.py"
    module.write_text(code)
    workflows = load_module_workflows(module)
    assert [wf.name for wf in workflows] == ["switch_rules", "etl_chain"]
    for wf in workflows:
        wf.spec()
    etl = workflows[1].to_dict()["tasks"]
    assert etl["transform"]["depends_on"] == ["extract"]
    assert etl["load"]["command"] == "echo {{ tasks.transform.outputs.doubled }}"
