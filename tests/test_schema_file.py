from __future__ import annotations

import json
from pathlib import Path

from graphql import GraphQLScalarType, build_schema

from appointments.seed import DEMO_ROLLOUT, demo_clinic_stages
from flags.document import build_document
from schema.schema import schema

ROOT = Path(__file__).resolve().parent.parent


def test_committed_sdl_matches_the_schema() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")

    assert committed.strip() == schema.as_str().strip(), (
        "schema.graphql is out of date: run `clinic schema > schema.graphql`"
    )


def test_example_flags_file_is_the_demo_document() -> None:
    committed = json.loads((ROOT / "flags" / "example-flags.json").read_text(encoding="utf-8"))

    assert committed == build_document(demo_clinic_stages(), [DEMO_ROLLOUT])


def test_date_time_and_json_scalars_state_their_wire_format() -> None:
    committed = build_schema((ROOT / "schema.graphql").read_text(encoding="utf-8"))
    specified = {}
    for name in ("DateTime", "Date", "JSON"):
        scalar = committed.get_type(name)
        assert isinstance(scalar, GraphQLScalarType)
        assert scalar.description is not None
        specified[name] = scalar.specified_by_url
    assert specified == {
        "DateTime": "https://scalars.graphql.org/andimarek/date-time.html",
        "Date": "https://scalars.graphql.org/andimarek/local-date.html",
        "JSON": "https://www.rfc-editor.org/rfc/rfc8259",
    }
