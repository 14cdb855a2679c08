"""Preload what a page of appointments will show, from the fields the query selects.

A list (or a single lookup) resolves every doctor and patient link of its rows
in one pass (``LinkResolver.prefetch``) and loads the people, memberships and
clinics the selection reaches in one batch per table. The fields then answer
from memory, without a task or a DataLoader round per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from appointments.models import Appointment
from appointments.sides import DOCTOR, PATIENT
from server.context import RequestContext

LINK_FIELDS = frozenset({"doctor", "patient", "clinicDoctor", "clinicPatient"})


def selected_paths(
    selections: Iterable[SelectedField | FragmentSpread | InlineFragment], prefix: str = ""
) -> set[str]:
    """Dotted paths of every field selected below ``selections`` (fragments flattened)."""
    paths: set[str] = set()
    for selection in selections:
        if isinstance(selection, SelectedField):
            path = prefix + selection.name
            paths.add(path)
            paths |= selected_paths(selection.selections, path + ".")
        else:
            paths |= selected_paths(selection.selections, prefix)
    return paths


async def preload_appointments(
    context: RequestContext, rows: Sequence[Appointment], selected: set[str]
) -> None:
    """``selected``: paths relative to the appointment (``doctor``, ``clinicDoctor.user``...)."""
    if not rows:
        return
    if selected & LINK_FIELDS:
        await context.links.prefetch(rows)
    clinic_ids = {row.clinic_id for row in rows} if "clinic" in selected else set()
    user_ids, patient_ids = set(), set()
    for row in rows:
        doctor = context.links.ready(DOCTOR, row)
        if doctor is not None:
            if "doctor" in selected and doctor.person_id is not None:
                user_ids.add(doctor.person_id)
            if doctor.membership is not None:
                if "clinicDoctor.user" in selected:
                    user_ids.add(DOCTOR.person_of(doctor.membership))
                if "clinicDoctor.clinic" in selected:
                    clinic_ids.add(doctor.membership.clinic_id)
        patient = context.links.ready(PATIENT, row)
        if patient is not None:
            if "patient" in selected and patient.person_id is not None:
                patient_ids.add(patient.person_id)
            if patient.membership is not None:
                if "clinicPatient.patient" in selected:
                    patient_ids.add(PATIENT.person_of(patient.membership))
                if "clinicPatient.clinic" in selected:
                    clinic_ids.add(patient.membership.clinic_id)
    loaders = context.loaders
    await loaders.preload(
        (loaders.user_by_id, user_ids),
        (loaders.patient_by_id, patient_ids),
        (loaders.clinic_by_id, clinic_ids),
    )
