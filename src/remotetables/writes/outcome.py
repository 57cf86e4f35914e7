"""What a failed write says: rows applied, the row whose outcome is unknown, rows not tried.

Every error a write raises carries ``applied`` (the rows of the statement the API holds) and
``unknown`` (the row the API may or may not hold: its request got no answer or an answer that
does not say, so the statement cannot know; nothing after it was sent).
"""

from __future__ import annotations

from collections.abc import Sequence

from remotetables.errors import Error

__all__ = ["earlier_clause", "may_have_applied", "with_message"]

# 5xx answers that say the request was not carried out (the rest may come after it was)
_NOT_DONE_5XX = frozenset({501, 505})


def may_have_applied(status: int | None) -> bool:
    """Whether an attempt with this outcome (None: no answer) may have changed the API's data.

    No answer, or a 5xx other than 501/505: the request may have been carried out before the
    connection broke or the server failed (Stripe saves and replays such 500s; a proxy's 502/504
    says nothing about the server behind it). A 4xx (and so a 429) was refused."""
    return status is None or (status >= 500 and status not in _NOT_DONE_5XX)


def earlier_clause(applied: Sequence[str]) -> str:
    """The rows a statement applied before the current one, as a clause ("" if none)."""
    if not applied:
        return ""
    shown = ", ".join(applied[:10]) + (
        f" and {len(applied) - 10} more" if len(applied) > 10 else ""
    )
    return (
        f"{len(applied)} earlier row(s) of this statement were already applied and stay "
        f"applied (a remote API cannot be rolled back): {shown}"
    )


def with_message(
    exc: Error, message: str, applied: Sequence[str], unknown: Sequence[str] = ()
) -> Error:
    """A copy of ``exc`` (same class, same attributes) with ``message``, ``applied`` and
    ``unknown``."""
    new = BaseException.__new__(type(exc))
    new.__dict__.update(exc.__dict__)
    new.args = (message,)
    new.applied = tuple(applied)  # type: ignore[attr-defined]
    new.unknown = tuple(unknown)  # type: ignore[attr-defined]
    return new
