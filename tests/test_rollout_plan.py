"""Rollout plans: what a valid one means, and every problem reported with its line."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from appointments.rollout.plan import PlanError, parse_duration, parse_plan
from appointments.stages import Stage
from server.cli import main

PILOT = uuid.UUID("405defc3-ac1e-56ce-bc33-925b4562fa1d")

VALID = f"""# a comment
target = "live"
max_moves_per_hour = 5

[soak]
default = "1h30m"
shadow = "2d"

[guards]
max_mismatches = 1

[[cohort]]
name = "pilot"
clinics = ["{PILOT}"]

[[cohort]]
name = "early"
percentage = 50

[[cohort]]
name = "everyone"
percentage = 100
"""


def test_a_valid_plan_gives_each_stage_before_the_target_its_soak() -> None:
    plan = parse_plan(VALID)

    assert plan.target is Stage.LIVE
    assert plan.max_moves_per_hour == 5
    assert plan.soak == {
        Stage.LEGACY: timedelta(hours=1, minutes=30),
        Stage.DUAL_WRITE: timedelta(hours=1, minutes=30),
        Stage.SHADOW: timedelta(days=2),
    }
    assert (plan.guards.max_mismatches, plan.guards.max_read_fallbacks) == (1, 0)
    assert [cohort.name for cohort in plan.cohorts] == ["pilot", "early", "everyone"]


def test_percentage_cohorts_share_the_remaining_clinics_in_a_stable_order() -> None:
    plan = parse_plan(VALID)
    others = [uuid.uuid4() for _ in range(9)]

    assigned = plan.assign([PILOT, *others])
    again = plan.assign(list(reversed([PILOT, *others])))

    assert assigned == again
    assert assigned[PILOT] == "pilot"
    names = [assigned[clinic] for clinic in others]
    assert (names.count("early"), names.count("everyone")) == (5, 4)


def test_a_listed_clinic_that_does_not_exist_is_left_out() -> None:
    assert parse_plan(VALID).assign([]) == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("0s", timedelta(0)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_durations(text: str, problem: timedelta) -> None:
    assert parse_duration(text) == problem


def problems_of(text: str) -> list[str]:
    with pytest.raises(PlanError) as raised:
        parse_plan(text)
    return list(raised.value.problems)


def test_each_problem_is_reported_with_its_line() -> None:
    text = """target = "live"
max_moves_per_hour = 0
colour = "blue"

[soak]
dual_write = "soon"
legacy = "1h"

[guards]
max_mismatches = -1

[[cohort]]
name = "early"
percentage = 120

[[cohort]]
name = "early"
clinics = ["not-an-id"]

[[cohort]]
name = "both"
"""
    assert problems_of(text) == [
        "plan.toml:3: unknown key 'colour' (expected backfill, cohort, guards,"
        " max_moves_per_hour, soak, target)",
        "plan.toml:2: max_moves_per_hour must be a whole number of at least 1",
        'plan.toml:6: soak: dual_write: \'soon\' is not a duration like "30m", "1h30m",'
        ' "2d" or "0s"',
        "plan.toml:5: soak: no soak time for stage 'shadow' (add shadow = \"1h\" or"
        ' default = "1h")',
        "plan.toml:10: guards: max_mismatches must be a whole number of at least 0",
        'plan.toml:14: cohort "early": percentage must be between 1 and 100',
        'plan.toml:17: cohort "early": the name is used twice',
        "plan.toml:18: cohort \"early\": 'not-an-id' is not a clinic id",
        'plan.toml:20: cohort "both": give either clinics or percentage',
    ]


def test_a_missing_soak_an_unknown_target_and_a_shared_clinic_are_refused() -> None:
    assert problems_of(f"""max_moves_per_hour = 1
[soak]
legacy = "1h"
[[cohort]]
name = "a"
clinics = ["{PILOT}"]
[[cohort]]
name = "b"
clinics = ["{PILOT}"]
""") == [
        "plan.toml:1: target is required (the stage the plan moves clinics to)",
        f"plan.toml:9: cohort \"b\": clinic {PILOT} is also in 'a'",
    ]
    assert problems_of("""target = "shadow"
max_moves_per_hour = 1
[soak]
legacy = "1h"
[[cohort]]
name = "a"
percentage = 10
""") == [
        "plan.toml:3: soak: no soak time for stage 'dual_write' (add dual_write = \"1h\""
        ' or default = "1h")'
    ]
    assert problems_of(
        'target = "turbo"\nmax_moves_per_hour = 1\n[[cohort]]\nname = "a"\npercentage = 5\n'
    ) == [
        "plan.toml:1: target: unknown migration stage 'turbo'; expected one of legacy,"
        " dual_write, shadow, live, rampdown, complete"
    ]


def test_a_file_that_is_not_toml_is_refused_with_the_line_of_the_error() -> None:
    assert problems_of('target = "live"\nmax_moves_per_hour = \n') == [
        "plan.toml:2: not valid TOML: Invalid value"
    ]


def test_clinic_rollout_validate_prints_the_problems_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "plan.toml"
    bad.write_text(
        'target = "live"\nmax_moves_per_hour = 2\n[soak]\ndefault = "1h"\n'
        '[[cohort]]\nname = "early"\npercentage = 0\n',
        encoding="utf-8",
    )
    good = tmp_path / "good.toml"
    good.write_text(VALID, encoding="utf-8")

    assert main(["rollout", "validate", str(bad)]) == 1
    assert capsys.readouterr().err == (
        f'{bad}:7: cohort "early": percentage must be between 1 and 100\n'
    )
    assert main(["rollout", "validate", str(good)]) == 0
    assert capsys.readouterr().out == (
        f"{good}: valid: target live, cohorts pilot, early, everyone\n"
    )
    assert main(["rollout", "validate", str(tmp_path / "missing.toml")]) == 1
    assert "cannot read" in capsys.readouterr().err
