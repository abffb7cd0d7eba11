"""The subscriptions the fan-out benchmark's subscribers run, and how a result is matched to its change.

Every change the benchmark makes writes a new marker into one demo source's
scopeOfSubscription (the "changed source"). Each operation has a `match`, which says how a
subscriber files a result:

- `marker`: the result carries the changed source's scopeOfSubscription (a `sourceEvents`
  event, a `sources` page holding that source, `source(id)` of it), filed under that marker;
- `library`: `dataLibrary`, whose counters need not change with the marker: filed under the
  latest change sent before the result was computed (its generatedAt);
- `ceiling`: the bare app of benchmarks/ceiling.py, filed under the marker its frame carries.

`identical(kind)` is one operation for every subscriber; `mixed(source, others)` is 100 distinct
operations (selections, filters, pagination, ids, kinds), every one of which has a new result
for each change of `source`, so that every subscriber counts in every round. No Django here:
the client processes import this module.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

MIXED_OPERATIONS = 100
SOURCE_FIELDS = ("country", "dataVendor", "panel", "panelGroup", "granularity", "status", "version")


@dataclass(frozen=True)
class Operation:
    """One subscription document with its variables, and how its results are matched."""

    name: str  # short, for messages
    query: str
    match: str  # "marker", "library" or "ceiling"
    variables: dict[str, Any] = field(default_factory=dict)
    source_id: str = ""  # the changed source, for "marker" results that hold a list

    def payload(self) -> dict[str, Any]:
        return {"query": self.query, "variables": self.variables}


IDENTICAL = {
    "sourceEvents": Operation(
        "sourceEvents",
        "subscription { sourceEvents { cursor kind sourceId occurredAt actor source { id country dataVendor "
        "panel status deliveryStatus scopeOfSubscription version updatedAt } } }",
        "marker",
    ),
    "dataLibrary": Operation(
        "dataLibrary",
        "subscription { dataLibrary { windowDays generatedAt sections { key title counters { key label count } } } }",
        "library",
    ),
}
CEILING = Operation("ceiling", "subscription { ceiling }", "ceiling")


def marker_of(operation: Operation, data: dict[str, Any]) -> str | None:
    """Return the changed source's scopeOfSubscription as a "marker" result shows it (None: absent)."""
    if "sourceEvents" in data:
        return ((data["sourceEvents"] or {}).get("source") or {}).get("scopeOfSubscription")
    if "source" in data:
        return (data["source"] or {}).get("scopeOfSubscription")
    if "sources" in data:
        for item in data["sources"]:
            if item.get("id") == operation.source_id:
                return item.get("scopeOfSubscription")
        return None
    if "ceiling" in data:
        return data["ceiling"]["marker"]
    raise ValueError(f"not a result of a known operation: {list(data)}")


def _subsets(fields: tuple[str, ...], count: int) -> list[str]:
    """Return `count` distinct space-separated selections from `fields` (smallest first)."""
    chosen = []
    for size in range(len(fields) + 1):
        for subset in itertools.combinations(fields, size):
            chosen.append(" ".join(subset))
            if len(chosen) == count:
                return chosen
    raise ValueError(f"{len(fields)} fields give fewer than {count} selections")


def mixed(source: dict[str, Any], others: list[str]) -> list[Operation]:
    """Return 100 distinct operations whose results all change when `source` changes.

    `source`: the changed source's id and SOURCE_FIELDS; `others`: ids of other demo sources.
    """
    sid = source["id"]
    operations: list[Operation] = []

    # 30 sourceEvents: 5 selections x 6 filters that all let the changed source's UPDATED through.
    event_selections = [
        "cursor source { scopeOfSubscription }",
        "cursor kind sourceId source { id scopeOfSubscription }",
        "cursor kind occurredAt source { scopeOfSubscription version status }",
        "cursor actor source { scopeOfSubscription country dataVendor panel }",
        "cursor kind sourceId occurredAt actor source { id scopeOfSubscription deliveryStatus updatedAt }",
    ]
    event_filters: list[dict[str, Any]] = [
        {},
        {"ids": [sid]},
        {"ids": [sid, others[0]]},
        {"kinds": ["UPDATED"]},
        {"kinds": ["UPDATED", "CREATED", "DELETED"]},
        {"ids": [sid, *others[1:4]], "kinds": ["UPDATED"]},
    ]
    for (number, selection), filters in itertools.product(enumerate(event_selections), event_filters):
        query = "subscription($ids: [ID!], $kinds: [SourceEventKind!]) { sourceEvents(ids: $ids, kinds: $kinds) { "
        operations.append(
            Operation(f"sourceEvents#{number} {json.dumps(filters)}", query + selection + " } }", "marker", filters)
        )

    # 40 sources: 8 filters that the changed source matches x 5 pages that start with it (newest first).
    source_filters: list[dict[str, Any] | None] = [
        None,
        {"country": source["country"]},
        {"dataVendor": source["dataVendor"]},
        {"status": source["status"]},
        {"country": source["country"], "dataVendor": source["dataVendor"]},
        {"panelGroup": source["panelGroup"]},
        {"granularity": source["granularity"], "status": source["status"]},
        {"panel": source["panel"], "OR": {"country": "Nowhere"}},
    ]
    pages: list[dict[str, Any] | None] = [None, {"limit": 1}, {"limit": 5}, {"offset": 0, "limit": 12}, {"limit": 50}]
    list_selections = ["id scopeOfSubscription", "id scopeOfSubscription country dataVendor status deliveryStatus"]
    for number, (filters, pagination) in enumerate(itertools.product(source_filters, pages)):
        query = "subscription($f: SourceFilter, $p: OffsetPaginationInput) { sources(filters: $f, pagination: $p) { "
        query += list_selections[number % 2] + " } }"
        variables = {"f": filters, "p": pagination}
        operations.append(Operation(f"sources {json.dumps(variables)}", query, "marker", variables, sid))

    # 20 source(id) of the changed source, each with its own selection.
    for selection in _subsets(SOURCE_FIELDS, 20):
        query = "subscription($id: ID!) { source(id: $id) { id scopeOfSubscription " + selection + " } }"
        operations.append(Operation(f"source [{selection}]", query, "marker", {"id": sid}, sid))

    # 10 dataLibrary, each with its own selection.
    library_parts = ("windowDays", "sections { key }", "sections { title counters { key count } }")
    for selection in _subsets((*library_parts, "sections { counters { label windowDays } }"), 10):
        query = "subscription { dataLibrary { generatedAt " + selection + " } }"
        operations.append(Operation(f"dataLibrary [{selection}]", query, "library"))

    assert len(operations) == MIXED_OPERATIONS, len(operations)
    assert len({(o.query, json.dumps(o.variables, sort_keys=True)) for o in operations}) == MIXED_OPERATIONS
    return operations
