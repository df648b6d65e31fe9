"""The console's one form reader: browser text in, the schema's types out (no lax coercion relied on)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from starlette.datastructures import FormData as Posted

from raptorflow.accounts.schemas import SLUG_PATTERN
from raptorflow.console.forms import FormInvalid, read_form, shown_values
from raptorflow.console.web import html_pattern
from raptorflow.intel.indicators.schemas import IndicatorCreate, IndicatorUpdate
from raptorflow.sharing.taxii.schemas import CollectionCreate, CollectionFilter
from raptorflow.webhooks.schemas import WebhookCreate

PROJECT = uuid.UUID("0190a0a0-0000-7000-8000-000000000001")


def test_text_becomes_the_types_the_schema_declares() -> None:
    posted = Posted(
        [
            ("value", "evil.example"),
            ("score", " 85 "),
            ("classification", "malicious"),
            ("tags", "a, b\nc,,"),
            ("project_id", str(PROJECT)),
            ("valid_from", "2026-01-02"),
            ("valid_until", "2026-02-03T04:05"),
        ]
    )
    names = ("value", "score", "classification", "tags", "project_id", "valid_from", "valid_until")
    body = read_form(posted, IndicatorCreate, names).build(IndicatorCreate)
    assert body.score == 85 and body.tags == ["a", "b", "c"] and body.project_id == PROJECT
    assert body.valid_from == datetime(2026, 1, 2, tzinfo=UTC)
    assert body.valid_until == datetime(2026, 2, 3, 4, 5, tzinfo=UTC)
    assert body.classification is not None and body.classification.value == "malicious"


def test_blank_is_not_given_on_create_and_clears_on_edit() -> None:
    posted = Posted(
        [("value", "x.example"), ("score", ""), ("tags", ""), ("description", ""), ("valid_from", "")]
    )
    create = read_form(posted, IndicatorCreate, ("value", "score", "tags", "valid_from"))
    assert create.values == {"value": "x.example"}
    edit = read_form(
        posted,
        IndicatorUpdate,
        ("score", "tags", "description", "valid_from"),
        edit=True,
        text={"description"},
    )
    assert edit.values == {"score": None, "tags": [], "description": "", "valid_from": None}


def test_checkboxes_and_checkbox_groups() -> None:
    posted = Posted(
        [
            ("url", "https://hooks.example.com/x"),
            ("events", "indicator.created"),
            ("events", "indicator.updated"),
        ]
    )
    data = read_form(posted, WebhookCreate, ("url", "events", "active"), many={"events"})
    assert data.values["active"] is False  # unchecked sends nothing
    assert data.values["events"] == ["indicator.created", "indicator.updated"]
    assert data.shown["events"] == ["indicator.created", "indicator.updated"]


def test_every_unreadable_field_is_named_and_what_was_typed_is_kept() -> None:
    posted = Posted(
        [("value", "x.example"), ("score", "85.5"), ("project_id", "nope"), ("valid_from", "tomorrow")]
    )
    data = read_form(posted, IndicatorCreate, ("value", "score", "project_id", "valid_from"))
    with pytest.raises(FormInvalid) as caught:
        data.build(IndicatorCreate)
    fields = {e["field"] for e in caught.value.errors or []}
    assert fields == {"score", "project_id", "valid_from"}
    assert data.shown["score"] == "85.5" and data.shown["valid_from"] == "tomorrow"


def test_a_nested_schemas_error_names_its_form_field() -> None:
    posted = Posted([("title", "t"), ("min_score", "500"), ("types", "ipv4")])
    data = read_form(posted, CollectionCreate, ("title", "can_read"))
    data.nest("filter", read_form(posted, CollectionFilter, ("min_score", "types"), many={"types"}))
    with pytest.raises(FormInvalid) as caught:
        data.build(CollectionCreate)
    assert [e["field"] for e in caught.value.errors or []] == ["min_score"]


def test_textareas_keep_their_lines_as_lf() -> None:
    posted = Posted([("value", "x.example"), ("description", "line one\r\nline two")])
    data = read_form(posted, IndicatorCreate, ("value", "description"), text={"description"})
    assert data.build(IndicatorCreate).description == "line one\nline two"


def test_unchanged_fields_are_left_out_of_an_edit() -> None:
    class Current:
        score = 50
        valid_from = datetime(2026, 1, 2, 13, 14, tzinfo=UTC)
        tags = ["a", "b"]

    fields = ("score", "valid_from", "tags")
    current = shown_values(Current(), fields)
    assert current == {"score": "50", "valid_from": "2026-01-02", "tags": "a, b"}
    posted = Posted([("score", "60"), ("valid_from", "2026-01-02"), ("tags", "a, b")])
    data = read_form(posted, IndicatorUpdate, fields, edit=True).changed_from(current)
    assert data.values == {"score": 60}


def test_the_slug_pattern_is_valid_for_browsers_v_flag() -> None:
    pattern = html_pattern(SLUG_PATTERN)
    assert pattern == r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?"
    # Same language as the schema's rule.
    for slug in ("acme-soc", "a", "a1-b2", "-bad", "bad-", "Bad", "a_b"):
        assert bool(re.fullmatch(pattern, slug)) == bool(re.fullmatch(SLUG_PATTERN, slug)), slug
