"""Walking a document's fragment spreads: each fragment once per walk."""

from __future__ import annotations

from collections.abc import Mapping

from graphql import FragmentDefinitionNode, FragmentSpreadNode


def first_spread(
    spread: FragmentSpreadNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    walked: set[str],
) -> FragmentDefinitionNode | None:
    """The fragment ``spread`` names, the first time this walk meets it (a fragment selects
    the same fields wherever it is spread, so once is enough); None when the document does
    not define it or the walk has met it already. Marks it met."""
    name = spread.name.value
    fragment = fragments.get(name)
    if fragment is None or name in walked:
        return None
    walked.add(name)
    return fragment
