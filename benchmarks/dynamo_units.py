"""DynamoDB request units as on-demand DynamoDB bills them, from the items each request touched.

Writes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html, "Writes"):

- the table write of an item costs one write request unit per started KB of the *larger* of
  its old and new image (a write of a missing item, or of nothing, still costs one unit); a
  delete is billed by the deleted item's size;
- each global secondary index the write affects costs more writes, by the size of its index
  entry (the table's GSIs project ALL: an entry is the whole item): an entry that appears
  (the key attributes become defined) is one write; one that disappears is one write; one
  whose key changes is two (a delete of the old entry and a put of the new one); one whose key
  stays but whose projected attributes change (with ALL: any attribute) is one write; an item
  in no index before or after costs no index write, and neither does a write that changes
  nothing;
- a write inside TransactWriteItems costs twice the table units (prepare and commit). Its
  index writes are propagated as ordinary writes (the docs double only the table item), so
  they are billed once; the meter keeps them apart so that a report can state what doubling
  them too would add. A ConditionCheck in a transaction is billed as a transactional write of
  the item it checks (2 units per KB): the conservative reading;
- a write whose condition fails still costs the table units of the existing item (minimum 1),
  and no index write: the images before and after are equal, which the rules above price so.

Reads: 4 KB units, half for eventually consistent reads, double in transactions.

The meter reads each written item's image before and after the request from moto's backend
directly (no request, nothing counted). That is exact when nothing else writes the same item
between the two reads; the harness's writers (the functions) run on one thread.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Item = Mapping[str, Any]  # an item in DynamoDB's wire form ({"name": {"S": "..."}})
ImageReader = Callable[[str, dict[str, Any]], dict[str, Any] | None]

PRIMARY_KEY = ("pk", "sk")
# The table's GSIs (stratoflow.adapters.aws.dynamodb.create_table): name -> key attributes.
# Every one projects ALL.
INDEXES: dict[str, tuple[str, str]] = {f"gsi{n}": (f"gsi{n}pk", f"gsi{n}sk") for n in (1, 2, 3)}

WRITE_OPS = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        digits = len(str(inner).lstrip("-").replace(".", "").lstrip("0")) or 1
        return 1 + math.ceil(digits / 2)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: v}) for v in inner)
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in inner.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: Item | None) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values."""
    return sum(len(name.encode()) + _value_size(value) for name, value in (item or {}).items())


def kb_units(size: int) -> int:
    """Write units for ``size`` bytes: one per started KB, at least one."""
    return max(math.ceil(size / 1024), 1)


def index_writes(old: Item | None, new: Item | None) -> list[int]:
    """The write units of every index write that turning ``old`` into ``new`` costs, one entry
    per write (an index entry whose key changes is two: its delete and its put)."""
    old, new = old or {}, new or {}
    units: list[int] = []
    for pk, sk in INDEXES.values():
        was = pk in old and sk in old
        now = pk in new and sk in new
        if was and now:
            if (old[pk], old[sk]) != (new[pk], new[sk]):
                units += [kb_units(item_size(old)), kb_units(item_size(new))]
            elif old != new:  # projection ALL: any changed attribute is projected
                units.append(kb_units(item_size(new)))
        elif was:
            units.append(kb_units(item_size(old)))
        elif now:
            units.append(kb_units(item_size(new)))
    return units


def transition(old: Item | None, new: Item | None) -> str:
    """A label for what a write did to an item: its ``st`` before and after, and the names
    of the attributes it added (+), removed (-) or changed (~), keys and index keys apart
    (an index entry that appears, moves or goes is named by its index: ``gsi1+``, ``gsi1~``,
    ``gsi1-``)."""
    old, new = old or {}, new or {}
    state = f"{_state(old)}->{_state(new)}"
    if not old:
        return f"{state} put"
    if not new:
        return f"{state} delete"
    keys = {"pk", "sk", *(name for pair in INDEXES.values() for name in pair)}
    parts: list[str] = []
    for index, (pk, sk) in INDEXES.items():
        was, now = pk in old and sk in old, pk in new and sk in new
        if was and now and (old[pk], old[sk]) != (new[pk], new[sk]):
            parts.append(f"{index}~")
        elif was != now:
            parts.append(f"{index}{'+' if now else '-'}")
    for name in sorted((set(old) | set(new)) - keys):
        if name not in old:
            mark = "+"
        elif name not in new:
            mark = "-"
        elif old[name] != new[name]:
            mark = "~"
        else:
            continue
        part = mark + _TOKENED.sub(r"\1*", name)
        if part not in parts:
            parts.append(part)
    return f"{state} {' '.join(parts) or '(unchanged)'}"


# attributes named after a token (a reservation ``r_<token>`` on a run's counters item): one
# label for all of them, so that the writes of every reservation add up in one row
_TOKENED = re.compile(r"^(r_)[0-9a-f]{6,}$")


def _state(item: Mapping[str, Any]) -> str:
    st = item.get("st")
    return "-" if not item else str(st["S"]) if st and "S" in st else "?"


