"""The request shapes the GraphQL benchmark sends, each with PostGraphile's equivalent.

A shape is what a frontend asks for, written for our schema and for the schema
PostGraphile v4 derives from the same tables (relations named after their
foreign keys, the range filter from ``postgraphile-plugin-connection-filter``).
Both sides of a shape select the same values from the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

HOT_FIELDS = """
      id startsAt status
      doctor { name }
      patient { fullName }
      clinicDoctor { user { name } }
      clinicPatient { patient { fullName } }
"""
PG_HOT_FIELDS = """
      id startsAt status
      userByDoctorId { name }
      patientByPatientId { fullName }
      clinicDoctorByClinicDoctorId { userByUserId { name } }
      clinicPatientByClinicPatientId { patientByPatientId { fullName } }
"""
CLINIC_FIELDS = """
      id startsAt status
      clinic { id name }
      doctor { name }
      patient { fullName }
      clinicDoctor { clinic { name } user { name } }
      clinicPatient { patient { fullName } }
"""
PG_CLINIC_FIELDS = """
      id startsAt status
      clinicByClinicId { id name }
      userByDoctorId { name }
      patientByPatientId { fullName }
      clinicDoctorByClinicDoctorId { clinicByClinicId { name } userByUserId { name } }
      clinicPatientByClinicPatientId { patientByPatientId { fullName } }
"""
DAY_FIELDS = """
      id startsAt endsAt status reason
      doctor { name }
      patient { fullName dateOfBirth }
      clinicDoctor { user { name } }
      clinicPatient { patient { fullName dateOfBirth } }
"""
PG_DAY_FIELDS = """
      id startsAt endsAt status reason
      userByDoctorId { name }
      patientByPatientId { fullName dateOfBirth }
      clinicDoctorByClinicDoctorId { userByUserId { name } }
      clinicPatientByClinicPatientId { patientByPatientId { fullName dateOfBirth } }
"""
RICH_FIELDS = """
      id startsAt endsAt status reason createdAt updatedAt
      clinic { id name }
      doctor { id name email }
      patient { id fullName dateOfBirth }
      clinicDoctor { id active clinic { name } user { id name } }
      clinicPatient { id patient { id fullName dateOfBirth } }
"""
PG_RICH_FIELDS = """
      id startsAt endsAt status reason createdAt updatedAt
      clinicByClinicId { id name }
      userByDoctorId { id name email }
      patientByPatientId { id fullName dateOfBirth }
      clinicDoctorByClinicDoctorId { id active clinicByClinicId { name } userByUserId { id name } }
      clinicPatientByClinicPatientId { id patientByPatientId { id fullName dateOfBirth } }
