"""Setting the migration flag up in an Unleash server, and exporting it, through the Admin API.

A team starts from a declarative description (which clinics are pinned to which
stage, which percentage rollouts), the same one the local flags file is built
from, so both sources evaluate alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from appointments.rollout.flag import FlagSwitchedOffError
from appointments.stages import Stage
from flags import FLAG_NAME
from flags.document import Document, FlagsFileError, build_document, parse_document
from flags.pins import (
    PinEdit,
    pinned_clinic,
    plan_pin,
    refuse_if_claimed,
    rollout_stage,
    rollout_strategy,
)

TIMEOUT_SECONDS = 10.0


class UnleashAdminError(RuntimeError):
    """The Unleash server refused a request, or could not be reached; the message says
    which, with its answer."""


class FlagMissingError(FlagSwitchedOffError):
    """The flag does not exist (or is archived): it serves every clinic the default stage,
    and only the setup command creates it."""


@dataclass(frozen=True, slots=True)
class Description:
    """Which clinics are pinned to which stage, and the percentage rollouts after them."""

    clinics: Mapping[str, Stage] = field(default_factory=dict)
    rollouts: tuple[tuple[Stage, int], ...] = ()

    @classmethod
    def parse(cls, data: Any) -> Description:
        """From JSON like ``{"clinics": {"<id>": "live"},
        "rollouts": [{"stage": "shadow", "percentage": 50}]}``."""
        if not isinstance(data, dict):
            raise FlagsFileError("the description must be a JSON object")
        try:
            clinics = {str(k): Stage.parse(str(v)) for k, v in data.get("clinics", {}).items()}
            rollouts = tuple(
                (Stage.parse(str(r["stage"])), int(r["percentage"]))
                for r in data.get("rollouts", [])
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise FlagsFileError(f"invalid description: {error}") from error
        return cls(clinics, rollouts)

    def document(self) -> Document:
        return build_document(self.clinics, self.rollouts)


@dataclass(frozen=True, slots=True)
class AdminFlag:
    """The migration flag in one environment, as the Admin API shows it."""

    enabled: bool
    """The flag's switch in the environment (the kill switch)."""
    environment_enabled: bool
    strategies: tuple[dict[str, Any], ...]
    """Every strategy, parked (disabled) ones too, in evaluation order, with ``id``."""

    @property
    def switched_off(self) -> str | None:
        if not self.environment_enabled:
            return "the Unleash environment is switched off"
        if not self.enabled:
            return f"the flag {FLAG_NAME} is switched off in Unleash"
        return None

    @property
    def active(self) -> list[dict[str, Any]]:
        """The strategies evaluation uses (parked ones aside), in order."""
        return [s for s in self.strategies if not s.get("disabled", False)]


