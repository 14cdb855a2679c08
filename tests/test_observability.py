"""What operators see: /metrics, structured log lines with request ids, and failure isolation."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appointments.stages import Stage
from server.logs import JsonFormatter, RequestIdFilter
from tests.conftest import READ_CLINIC as READ
from tests.conftest import Api, Mess, World, ledger_rows, nodes_by_id, set_stages


async def metric(api: Api, name: str, **labels: str) -> float:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture
def migration_log() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines the migration logger writes, as the production handler formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("appointments.migration")
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


async def test_metrics_count_the_comparisons_and_mismatches_of_shadow_reads(
    api: Api, world: World, mess: Mess, flags_file: Any
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    mismatches_before = await metric(api, "clinic_mismatches_total", stage="shadow", field="doctor")
    inconsistent_before = await metric(
        api, "clinic_comparisons_total", stage="shadow", outcome="inconsistent"
    )
    consistent_before = await metric(
        api, "clinic_comparisons_total", stage="shadow", outcome="consistent"
    )
    evaluations_before = await metric(
        api, "clinic_flag_evaluations_total", stage="shadow", decided_by="flag"
    )
    timed_before = await metric(api, "clinic_flag_evaluation_seconds_count")
    seconds_before = await metric(api, "clinic_flag_evaluation_seconds_sum")

    await api.data(READ, {"clinicId": str(world.clinic_a.id)})
    await api.data(READ, {"clinicId": str(world.clinic_a.id)})

    assert await metric(api, "clinic_mismatches_total", stage="shadow", field="doctor") == (
        mismatches_before + 4
    )
    assert await metric(
        api, "clinic_comparisons_total", stage="shadow", outcome="inconsistent"
    ) == (inconsistent_before + 6)
    assert await metric(api, "clinic_comparisons_total", stage="shadow", outcome="consistent") == (
        consistent_before + 10
    )
    assert (
        await metric(api, "clinic_flag_evaluations_total", stage="shadow", decided_by="flag")
        == evaluations_before + 2
    )
    # Timed once per evaluation (per request and clinic), not per row read.
    assert await metric(api, "clinic_flag_evaluation_seconds_count") == timed_before + 2
    assert await metric(api, "clinic_flag_evaluation_seconds_sum") > seconds_before
    text = (await api.client.get("/metrics")).text
    assert "clinic_origin_read_seconds_bucket" in text
    assert str(world.clinic_a.id) not in text


READ_WITH_MIGRATION = """
query Read($clinicId: ID!) {
  appointments(first: 100, filter: {clinicId: $clinicId}) {
    edges { node {
      id doctor { id } clinicDoctor { id } patient { id } clinicPatient { id }
      migration { consistent differences { field legacyValue newValue } }
    } }
  }
}
"""


async def test_a_list_showing_the_migration_field_compares_each_link_once(
    api: Api,
    world: World,
    mess: Mess,
    flags_file: Any,
    migration_log: Callable[[], list[dict[str, Any]]],
) -> None:
    """The list compares and records every link; the ``migration`` field then shows
    those comparisons without comparing, counting or logging them again."""
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    counted = {
        outcome: await metric(api, "clinic_comparisons_total", stage="shadow", outcome=outcome)
        for outcome in ("consistent", "inconsistent")
    }
    plain = await api.data(READ, {"clinicId": str(world.clinic_a.id)})
    per_list = {
        outcome: await metric(api, "clinic_comparisons_total", stage="shadow", outcome=outcome)
        - counted[outcome]
        for outcome in counted
    }
    logged_per_list = len([line for line in migration_log() if line.get("event") == "mismatch"])

    shown = await api.data(READ_WITH_MIGRATION, {"clinicId": str(world.clinic_a.id)})

    for outcome in counted:
        assert (
            await metric(api, "clinic_comparisons_total", stage="shadow", outcome=outcome)
            == counted[outcome] + 2 * per_list[outcome]
        )
    mismatch_lines = [line for line in migration_log() if line.get("event") == "mismatch"]
    assert logged_per_list > 0
    assert len(mismatch_lines) == 2 * logged_per_list
    nodes = nodes_by_id(shown)
    assert {
        node_id: {k: v for k, v in node.items() if k != "migration"}
        for node_id, node in nodes.items()
    } == nodes_by_id(plain)
    assert nodes[str(mess.consistent)]["migration"] == {"consistent": True, "differences": []}
    wrong = nodes[str(mess.wrong_person)]["migration"]
    assert wrong["consistent"] is False
    assert [difference["field"] for difference in wrong["differences"]] == ["DOCTOR"]


async def test_a_failing_comparison_leaves_the_read_intact_and_is_counted(
    api: Api,
    world: World,
    mess: Mess,
    flags_file: Any,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})
    errors_before = await metric(api, "clinic_comparisons_total", stage="shadow", outcome="error")

    def broken_comparison(*_args: Any) -> None:
        raise RuntimeError("comparison bug")

    monkeypatch.setattr("appointments.read_model.bookkeeping._differences", broken_comparison)
    body = await api.post(READ, {"clinicId": str(world.clinic_a.id)})

    assert "errors" not in body
    wrong = nodes_by_id(body["data"])[str(mess.wrong_person)]
    assert wrong["doctor"] == {"id": str(world.doctor.id)}
    assert wrong["clinicDoctor"] == {"id": str(world.clinic_doctor.id)}
    assert await metric(api, "clinic_comparisons_total", stage="shadow", outcome="error") == (
        errors_before + 8
    )
    assert await ledger_rows(sessions) == {}


class TestSampling:
    @pytest.fixture
    def app_settings(self) -> dict[str, Any]:
        return {"compare_sample_ratio": 0.0}

    async def test_a_zero_sampling_ratio_compares_nothing(
        self,
        api: Api,
        world: World,
        mess: Mess,
        flags_file: Any,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        set_stages(flags_file, {world.clinic_a.id: Stage.LIVE})
        skipped_before = await metric(
            api, "clinic_comparisons_total", stage="live", outcome="skipped"
        )

        body = await api.post(READ, {"clinicId": str(world.clinic_a.id)})

        assert body["extensions"]["migration"]["mismatches"] == 0
        assert await ledger_rows(sessions) == {}
        assert await metric(api, "clinic_comparisons_total", stage="live", outcome="skipped") == (
            skipped_before + 8
        )


async def test_each_mismatch_is_one_log_line_with_the_request_id(
    api: Api,
    world: World,
    mess: Mess,
    flags_file: Any,
    migration_log: Callable[[], list[dict[str, Any]]],
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.SHADOW})

    response = await api.client.post(
        "/graphql",
        json={"query": READ, "variables": {"clinicId": str(world.clinic_a.id)}},
        headers={"X-Request-ID": "qa-check-42"},
    )

    assert response.headers["X-Request-ID"] == "qa-check-42"
    mismatch_lines = [line for line in migration_log() if line.get("event") == "mismatch"]
    assert {(line["appointment_id"], line["field"]) for line in mismatch_lines} == {
        (str(mess.wrong_person), "doctor"),
        (str(mess.missing_new), "doctor"),
        (str(mess.other_clinic), "patient_clinic"),
    }
    assert all(line["request_id"] == "qa-check-42" for line in mismatch_lines)
    assert all(line["clinic_id"] == str(world.clinic_a.id) for line in mismatch_lines)
    assert all(line["stage"] == "shadow" for line in mismatch_lines)


async def test_a_request_without_an_id_gets_one_and_a_bad_one_is_replaced(api: Api) -> None:
    generated = await api.client.get("/healthz")
    replaced = await api.client.get("/healthz", headers={"X-Request-ID": "bad id\\twith spaces"})

    assert len(generated.headers["X-Request-ID"]) == 32
    assert replaced.headers["X-Request-ID"] != "bad id\\twith spaces"
    assert len(replaced.headers["X-Request-ID"]) == 32


CREATE = """
mutation Create($input: CreateAppointmentInput!) {
  createAppointment(input: $input) { __typename }
}
"""


async def test_metrics_count_writes_by_outcome_and_unlinked_writes(
    api: Api, world: World, flags_file: Any
) -> None:
    set_stages(flags_file, {world.clinic_a.id: Stage.DUAL_WRITE, world.clinic_b.id: Stage.LIVE})
    written = {"stage": "dual_write", "operation": "create", "input": "legacy", "outcome": "ok"}
    refused = {"stage": "live", "operation": "create", "input": "legacy"}
    ok_before = await metric(api, "clinic_appointment_writes_total", **written)
    refused_before = await metric(
        api, "clinic_appointment_writes_total", **refused, outcome="membership_missing"
    )
    unlinked_before = await metric(
        api, "clinic_unlinked_writes_total", stage="dual_write", side="doctor"
    )
    booking = {
        "startsAt": "2026-12-01T09:00:00Z",
        "endsAt": "2026-12-01T09:30:00Z",
        "doctorId": str(world.doctor_without_membership.id),
        "patientId": str(world.patient.id),
    }

    linked = await api.data(CREATE, {"input": {**booking, "clinicId": str(world.clinic_a.id)}})
    rejected = await api.data(CREATE, {"input": {**booking, "clinicId": str(world.clinic_b.id)}})

    assert linked["createAppointment"]["__typename"] == "AppointmentSuccess"
    assert rejected["createAppointment"]["__typename"] == "MembershipError"
    assert await metric(api, "clinic_appointment_writes_total", **written) == ok_before + 1
    assert (
        await metric(
            api, "clinic_appointment_writes_total", **refused, outcome="membership_missing"
        )
        == refused_before + 1
    )
    assert (
        await metric(api, "clinic_unlinked_writes_total", stage="dual_write", side="doctor")
        == unlinked_before + 1
    )
