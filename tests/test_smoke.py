from __future__ import annotations

from tests.conftest import Api, World


async def test_clinics_query_answers(api: Api, world: World) -> None:
    data = await api.data("{ clinics { edges { node { name } } } }")
    assert [edge["node"]["name"] for edge in data["clinics"]["edges"]] == ["Clinic A", "Clinic B"]
