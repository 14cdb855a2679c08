"""The mutations: one module a mutation (``<entity>_<verb>.py``), gathered in schema order.

A new mutation is a module declaring its ``Write`` (schema/mutations/base.py), a
line here, its domain action, and the committed SDL (``clinic schema``).
"""

from __future__ import annotations

import strawberry

from schema.mutations import (
    appointment_cancel,
    appointment_create,
    appointment_reassign_doctor,
    appointment_reassign_patient,
    appointment_relink,
    appointment_reschedule,
    clinic_create,
    clinic_doctor_add,
    clinic_doctor_set_active,
    clinic_patient_add,
    clinic_staff_add,
    mismatch_set_status,
    patient_create,
    user_create,
    user_set_active,
)


@strawberry.type
class Mutation:
    create_appointment = appointment_create.create_appointment
    reschedule_appointment = appointment_reschedule.reschedule_appointment
    reassign_doctor = appointment_reassign_doctor.reassign_doctor
    reassign_patient = appointment_reassign_patient.reassign_patient
    cancel_appointment = appointment_cancel.cancel_appointment
    create_clinic = clinic_create.create_clinic
    create_user = user_create.create_user
    set_user_active = user_set_active.set_user_active
    create_patient = patient_create.create_patient
    add_clinic_doctor = clinic_doctor_add.add_clinic_doctor
    set_clinic_doctor_active = clinic_doctor_set_active.set_clinic_doctor_active
    add_clinic_patient = clinic_patient_add.add_clinic_patient
    add_clinic_staff = clinic_staff_add.add_clinic_staff
    set_mismatch_status = mismatch_set_status.set_mismatch_status
    relink_appointment = appointment_relink.relink_appointment
