"""`clinic documents check MANIFEST`: a trusted-documents manifest checked against the schema
(for the frontend's CI), as the service checks ``CLINIC_TRUSTED_DOCUMENTS`` at start."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.settings import Settings


def add_documents_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    documents = commands.add_parser("documents", help="trusted documents (persisted operations)")
    actions = documents.add_subparsers(required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="check a manifest (JSON hash to document, or a directory of .graphql)"
    )
    check.add_argument("manifest", type=Path)
    check.set_defaults(handler=_check)


def _check(_settings: Settings, arguments: argparse.Namespace) -> int:
    from schema.schema import schema
    from schema.trusted_documents import ManifestError, load_trusted

    try:
        trusted = load_trusted(arguments.manifest, schema)
    except ManifestError as error:
        for problem in error.problems:
            print(f"{arguments.manifest}: {problem}", file=sys.stderr)
        return 1
    print(f"{arguments.manifest}: {len(trusted.documents)} documents, every one valid")
    return 0
