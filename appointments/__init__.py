"""The appointments domain: models, the migration stage table, write and read paths."""
