"""``StageResolver.peek_all``: the stages, gating, metrics and error handling of ``peek``
clinic by clinic, with the flags file checked once per batch."""

from __future__ import annotations

import logging
import os
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from appointments.stages import Stage
from appointments.validation import ReadinessGate
from flags.document import build_document, write_document
from flags.source import Evaluator, FlagSource, LocalFileFlagSource
from flags.stages import StageResolver, Viewer

METRICS = (
    "clinic_flag_evaluations_total",
    "clinic_stages_gated_total",
    "clinic_flag_evaluation_seconds_count",
)


def clinic_ids(count: int, seed: int = 20261207) -> list[uuid.UUID]:
    generator = random.Random(seed)
    return [uuid.UUID(int=generator.getrandbits(128), version=4) for _ in range(count)]


CLINICS = clinic_ids(40)
# Every stage pinned in turn on the first 30 clinics; the last 10 are not pinned (the default).
PINS = {clinic: list(Stage)[n % len(Stage)] for n, clinic in enumerate(CLINICS[:30])}


def write_pins(path: Path, pins: dict[uuid.UUID, Stage]) -> None:
    write_document(path, build_document({str(clinic): stage for clinic, stage in pins.items()}))


@pytest.fixture
def source(tmp_path: Path) -> Iterator[LocalFileFlagSource]:
    path = tmp_path / "flags.json"
    write_pins(path, PINS)
    opened = LocalFileFlagSource(path, "clinic-tests")
    yield opened
    opened.close()


class FailingFor:
    """The file source with one clinic's evaluation failing, and the first ``checks``
    checks of the source failing, as a broken engine or an unreadable file would."""

    def __init__(self, source: FlagSource, clinic: uuid.UUID, checks: int = 0) -> None:
        self._source = source
        self._clinic = str(clinic)
        self._checks = checks

    def variant(self, context: dict[str, Any]) -> str | None:
        return self.evaluator()(context)

    def evaluator(self) -> Evaluator:
        if self._checks > 0:
            self._checks -= 1
            raise OSError("the flags file cannot be read")
        evaluate = self._source.evaluator()

        def variant(context: dict[str, Any]) -> str | None:
            if context["properties"]["clinicId"] == self._clinic:
                raise RuntimeError("the engine failed")
            return evaluate(context)

        return variant

    def describe(self) -> dict[str, Any]:
        return self._source.describe()

    def close(self) -> None:
        return None


Sample = tuple[str, tuple[tuple[str, str], ...]]
"""A sample's name and its labels, sorted."""


def samples() -> dict[Sample, float]:
    found = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name in METRICS:
                found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def counted(evaluate: Callable[[], object]) -> dict[Sample, float]:
    """What ``evaluate`` added to the flag metrics, per sample."""
    before = samples()
    evaluate()
    after = samples()
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value != before.get(key, 0.0)
    }


def resolver(source: FlagSource) -> StageResolver:
    return StageResolver(
        source, Stage.DUAL_WRITE, Viewer(user_id="admin-1", role="admin"), gate=ReadinessGate()
    )


def test_a_batch_gives_each_clinic_the_stage_and_gating_peek_gives_it(
    source: LocalFileFlagSource,
) -> None:
    batch, one_by_one = resolver(source), resolver(source)

    stages = batch.peek_all(CLINICS)

    assert stages == {clinic: one_by_one.peek(clinic) for clinic in CLINICS}
    assert len(set(stages.values())) > 2  # mixed stages, some lowered by the gate
    assert batch.used == {}  # peeked: nothing reported as served
    assert batch.gated == {}
    for clinic in CLINICS:
        assert batch(clinic) is one_by_one(clinic)
        assert batch.requested(clinic) is one_by_one.requested(clinic)
    assert batch.gated == one_by_one.gated != {}
    assert batch.used == one_by_one.used == stages


def test_a_batch_keeps_the_stages_a_request_has_already_used(
    source: LocalFileFlagSource, tmp_path: Path
) -> None:
    request = resolver(source)
    first = request.peek(CLINICS[1])
    stages = request.peek_all(CLINICS[:5])

    write_pins(tmp_path / "flags.json", dict.fromkeys(CLINICS, Stage.LEGACY))
    again = request.peek_all([*CLINICS, CLINICS[3]])

    assert stages[CLINICS[1]] is first is Stage.DUAL_WRITE
    assert len(set(stages.values())) > 1
    assert {clinic: again[clinic] for clinic in CLINICS[:5]} == stages
    assert {again[clinic] for clinic in CLINICS[5:]} == {Stage.LEGACY}
    assert list(again) == CLINICS


def test_a_batch_counts_the_metrics_one_by_one_evaluation_counts(
    source: LocalFileFlagSource,
) -> None:
    failing = FailingFor(source, CLINICS[8])
    request = resolver(failing)

    def one_by_one() -> None:
        one = resolver(failing)
        for clinic in CLINICS:
            one.peek(clinic)

    batch = counted(lambda: request.peek_all(CLINICS))

    assert batch == counted(one_by_one)
    evaluations = Counter(
        ("dual_write", "error")
        if clinic == CLINICS[8]
        else (PINS[clinic].value, "flag")
        if clinic in PINS
        else ("dual_write", "default")
        for clinic in CLINICS
    )
    for clinic in CLINICS:
        request(clinic)
    gated = Counter((g.requested.value, g.served.value) for g in request.gated.values())
    expected: dict[Sample, float] = {
        **{
            ("clinic_flag_evaluations_total", (("decided_by", by), ("stage", stage))): count
            for (stage, by), count in evaluations.items()
        },
        **{
            ("clinic_stages_gated_total", (("requested", asked), ("served", served))): count
            for (asked, served), count in gated.items()
        },
        ("clinic_flag_evaluation_seconds_count", ()): len(CLINICS),
    }
    assert gated
    assert batch == expected


def test_a_failed_evaluation_serves_the_default_to_its_clinic_only(
    source: LocalFileFlagSource, caplog: pytest.LogCaptureFixture
) -> None:
    expected = resolver(source).peek_all(CLINICS)
    # The first check of the source fails: that clinic only, the next one checks again.
    failing = FailingFor(source, CLINICS[8], checks=1)

    with caplog.at_level(logging.ERROR, logger="flags"):
        stages = resolver(failing).peek_all(CLINICS)

    assert stages == {
        **expected,
        CLINICS[0]: Stage.DUAL_WRITE,
        CLINICS[8]: Stage.DUAL_WRITE,
    }
    assert expected[CLINICS[0]] is not Stage.DUAL_WRITE
    assert expected[CLINICS[8]] is not Stage.DUAL_WRITE
    failures = [r for r in caplog.records if r.getMessage().startswith("flag evaluation failed")]
    assert len(failures) == 2


def test_a_batch_stats_the_flags_file_once_and_the_next_one_sees_a_change(
    source: LocalFileFlagSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flags.json"
    stat = os.stat
    stats: list[object] = []

    def counting_stat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if target == path:
            stats.append(target)
        return stat(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)

    first = resolver(source).peek_all(CLINICS)
    assert len(stats) == 1
    [resolver(source).peek(clinic) for clinic in CLINICS[:3]]
    assert len(stats) == 4  # clinic by clinic, each new resolver's peek checks again

    write_pins(path, dict.fromkeys(CLINICS, Stage.SHADOW))
    stats.clear()
    second = resolver(source).peek_all(CLINICS)

    assert len(stats) == 1
    assert first != second
    assert set(second.values()) == {Stage.SHADOW}
