"""Preload what a page of appointments will show, from the fields the query selects.

A list (or a single lookup) resolves every doctor and patient link of its rows
in one pass (``LinkResolver.prefetch``) and loads the people, memberships and
clinics the selection reaches in one batch per table. The fields then answer
from memory, without a task or a DataLoader round per row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from appointments.models import Appointment
from appointments.sides import DOCTOR, PATIENT
from server.context import RequestContext

LINK_FIELDS = frozenset({"doctor", "patient", "clinicDoctor", "clinicPatient"})


def selected_paths(
    selections: Iterable[SelectedField | FragmentSpread | InlineFragment], prefix: str = ""
) -> set[str]:
    """Dotted paths of every field the response will show below ``selections``
    (fragments flattened; what ``@skip`` or ``@include`` leaves out is not there)."""
    paths: set[str] = set()
    for selection in selections:
        if not _shown(selection):
            continue
        if isinstance(selection, SelectedField):
            path = prefix + selection.name
            paths.add(path)
            paths |= selected_paths(selection.selections, path + ".")
        else:
            paths |= selected_paths(selection.selections, prefix)
    return paths


def _shown(selection: SelectedField | FragmentSpread | InlineFragment) -> bool:
    # Strawberry has resolved the directives' arguments, variables included.
    directives = selection.directives
    skip, include = directives.get("skip"), directives.get("include")
    return not (skip is not None and skip.get("if")) and (
        include is None or bool(include.get("if"))
    )


async def preload_appointments(
    context: RequestContext, rows: Sequence[Appointment], selected: set[str]
) -> None:
    """``selected``: paths relative to the appointment (``doctor``, ``clinicDoctor.user``...)."""
    if not rows:
        return
    if selected & LINK_FIELDS:
        people = [
            side
            for side, legacy_field, new_field, person_field in (
                (DOCTOR, "doctor", "clinicDoctor", "user"),
                (PATIENT, "patient", "clinicPatient", "patient"),
            )
            if legacy_field in selected or f"{new_field}.{person_field}" in selected
        ]
        await context.links.prefetch(rows, people)
    clinic_ids = {row.clinic_id for row in rows} if "clinic" in selected else set()
    user_ids: set[uuid.UUID] = set()
    patient_ids: set[uuid.UUID] = set()
    for side, person_ids, legacy_field, new_field, person_field in (
        (DOCTOR, user_ids, "doctor", "clinicDoctor", "user"),
        (PATIENT, patient_ids, "patient", "clinicPatient", "patient"),
    ):
        wants_person = legacy_field in selected
        wants_member = f"{new_field}.{person_field}" in selected
        wants_clinic = f"{new_field}.clinic" in selected
        for row in rows:
            link = context.links.ready(side, row)
            if link is None:
                continue
            if wants_person and link.person_id is not None:
                person_ids.add(link.person_id)
            if link.membership is not None:
                if wants_member:
                    person_ids.add(side.person_of(link.membership))
                if wants_clinic:
                    clinic_ids.add(link.membership.clinic_id)
    loaders = context.loaders
    await loaders.preload(
        (loaders.user_by_id, user_ids),
        (loaders.patient_by_id, patient_ids),
        (loaders.clinic_by_id, clinic_ids),
    )
