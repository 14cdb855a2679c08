"""Feature flags: the migration stage of each clinic, from Unleash or a local file."""

FLAG_NAME = "appointments.clinic-model-migration"
