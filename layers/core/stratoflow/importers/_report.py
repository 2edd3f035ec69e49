"""What an import produced: workflow documents and the notes on what did not map."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["unmapped", "changed"]
"""``unmapped``: something was left out or replaced by a placeholder (exit 1).
``changed``: mapped, but not word for word (a schedule rewritten, a default assumed); said so
that a reviewer can check it, and does not change the exit code."""


@dataclass(frozen=True)
class Note:
    """One line of an import report: where (workflow, task, field) and what happened."""

    severity: Severity
    message: str
    workflow: str | None = None
    task: str | None = None
    field: str | None = None

    def where(self) -> str:
        parts = [p for p in (self.workflow, self.task and f"tasks.{self.task}", self.field) if p]
        return ".".join(parts) or "file"

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "workflow": self.workflow,
            "task": self.task,
            "field": self.field,
            "message": self.message,
        }


@dataclass
class Notes:
    """Collects the notes of one workflow while it is converted."""

    workflow: str | None = None
    items: list[Note] = field(default_factory=list)

    def unmapped(self, message: str, *, task: str | None = None, field: str | None = None) -> None:
        self.items.append(Note("unmapped", message, self.workflow, task, field))

    def changed(self, message: str, *, task: str | None = None, field: str | None = None) -> None:
        self.items.append(Note("changed", message, self.workflow, task, field))


@dataclass(frozen=True)
class ImportedWorkflow:
    """One workflow as format-v1 data (``document``), with the notes about it.
    ``document`` is None when nothing of it could be written (every task left out)."""

    name: str
    source_name: str
    document: dict[str, Any] | None
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class FileImport:
    """The result of importing one file."""

    path: str
    source_format: str
    workflows: tuple[ImportedWorkflow, ...]
    notes: tuple[Note, ...] = ()  # about the file as a whole

    def all_notes(self) -> list[Note]:
        return [*self.notes, *(n for w in self.workflows for n in w.notes)]

    @property
    def complete(self) -> bool:
        """Everything mapped: no note says something was left out."""
        return all(n.severity != "unmapped" for n in self.all_notes())

    def report(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "format": self.source_format,
            "complete": self.complete,
            "workflows": [
                {
                    "name": w.name,
                    "source_name": w.source_name,
                    "written": w.document is not None,
                    "tasks": len(w.document["tasks"]) if w.document else 0,
                }
                for w in self.workflows
            ],
            "notes": [n.as_dict() for n in self.all_notes()],
        }