@dataclass
class WriteTrace:
    """The writes of one kind (request, item kind, transition): how many, their units, and
    the item sizes before and after (bytes, as billed)."""

    count: int = 0
    table: float = 0.0
    index: float = 0.0
    old_size: int = 0
    new_size: int = 0
    max_size: int = 0

    def add(self, old: Item | None, new: Item | None, table: float, index: float) -> None:
        self.count += 1
        self.table += table
        self.index += index
        self.old_size += item_size(old)
        self.new_size += item_size(new)
        self.max_size = max(self.max_size, item_size(old), item_size(new))


@dataclass
class WriteCost:
    table: float = 0.0  # the table writes (transactional ones doubled)
    index: float = 0.0  # every GSI write, billed once
    index_in_transactions: float = 0.0  # the part of ``index`` made by transactional writes
    by_item: Counter[str] = field(default_factory=Counter)  # units by "operation item-kind"
    # by "operation item-kind transition" (``transition``): where the units go, write by write
    by_write: dict[str, WriteTrace] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.table + self.index

    def add(
        self, old: Item | None, new: Item | None, *, transactional: bool, what: str = ""
    ) -> None:
        factor = 2 if transactional else 1
        table = factor * kb_units(max(item_size(old), item_size(new)))
        extra = sum(index_writes(old, new))
        self.table += table
        self.index += extra
        if transactional:
            self.index_in_transactions += extra
        self.by_item[what] += table + extra
        self.by_write.setdefault(f"{what} {transition(old, new)}", WriteTrace()).add(
            old, new, table, extra
        )


def read_units(size: int, *, consistent: bool) -> float:
    units = max(math.ceil(size / 4096), 1)
    return float(units if consistent else units / 2)


def item_kind(key: Item) -> str:
    """A label for the kind of item a key names: its sort key up to the first '#' or digit."""
    sk = str(key.get("sk", {}).get("S", ""))
    return sk.split("#", 1)[0] + ("#" if "#" in sk else "") if sk else "?"


def _key(item: Item) -> dict[str, Any]:
    return {k: item[k] for k in PRIMARY_KEY if k in item}


def written(op: str, params: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any], str]]:
    """(table, key, kind) of every item a write request writes or checks."""
    if op in ("PutItem", "UpdateItem", "DeleteItem"):
        yield params["TableName"], _key(params.get("Key") or params["Item"]), op
    elif op == "BatchWriteItem":
        for table, requests in params["RequestItems"].items():
            for r in requests:
                body = r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"]
                yield table, _key(body), "BatchWriteItem"
    elif op == "TransactWriteItems":
        for entry in params["TransactItems"]:
            ((kind, body),) = entry.items()
            yield body["TableName"], _key(body.get("Key") or body["Item"]), kind


def moto_images(account: str = "123456789012", region: str = "us-east-1") -> ImageReader:
    """Read an item's current image from moto's in-memory backend (no request)."""
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[account][region]

    def image(table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        found = backend.get_item(table, key)
        return None if found is None else dict(found.to_json()["Attributes"])

    return image


@dataclass
class DynamoMeter:
    """Read and write request units of every DynamoDB request of the clients it is attached to,
    by the rules of this module's docstring. ``image`` reads an item as it stands."""

    image: ImageReader
    rru: float = 0.0
    writes: WriteCost = field(default_factory=WriteCost)

    @property
    def wru(self) -> float:
        return self.writes.total

    def attach(self, client: Any) -> None:
        """botocore's after-call carries the response but not the API parameters: keep them
        (and the images the write is about to replace) on the request context, which both
        events receive."""
        events = client.meta.events

        def before(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            context["stratoflow_params"] = dict(params)
            if model.name in WRITE_OPS:
                context["stratoflow_old"] = [
                    (t, k, kind, self.image(t, k)) for t, k, kind in written(model.name, params)
                ]

        def after(model: Any, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
            self.after_call(model.name, context.get("stratoflow_params", {}), parsed, context)

        events.register("before-parameter-build.dynamodb", before)
        events.register("after-call.dynamodb", after)

    def after_call(
        self,
        op: str,
        params: Mapping[str, Any],
        parsed: Mapping[str, Any],
        context: Mapping[str, Any],
    ) -> None:
        if op in WRITE_OPS:
            for table, key, kind, old in context.get("stratoflow_old", []):
                new = self.image(table, key)
                what = f"{kind} {item_kind(key)}"
                if kind == "ConditionCheck":
                    self.writes.table += 2 * kb_units(item_size(old))
                    self.writes.by_item[what] += 2 * kb_units(item_size(old))
                    self.writes.by_write.setdefault(what, WriteTrace()).add(
                        old, old, 2 * kb_units(item_size(old)), 0
                    )
                else:
                    self.writes.add(old, new, transactional=op == "TransactWriteItems", what=what)
            return
        if "Error" in parsed:
            return
        consistent = bool(params.get("ConsistentRead"))
        if op == "GetItem":
            self.rru += read_units(item_size(parsed.get("Item")), consistent=consistent)
        elif op == "Query":
            size = sum(item_size(i) for i in parsed.get("Items", []))
            self.rru += read_units(size, consistent=consistent)
        elif op == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                for i in items:
                    self.rru += read_units(item_size(i), consistent=consistent)
        elif op == "TransactGetItems":
            for r in parsed.get("Responses", []):
                self.rru += 2 * read_units(item_size(r.get("Item")), consistent=True)
