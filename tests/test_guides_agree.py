"""What the guides quote of the code is what the code says: the 401 messages, every
metric. (Their GraphQL and shell examples run in test_doc_examples and test_doc_shell.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram

from appointments import metrics
from server.auth import NO_TOKEN, TOKEN_REJECTED

DOCS = Path(__file__).resolve().parent.parent / "docs"


def unwrapped(name: str) -> str:
    return re.sub(r"\s+", " ", (DOCS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("guide", ["frontend.md", "operations.md"])
def test_the_401_messages_are_quoted_as_the_service_answers(guide: str) -> None:
    text = unwrapped(guide)

    assert f'"{NO_TOKEN}"' in text
    assert f'"{TOKEN_REJECTED}"' in text


def test_every_metric_is_listed_in_the_operations_guide() -> None:
    text = unwrapped("operations.md")
    names = []
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.append(f"{value._name}_total")
        elif isinstance(value, Gauge | Histogram):
            names.append(value._name)

    assert len(names) >= 15
    assert [name for name in names if f"`{name}" not in text] == []