class UnleashAdmin:
    """The Admin API calls the migration flag needs. A move of one clinic is one call on
    that clinic's own strategy (``pin``); the setup (``apply``) is the only call that
    switches the flag on."""

    def __init__(
        self,
        url: str,
        admin_token: str,
        project: str = "default",
        environment: str = "development",
    ) -> None:
        self._client = httpx.Client(
            base_url=url.rstrip("/") + "/",
            headers={"Authorization": admin_token},
            timeout=TIMEOUT_SECONDS,
        )
        self._project = project
        self._environment = environment

    @property
    def environment(self) -> str:
        return self._environment

    def close(self) -> None:
        self._client.close()

    def flag(self) -> AdminFlag:
        """The flag now (two reads: the flag, and the environment's switch)."""
        response = self._send("GET", self._flag_path())
        if response.status_code == httpx.codes.NOT_FOUND:
            raise FlagMissingError(
                f"the flag {FLAG_NAME} does not exist in Unleash: set it up with"
                " `clinic flags unleash-apply`"
            )
        _raise_for(response)
        flag = response.json()
        if flag.get("archived"):
            raise FlagMissingError(f"the flag {FLAG_NAME} is archived in Unleash")
        environments = [e for e in flag["environments"] if e["name"] == self._environment]
        if not environments:
            raise UnleashAdminError(f"the flag has no environment {self._environment!r}")
        environment = environments[0]
        listed = self._request("GET", f"api/admin/environments/{self._environment}").json()
        strategies = sorted(environment.get("strategies", []), key=lambda s: s.get("sortOrder", 0))
        return AdminFlag(
            bool(environment["enabled"]), bool(listed.get("enabled", True)), tuple(strategies)
        )

    def pin(self, clinic_id: str, stage: Stage) -> None:
        """Pin one clinic with one call: a ``PUT`` of its own pin, or a ``POST`` of a new pin
        ordered before every other strategy. Refuses (nothing written) when the flag is
        switched off or a strategy we did not make targets the clinic. Pins of the same
        clinic left by two racing writers are removed afterwards, one call each (each is
        shadowed by the first, so no clinic's stage changes)."""
        flag = self.flag()
        if flag.switched_off is not None:
            raise FlagSwitchedOffError(f"{flag.switched_off}; nothing written")
        active = flag.active
        refuse_if_claimed(active, clinic_id)
        edit = plan_pin(active, clinic_id, stage)
        self._write_pin(flag, edit)
        for index in edit.duplicates:
            self._request("DELETE", self._strategy_path(active[index]))

    def add_pin(self, clinic_id: str, stage: Stage) -> None:
        """A pin written whatever else targets the clinic (the setup and the reshape, which
        pin a clinic to the stage it is served already)."""
        flag = self.flag()
        self._write_pin(flag, plan_pin(flag.active, clinic_id, stage))

    def replace_strategy(self, strategy_id: str, body: dict[str, Any]) -> None:
        self._request("PUT", f"{self._strategies_path()}/{strategy_id}", body)

    def delete_strategy(self, strategy_id: str) -> None:
        self._request("DELETE", f"{self._strategies_path()}/{strategy_id}")

    def _write_pin(self, flag: AdminFlag, edit: PinEdit) -> None:
        if edit.index is None:
            first = min((s.get("sortOrder", 0) for s in flag.strategies), default=0)
            body = {**edit.strategy, "sortOrder": min(first, 0) - 1}
            self._request("POST", self._strategies_path(), body)
        else:
            self._request("PUT", self._strategy_path(flag.active[edit.index]), edit.strategy)

    def apply(self, description: Description) -> None:
        """Set the flag up: the context field, the flag, the pins and rollouts described
        (only strategies our tools made are edited or removed), then switch it on.

        Each pin and rollout is written with a call of its own, pins first, removals
        last; strategies a person made are left as they are.
        """
        self._ensure_context_field()
        if self._ensure_flag():
            # Strategies Unleash gave the flag we just created (its environment's default).
            for strategy in self.flag().strategies:
                self._request("DELETE", self._strategy_path(strategy))
        for clinic_id, stage in description.clinics.items():
            self.add_pin(clinic_id, stage)
        flag = self.flag()
        last = max((s.get("sortOrder", 0) for s in flag.strategies), default=0)
        wanted_rollouts = {stage for stage, _ in description.rollouts}
        for offset, (stage, percentage) in enumerate(description.rollouts, start=1):
            body = rollout_strategy(stage, percentage)
            existing = [s for s in flag.active if rollout_stage(s) is stage]
            if existing:
                self._request("PUT", self._strategy_path(existing[0]), body)
            else:
                self._request("POST", self._strategies_path(), {**body, "sortOrder": last + offset})
        for strategy in flag.active:
            pinned = pinned_clinic(strategy)
            rolled = rollout_stage(strategy)
            if (pinned is not None and pinned not in description.clinics) or (
                rolled is not None and rolled not in wanted_rollouts
            ):
                self._request("DELETE", self._strategy_path(strategy))
        self._request("POST", f"{self._flag_path()}/environments/{self._environment}/on")

    def export(self) -> Document:
        """The flag as a client-features document (the local flags file's format): its
        active strategies in order, with their titles, switched off when the flag or the
        environment is."""
        return self.flag_document(self.flag())

    def flag_document(self, flag: AdminFlag) -> Document:
        document = build_document({})
        feature = document["features"][0]
        feature.update(
            {
                "enabled": flag.switched_off is None,
                "strategies": [
                    {
                        key: strategy[key]
                        for key in ("name", "title", "constraints", "parameters", "variants")
                        if strategy.get(key) is not None
                    }
                    for strategy in flag.active
                ],
            }
        )
        return parse_document(json.dumps(document))

    def _ensure_context_field(self) -> None:
        field_body = {
            "name": "clinicId",
            "description": "The clinic an appointment belongs to: stages move whole clinics",
            "stickiness": True,
        }
        response = self._send("POST", "api/admin/context", field_body)
        if response.status_code == httpx.codes.CONFLICT:
            self._request("PUT", "api/admin/context/clinicId", field_body)
        else:
            _raise_for(response)

    def _ensure_flag(self) -> bool:
        """Create the flag when it is missing; True when it was created."""
        response = self._send("GET", self._flag_path())
        if response.status_code == httpx.codes.NOT_FOUND:
            self._request(
                "POST",
                f"api/admin/projects/{self._project}/features",
                {
                    "name": FLAG_NAME,
                    "type": "release",
                    "description": "Migration stage of each clinic (to clinic memberships)",
                },
            )
            return True
        _raise_for(response)
        return False

    def _flag_path(self) -> str:
        return f"api/admin/projects/{self._project}/features/{FLAG_NAME}"

    def _strategies_path(self) -> str:
        return f"{self._flag_path()}/environments/{self._environment}/strategies"

    def _strategy_path(self, strategy: dict[str, Any]) -> str:
        return f"{self._strategies_path()}/{strategy['id']}"

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A call that must succeed: any other answer is an ``UnleashAdminError``."""
        response = self._send(method, path, body)
        _raise_for(response)
        return response

    def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """The server's answer, whatever its status; no answer (the server unreachable, the
        connection dropped, a timeout) is an ``UnleashAdminError``."""
        try:
            return self._client.request(method, path, json=body)
        except httpx.HTTPError as error:
            raise UnleashAdminError(f"{method} {path}: {error}") from error


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    raise UnleashAdminError(
        f"{response.request.method} {response.request.url.path}: "
        f"{response.status_code} {response.text[:300]}"
    )
