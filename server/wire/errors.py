"""The 2030.5 Error resource that every 4xx from the device port carries.

`reasonCode` 0 is "invalid request format" (a body or query that cannot be read) and 1 "invalid
request values" (anything else a client may correct: unknown resources, refused identities,
conflicts). The human-readable reason rides in an XML comment before the root element, so clients
can log it while the document stays exactly the schema's `Error`.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException

from gridshare.server.wire.xmlio import SEP_NS

INVALID_FORMAT = 0
INVALID_VALUES = 1
_FORMAT_STATUSES = frozenset({400, 413, 415})


class InvalidValues(HTTPException):
    """A well-formed request whose values are refused: a 4xx with reasonCode 1 whatever the status."""

    reason_code = INVALID_VALUES


def reason_code(status: int) -> int:
    return INVALID_FORMAT if status in _FORMAT_STATUSES else INVALID_VALUES


def _comment(text: str) -> str:
    text = " ".join(text.split())  # one line
    while "--" in text:
        text = text.replace("--", "- -")
    return text.rstrip("-")


def error_document(status: int, message: str, code: int | None = None) -> bytes:
    """`<Error><reasonCode/></Error>`, preceded by the reason as a comment (no markup can escape it)."""
    code = reason_code(status) if code is None else code
    body = f'<Error xmlns="{SEP_NS}"><reasonCode>{code}</reasonCode></Error>'
    comment = _comment(message)
    prolog = f"<!-- {comment} -->\n" if comment else ""
    # No XML declaration, as no other body here has one: clients that decode to text first (the CSIP-AUS
    # conformance client does) cannot parse a str that declares an encoding.
    return f"{prolog}{body}".encode()
