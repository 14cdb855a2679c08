"""What the `clinic` command prints: stored text never reaches the terminal as control
characters.

Names, e-mails, comments and reasons are refused at input when they hold control
characters (appointments/checks.py), but rows written before, or by SQL, may hold
them; an escape sequence in a ledger comment would otherwise clear the operator's
screen or retitle the window. Everything written to standard output goes through
``TerminalSafeStream``: every control character but newline and tab, and the
bidirectional overrides, is written as ``\\uXXXX``, which is also a valid escape inside
the JSON the commands print with ``--json``.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escaped(text: str) -> str:
    """``text`` with each unsafe character written as ``\\uXXXX``."""
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class TerminalSafeStream(io.TextIOBase):
    """A text stream writing ``escaped`` text to another."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(escaped(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def writable(self) -> bool:
        return True


@contextmanager
def safe_standard_output() -> Iterator[None]:
    """Standard output escaped (see the module) while the block runs."""
    original = sys.stdout
    sys.stdout = TerminalSafeStream(original)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = original
