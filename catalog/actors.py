"""Who is making the current change, for the change log."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

# A context variable rather than an argument on every save(): the admin and plain ORM code
# call Model.save()/delete() themselves, and the receivers that log the change only see
# the instance. asgiref copies context into the threads that run sync code.
_current_actor: ContextVar[str | None] = ContextVar("catalog_actor", default=None)


def current_actor() -> str | None:
    """Return the username recorded on changes made now, or None (shell, jobs)."""
    return _current_actor.get()


@contextlib.contextmanager
def acting_as(username: str | None) -> Iterator[None]:
    """Record changes made inside the block as made by `username`."""
    token = _current_actor.set(username)
    try:
        yield
    finally:
        _current_actor.reset(token)
