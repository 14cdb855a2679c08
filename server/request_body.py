"""What the GraphQL endpoint accepts as a request body, decided before Strawberry reads it.

A body is a JSON object in UTF-8, uncompressed. Anything else is refused with a
``RequestRefusedError`` (HTTP 400, or 415 for a ``Content-Encoding``), which the view
answers as a JSON ``errors`` body; nothing about a body can make the service fail.
The checks, each for a way a body used to crash the request:

- the bytes must be UTF-8 (a compressed or binary body is not);
- they must be JSON (no ``NaN`` or ``Infinity``), not nested beyond what the
  decoder can recurse into, with no integer longer than Python's limit for
  converting digits (``sys.get_int_max_str_digits()``, 4300 by default);
- the JSON must be an object (``"x"``, ``42``, ``null``, ``[]`` are not requests);
- every string and member name in it must be Unicode text: a ``\\ud800`` escape
  decodes to a lone surrogate that no database driver can encode. One check over
  the whole object covers the query text, every variable, input field and cursor
  (the rule is ``appointments.checks.is_unicode_text``);
- the query text must hold no run of digits longer than that same limit: graphql-core
  converts an ``Int`` literal with ``int()``, which refuses it with an exception the
  service would otherwise report as an internal error. No valid request has one.
"""

from __future__ import annotations

import json
import re
import sys
from functools import cache
from http import HTTPStatus
from typing import Any, NoReturn

from appointments.checks import is_unicode_text
from appointments.errors import ErrorCode

IDENTITY_ENCODINGS = frozenset({"", "identity"})
# Bytes decoded as strict UTF-8 hold no surrogate, so a parsed string can only hold one
# that a \uD800-\uDFFF escape put there: without one, the walk for lone ones is skipped.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class RequestRefusedError(Exception):
    """A request the endpoint will not run; ``code`` goes in the error's extensions."""

    def __init__(
        self,
        message: str,
        status: HTTPStatus = HTTPStatus.BAD_REQUEST,
        code: str = ErrorCode.INVALID_INPUT.value,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


def check_content_encoding(value: str | None) -> None:
    """Only an uncompressed body is read: any ``Content-Encoding`` but identity gets 415."""
    if value is not None and value.strip().lower() not in IDENTITY_ENCODINGS:
        raise RequestRefusedError(
            "Content-Encoding is not supported: send the body uncompressed",
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE.name,
        )


def decode_body(data: str | bytes) -> dict[str, Any]:
    """The request body as a JSON object, every check of the module passed."""
    try:
        text = data if isinstance(data, str) else data.decode("utf-8")
    except UnicodeDecodeError as error:
        _refuse(f"the request body is not UTF-8 text (byte {error.start})")
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except _ConstantError as error:
        _refuse(f"the request body is not JSON: {error.args[0]} is not a JSON value")
    except json.JSONDecodeError as error:
        at = f"line {error.lineno}, column {error.colno}"
        _refuse(f"the request body is not JSON: {error.msg} ({at})")
    except RecursionError:
        _refuse("the request body nests too deeply")
    except ValueError:
        _refuse(f"a number in the request body has more than {_digit_limit()} digits")
    if not isinstance(document, dict):
        _refuse('the request body must be a JSON object, e.g. {"query": "{ clinics { ... } }"}')
    # A str (not bytes) was not decoded here: it may hold a surrogate as it is.
    escaped = isinstance(data, str) or _SURROGATE_ESCAPE.search(text) is not None
    where = non_unicode_member(document) if escaped else None
    if where is not None:
        _refuse(f"{where} must be Unicode text (it holds a lone surrogate escape)", where)
    query = document.get("query")
    long_number = _long_digit_run(_digit_limit())
    if isinstance(query, str) and long_number is not None and long_number.search(query):
        _refuse(f"the query holds a number with more than {_digit_limit()} digits", "query")
    return document


def non_unicode_member(document: object) -> str | None:
    """Where the first string or member name that is not Unicode text is, or None.

    The place is a path into the body (``variables.input.reason``, ``query``,
    ``variables.ids[2]``), never the text itself: it could not be encoded in an answer.
    The walk uses its own stack, so any depth the JSON decoder accepted is walked.
    """
    stack: list[tuple[object, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not is_unicode_text(value):
                return path or "the body"
        elif isinstance(value, dict):
            for key, item in value.items():
                if not is_unicode_text(key):
                    return f"a member name in {path or 'the body'}"
                stack.append((item, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            stack.extend(
                (item, f"{path}[{index}]")
                for index, item in enumerate(value)
                if isinstance(item, str | dict | list)
            )
    return None


def _refuse(message: str, field: str | None = None) -> NoReturn:
    raise RequestRefusedError(message, field=field)


class _ConstantError(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity``: Python's decoder accepts them, JSON has none."""


def _no_constant(name: str) -> NoReturn:
    raise _ConstantError(name)


def _digit_limit() -> int:
    return sys.get_int_max_str_digits()


@cache
def _long_digit_run(limit: int) -> re.Pattern[str] | None:
    """Digits beyond Python's conversion limit (none when the limit is off, 0).

    Matched only from the start of a run of digits: tried at every digit, a body of
    runs just under the limit would cost quadratic time (half a second for 100 kB).
    """
    return re.compile(f"(?<![0-9])[0-9]{{{limit + 1},}}") if limit else None
