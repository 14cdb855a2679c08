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

from appointments.stages import Stage
from flags import FLAG_NAME
from flags.document import Document, FlagsFileError, build_document, parse_document

TIMEOUT_SECONDS = 10.0


class UnleashAdminError(RuntimeError):
    """The Unleash server refused a request; the message has its answer."""


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


class UnleashAdmin:
    """The few Admin API calls the migration flag needs."""

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

    def close(self) -> None:
        self._client.close()

    def apply(self, description: Description) -> None:
        """Create or update the context field, the flag and its strategies, then enable it.

        Existing strategies are updated in place (variants resent: Unleash drops
        them otherwise), missing ones added, and extra ones deleted last, so the
        flag never passes through a state with no strategy.
        """
        self.apply_document(description.document())

    def apply_document(self, document: Document) -> None:
        """``apply`` for the migration flag of a client-features document (the local flags
        file's format, or ``export``'s answer edited)."""
        features = [f for f in document.get("features", []) if f.get("name") == FLAG_NAME]
        if not features:
            raise UnleashAdminError(f"the document has no flag {FLAG_NAME}")
        self._ensure_context_field()
        self._ensure_flag()
        wanted = features[0].get("strategies", [])
        current = self._request("GET", self._strategies_path()).json()
        for order, strategy in enumerate(wanted):
            body = {**strategy, "sortOrder": order}
            if order < len(current):
                self._request("PUT", f"{self._strategies_path()}/{current[order]['id']}", body)
            else:
                self._request("POST", self._strategies_path(), body)
        for extra in current[len(wanted) :]:
            self._request("DELETE", f"{self._strategies_path()}/{extra['id']}")
        self._request("POST", f"{self._flag_path()}/environments/{self._environment}/on")

    def export(self) -> Document:
        """The flag as a client-features document (the local flags file's format)."""
        flag = self._request("GET", self._flag_path()).json()
        environments = [e for e in flag["environments"] if e["name"] == self._environment]
        if not environments:
            raise UnleashAdminError(f"the flag has no environment {self._environment!r}")
        environment = environments[0]
        strategies = [
            {
                "name": strategy["name"],
                "constraints": strategy.get("constraints", []),
                "parameters": strategy.get("parameters", {}),
                "variants": strategy.get("variants", []),
            }
            for strategy in sorted(environment["strategies"], key=lambda s: s.get("sortOrder", 0))
            if not strategy.get("disabled", False)
        ]
        document = build_document({})
        feature = document["features"][0]
        feature.update(
            {
                "enabled": bool(environment["enabled"]),
                "strategies": strategies,
                "description": flag.get("description") or feature["description"],
            }
        )
        return parse_document(json.dumps(document))

    def _ensure_context_field(self) -> None:
        field_body = {
            "name": "clinicId",
            "description": "The clinic an appointment belongs to: stages move whole clinics",
            "stickiness": True,
        }
        response = self._client.request("POST", "api/admin/context", json=field_body)
        if response.status_code == httpx.codes.CONFLICT:
            self._request("PUT", "api/admin/context/clinicId", field_body)
        else:
            _raise_for(response)

    def _ensure_flag(self) -> None:
        response = self._client.request("GET", self._flag_path())
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
        else:
            _raise_for(response)

    def _flag_path(self) -> str:
        return f"api/admin/projects/{self._project}/features/{FLAG_NAME}"

    def _strategies_path(self) -> str:
        return f"{self._flag_path()}/environments/{self._environment}/strategies"

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as error:
            raise UnleashAdminError(f"{method} {path}: {error}") from error
        _raise_for(response)
        return response


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    raise UnleashAdminError(
        f"{response.request.method} {response.request.url.path}: "
        f"{response.status_code} {response.text[:300]}"
    )