"""


def our_list(fields: str) -> str:
    return (
        "query List($clinicId: ID!, $first: Int!) {\n"
        "  appointments(first: $first, filter: {clinicId: $clinicId}) {\n"
        "    edges { node {" + fields + "    } }\n  }\n}"
    )


def pg_list(fields: str) -> str:
    return (
        "query List($clinicId: UUID!, $first: Int!) {\n"
        "  allAppointments(first: $first, condition: {clinicId: $clinicId},"
        " orderBy: [STARTS_AT_ASC, ID_ASC]) {\n"
        "    nodes {" + fields + "    }\n  }\n}"
    )


def our_single(fields: str) -> str:
    return "query One($id: ID!) {\n  appointment(id: $id) {" + fields + "  }\n}"


def pg_single(fields: str) -> str:
    return "query One($id: UUID!) {\n  appointmentById(id: $id) {" + fields + "  }\n}"


LIST = our_list(HOT_FIELDS)
PG_LIST = pg_list(PG_HOT_FIELDS)
SINGLE = our_single(HOT_FIELDS)
PG_SINGLE = pg_single(PG_HOT_FIELDS)
LIST_CLINIC = our_list(CLINIC_FIELDS)
PG_LIST_CLINIC = pg_list(PG_CLINIC_FIELDS)
SINGLE_RICH = our_single(RICH_FIELDS)
PG_SINGLE_RICH = pg_single(PG_RICH_FIELDS)
DAY = (
    "query Day($clinicId: ID!, $from: DateTime!, $before: DateTime!, $first: Int!) {\n"
    "  appointments(first: $first, filter: {clinicId: $clinicId, startsFrom: $from,"
    " startsBefore: $before}) {\n"
    "    edges { node {" + DAY_FIELDS + "    } }\n  }\n}"
)
PG_DAY = (
    "query Day($clinicId: UUID!, $from: Datetime!, $before: Datetime!, $first: Int!) {\n"
    "  allAppointments(first: $first, condition: {clinicId: $clinicId},"
    " filter: {startsAt: {greaterThanOrEqualTo: $from, lessThan: $before}},"
    " orderBy: [STARTS_AT_ASC, ID_ASC]) {\n"
    "    nodes {" + PG_DAY_FIELDS + "    }\n  }\n}"
)
ACROSS = (
    "query Across($first: Int!) {\n"
    "  appointments(first: $first) {\n"
    "    edges { node {" + HOT_FIELDS + "    } }\n  }\n}"
)
PG_ACROSS = (
    "query Across($first: Int!) {\n"
    "  allAppointments(first: $first, orderBy: [STARTS_AT_ASC, ID_ASC]) {\n"
    "    nodes {" + PG_HOT_FIELDS + "    }\n  }\n}"
)
"""A list across every clinic (an admin's view, no clinic filter); the benchmark puts
the other clinics in mixed stages (``bench.graphql.set_stage``)."""
TYPENAME = "{ __typename }"
"""The floor: a request that reads nothing (the token is checked all the same)."""
CREATE = """mutation Create($input: CreateAppointmentInput!) {
  createAppointment(input: $input) {
    __typename
    ... on AppointmentSuccess { appointment { id } }
  }
}"""
CREATE_RICH = (
    "mutation Create($input: CreateAppointmentInput!) {\n"
    "  createAppointment(input: $input) {\n"
    "    __typename\n"
    "    ... on AppointmentSuccess { appointment {" + RICH_FIELDS + "    } }\n  }\n}"
)
PG_CREATE_RICH = (
    "mutation Create($input: CreateAppointmentInput!) {\n"
    "  createAppointment(input: $input) {\n"
    "    appointment {" + PG_RICH_FIELDS + "    }\n  }\n}"
)


@dataclass(frozen=True, slots=True)
class Shape:
    """A request shape measured in ``shadow`` against PostGraphile's equivalent."""

    name: str
    label: str
    rows: int
    """Appointments per response (for the per-row comparison with the hot list)."""
    kind: str
    """``list``, ``day``, ``across``, ``single``, ``payload`` or ``typename``: which
    variables it takes."""
    ours: str
    theirs: str


SHAPES = (
    Shape("list", "list, 100 rows, both field sets", 100, "list", LIST, PG_LIST),
    Shape(
        "list-clinic",
        "list, 100 rows + clinic names",
        100,
        "list",
        LIST_CLINIC,
        PG_LIST_CLINIC,
    ),
    Shape("day", "day view (startsFrom/startsBefore)", 0, "day", DAY, PG_DAY),
    Shape("single", "appointment(id)", 1, "single", SINGLE, PG_SINGLE),
    Shape("single-rich", "appointment(id), rich leaves", 1, "single", SINGLE_RICH, PG_SINGLE_RICH),
    Shape("payload", "createAppointment, rich payload", 1, "payload", CREATE_RICH, PG_CREATE_RICH),
    Shape("across", "list across clinics, mixed stages", 100, "across", ACROSS, PG_ACROSS),
    Shape("typename", "{ __typename } with a token", 0, "typename", TYPENAME, TYPENAME),
)
"""``day``'s rows are the fixture's day count (known once the database is read)."""
