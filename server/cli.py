"""The `clinic` command: serve, migrate, seed, flags, ledger, rollout, usage, token, schema."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


class Command(NamedTuple):
    module: str
    register: str
    help: str


# Only the command asked for is imported (with its database, flags or app dependencies);
# the others are listed by name and help, so that `clinic --help` answers at once.
COMMANDS = {
    "serve": Command("server.service_commands", "add_serve_command", "run the GraphQL service"),
    "migrate": Command(
        "server.migrate_commands",
        "add_migrate_commands",
        "schema upgrades, backfills, validation, contract (default: upgrade)",
    ),
    "seed": Command(
        "server.service_commands",
        "add_seed_command",
        "load the demo data set (skipped if present)",
    ),
    "flags": Command(
        "server.flags_commands", "add_flags_commands", "the flags file, or the flag in Unleash"
    ),
    "documents": Command(
        "server.documents_commands",
        "add_documents_commands",
        "trusted documents (persisted operations)",
    ),
    "ledger": Command(
        "server.ledger_commands",
        "add_ledger_commands",
        "list, show and triage the mismatch ledger",
    ),
    "rollout": Command(
        "server.rollout_commands", "add_rollout_commands", "the guarded rollout autopilot"
    ),
    "user": Command(
        "server.user_commands",
        "add_user_commands",
        "activate or deactivate a user (recovery: a locked-out admin)",
    ),
    "usage": Command(
        "server.usage_commands",
        "add_usage_commands",
        "which clients still read the deprecated fields (doctor, patient)",
    ),
    "token": Command(
        "server.service_commands",
        "add_token_command",
        "mint a bearer token (HS256, CLINIC_JWT_SECRET) to try a role in GraphiQL",
    ),
    "schema": Command("server.service_commands", "add_schema_command", "print the GraphQL SDL"),
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments_given = list(sys.argv[1:] if argv is None else argv)
    arguments = _parser(arguments_given[0] if arguments_given else None).parse_args(arguments_given)
    from flags.document import FlagsFileError
    from server.logs import configure_logging
    from server.settings import Settings, SettingsError
    from server.terminal import safe_standard_output

    try:
        settings = Settings.from_environment()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        with safe_standard_output():
            result: int = arguments.handler(settings, arguments)
    except BrokenPipeError:
        # The reader went away (`clinic rollout status | head`): the rest is not wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except (FlagsFileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return result


def _parser(chosen: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinic", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        if name == chosen:
            register: Callable[[Commands], None] = getattr(
                importlib.import_module(command.module), command.register
            )
            register(commands)
        else:
            commands.add_parser(name, help=command.help)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
