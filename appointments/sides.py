"""The two links an appointment carries, described once so every path treats them alike.

An appointment names its doctor and its patient twice: the legacy way (a person
id) and the new way (a clinic membership id). ``Side`` says which columns and
which membership model belong to each, so write, read and comparison code is
written once for both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm.attributes import flag_modified

from appointments.models import (
    Appointment,
    ClinicDoctor,
    ClinicPatient,
    MismatchField,
    Patient,
    User,
)

Membership = ClinicDoctor | ClinicPatient
Person = User | Patient


# Identity equality: there are two sides.
@dataclass(frozen=True, slots=True, eq=False)
class Side:
    name: str
    legacy_column: str
    new_column: str
    legacy_input: str
    new_input: str
    membership_model: type[ClinicDoctor] | type[ClinicPatient]
    person_model: type[User] | type[Patient]
    person_column: str
    person_field: MismatchField
    clinic_field: MismatchField

    def has_legacy_column(self, appointment: Appointment) -> bool:
        """False after the contract revision, when the legacy column is never loaded."""
        # A mapped instance keeps its loaded column values in its __dict__ (what
        # inspect(appointment).dict returns); reading it directly skips inspect(),
        # which matters on the read path (twice per row and side).
        return self.legacy_column in appointment.__dict__

    def legacy_id(self, appointment: Appointment) -> uuid.UUID | None:
        """The legacy person id; None also when the column is not loaded (after the contract)."""
        if not self.has_legacy_column(appointment):
            return None
        value: uuid.UUID | None = getattr(appointment, self.legacy_column)
        return value

    def membership_id(self, appointment: Appointment) -> uuid.UUID | None:
        value: uuid.UUID | None = getattr(appointment, self.new_column)
        return value

    def set_links(
        self,
        appointment: Appointment,
        legacy_id: uuid.UUID | None,
        membership_id: uuid.UUID | None,
    ) -> None:
        """Store both links. An empty legacy link is written only over a loaded column:
        a new row leaves it out, and after the contract revision it does not exist.

        Both columns go into the UPDATE even when the value read earlier is the
        same: that value may be stale (a backfill may have linked the row since,
        and SQLite takes no row lock on read), and the write must replace the
        whole side, never leave half of another writer's link behind.
        """
        columns = [self.new_column]
        if legacy_id is not None or self.has_legacy_column(appointment):
            setattr(appointment, self.legacy_column, legacy_id)
            columns.append(self.legacy_column)
        setattr(appointment, self.new_column, membership_id)
        for column in columns:
            flag_modified(appointment, column)

    def person_of(self, membership: Membership) -> uuid.UUID:
        value: uuid.UUID = getattr(membership, self.person_column)
        return value


DOCTOR = Side(
    name="doctor",
    legacy_column="doctor_id",
    new_column="clinic_doctor_id",
    legacy_input="doctorId",
    new_input="clinicDoctorId",
    membership_model=ClinicDoctor,
    person_model=User,
    person_column="user_id",
    person_field=MismatchField.DOCTOR,
    clinic_field=MismatchField.DOCTOR_CLINIC,
)
PATIENT = Side(
    name="patient",
    legacy_column="patient_id",
    new_column="clinic_patient_id",
    legacy_input="patientId",
    new_input="clinicPatientId",
    membership_model=ClinicPatient,
    person_model=Patient,
    person_column="patient_id",
    person_field=MismatchField.PATIENT,
    clinic_field=MismatchField.PATIENT_CLINIC,
)
SIDES = (DOCTOR, PATIENT)
