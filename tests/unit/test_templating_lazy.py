"""``stratoflow.templating`` answers text without template syntax with no Jinja2 loaded, and
imports the sandbox (``stratoflow._jinja_templating``) for the first template."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from stratoflow import _jinja_templating, templating

LAYER = Path(__file__).resolve().parents[2] / "layers" / "core"


def test_the_plain_markers_are_the_sandboxs() -> None:
    assert templating._NOT_PLAIN == _jinja_templating._NOT_PLAIN


def test_names_are_one_object_in_both_modules() -> None:
    assert _jinja_templating.TemplateError is templating.TemplateError
    assert _jinja_templating.LIMITS is templating.LIMITS
    assert templating.shift_date is _jinja_templating.shift_date  # looked up in the sandbox


def test_a_plain_workflow_loads_and_renders_without_jinja_and_a_template_imports_it() -> None:
    script = textwrap.dedent(
        """
        import sys
        from stratoflow.adapters.local.runtime import LocalRuntime
        from stratoflow.model import load_workflow
        from stratoflow.templating import check_syntax, render, render_value, secret_references
        spec = load_workflow("name: w\\ntasks:\\n  a: {type: shell, command: 'echo ${#x}'}\\n")
        assert render("echo ${#x}", {}) == "echo ${#x}"
        assert render_value({"a": ["b", 1]}, {}) == {"a": ["b", 1]}
        assert secret_references("no template") == (set(), [])
        check_syntax("plain")
        assert "jinja2" not in sys.modules, "a plain workflow imported jinja2"
        assert render("{{ 1 + 1 }}", {}) == "2"
        assert "jinja2" in sys.modules
        """
    )
    subprocess.run(
        [sys.executable, "-c", script], check=True, env={"PYTHONPATH": str(LAYER)}, timeout=60
    )
