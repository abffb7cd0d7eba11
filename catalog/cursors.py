"""The cursors of the change log: where a client is in the stream, and whether this log issued it.

A cursor is `<number>.<mark>`: the change's number in commit order (16 hex digits, so that
cursors sort as strings in delivery order) and a mark that ties it to this deployment and to
that exact change: an HMAC, under the deployment's SECRET_KEY, of the change's number, source,
version and commit time. A log restored from a backup, or another deployment's, may well hold a
change with the same number, but not that change: its mark differs, and the cursor is refused
instead of being silently read as a place in a different history.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import uuid

from django.conf import settings
from django.utils.crypto import salted_hmac

_SALT = "catalog.cursors"
_FORMAT = re.compile(r"([0-9a-f]{16})\.([0-9a-f]{20})")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def cursor_of(sequence: int, source_id: uuid.UUID, version: int, occurred_at: dt.datetime) -> str:
    """Return the cursor of the logged change with these fields."""
    return f"{sequence:016x}.{_mark(sequence, source_id, version, occurred_at, settings.SECRET_KEY)}"


def parse_cursor(cursor: object) -> tuple[int, str] | None:
    """Return a cursor's change number and mark, or None when it is no cursor at all."""
    match = _FORMAT.fullmatch(cursor) if isinstance(cursor, str) else None
    return (int(match[1], 16), match[2]) if match else None


def marks_change(mark: str, sequence: int, source_id: uuid.UUID, version: int, occurred_at: dt.datetime) -> bool:
    """Return whether `mark` is the mark of this change, under the current key or a fallback one."""
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())]
    return any(hmac.compare_digest(mark, _mark(sequence, source_id, version, occurred_at, key)) for key in keys)


def _mark(sequence: int, source_id: uuid.UUID, version: int, occurred_at: dt.datetime, key: str) -> str:
    # The commit time in whole microseconds: exact, whichever database returned it.
    micros = (occurred_at - _EPOCH) // dt.timedelta(microseconds=1)
    message = f"{sequence}|{source_id}|{version}|{micros}"
    return salted_hmac(_SALT, message, secret=key, algorithm="sha256").hexdigest()[:20]
