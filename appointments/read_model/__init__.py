"""The read model: every appointment a response shows, as JSON the database builds.

An operation's appointment selection is compiled once (per document, operation,
stage set and database) into one statement (``compiler``) whose rows carry each
appointment's JSON and what the migration bookkeeping needs (``bookkeeping``).
The stage rules are SQL generated from the stage table (``served``).
"""
