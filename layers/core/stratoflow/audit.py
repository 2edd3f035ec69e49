"""The audit journal: who changed what, kept in the state store, then projected.

An audited change is journalled in two steps, each a durable write to the state store:

1. **Before the change**, once the caller's right to make it is checked: an *intent*, the
   entry the audit log shows if the change's outcome never gets recorded (action
   ``request.unconfirmed``, the request's method and path, ``details.outcome = "unknown"``).
   It is pending: the read model does not show it yet. If this write fails, the request is
   refused (503) and nothing is changed.
2. **After the change**: the entry itself (its action, target and details), under the same id
   (the request's), replacing the intent. A request that changes nothing audited, or is
   refused with an error that promises nothing changed (4xx, 503), withdraws its intent
   instead; one that fails otherwise (its error may come after the change) settles its
   intent as it stands, at once.

If the process dies between the change and step 2 (or step 2's write fails), the intent
stays. Once it is older than :data:`INTENT_TTL` (longer than any request is served) it is
settled as it stands and shown: the log then says the caller asked for this change and its
outcome is not known, never nothing. A settled entry reaches the read model through the
store's projection (the local feed, the DynamoDB stream), keyed by its id: delivered twice,
it is kept once; a read model that was down gets it when it catches up. Once the read model
has it, the journal lets it go (locally at once, on AWS by TTL a short while later), never
before: the journal is bounded by what the read model lacks.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, runtime_checkable

from stratoflow.readmodel import AuditEntry
from stratoflow.readmodel._records import audit_of, audit_row

# how long an intent may wait for its outcome before it stands as "outcome unknown": far
# longer than a request is served (API Gateway: 29 s)
INTENT_TTL: Final = timedelta(minutes=15)
UNCONFIRMED: Final = "request.unconfirmed"
# an entry as stored (its JSON text); what the routes record is a few names and flags
MAX_ENTRY_BYTES: Final = 32_000


@runtime_checkable
class AuditJournal(Protocol):
    """Where a state store keeps audit entries until the read model has them."""

    def audit_begin(self, intent: AuditEntry) -> None:
        """Store the intent (pending, shown only once :data:`INTENT_TTL` after its ``at``
        passes unsettled). An id already stored keeps what it has."""

    def audit_settle(self, entry: AuditEntry) -> None:
        """Store ``entry`` in place of its pending intent (or anew); an id already settled
        keeps what it has (a retried delivery is a duplicate)."""

    def audit_withdraw(self, entry_id: str) -> None:
        """Drop a pending intent (its request failed or changed nothing audited); a settled
        entry stays."""


def encode_entry(entry: AuditEntry) -> str:
    """The entry as the journal stores it (the read model's row, as JSON text)."""
    text = json.dumps(audit_row(entry), separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_ENTRY_BYTES:
        raise ValueError(
            f"audit entry {entry.id!r} ({entry.action} {entry.target}) is "
            f"{len(text.encode())} bytes; at most {MAX_ENTRY_BYTES}"
        )
    return text


def decode_entry(text: str) -> AuditEntry:
    row: dict[str, Any] = json.loads(text)
    return audit_of(row)


def intent(
    entry_id: str, at: datetime, actor: str, method: str, path: str, project: str
) -> AuditEntry:
    """The intent of a request: what the log shows if its outcome is never recorded."""
    return AuditEntry(
        id=entry_id, at=at, actor=actor, action=UNCONFIRMED, target=f"{method} {path}"[:1000],
        project=project, details={"outcome": "unknown"},
    )  # fmt: skip
