"""schema.graphql is generated from graph.schema and must match it."""

from __future__ import annotations

from pathlib import Path

from graph.schema import schema

REGENERATE = "python manage.py export_schema graph.schema --path schema.graphql"


def test_committed_schema_matches_the_code() -> None:
    committed = (Path(__file__).resolve().parent.parent / "schema.graphql").read_text()
    assert committed.strip() == schema.as_str().strip(), f"schema.graphql is out of date: run `{REGENERATE}`"
