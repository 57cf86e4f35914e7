"""INSERT, UPDATE and DELETE on remote tables: each row becomes one request to the API.

A table is writable only when its config has a ``[tables.NAME.write]`` section (see
README.md, "Writes"); any other write gets :class:`~remotetables.errors.ReadOnlyError`.

What SQL reports is what the API holds (a remote API cannot be rolled back):

* every row is sent the moment SQLite hands it over; a remote write inside an open transaction
  (``BEGIN``, ``SAVEPOINT``), which ``ROLLBACK`` could not undo, is refused unless the user
  allows it (``connect(writes_in_transaction=True)`` or ``settings.writes_in_transaction``);
* every written value is converted to its column's declared type before anything is sent,
  with the rules of reads (:func:`remotetables.rows.coerce`); a value that does not fit raises
  :class:`~remotetables.errors.CoercionError` naming table, column and row, and that row is
  not sent;
* a failing row stops the statement; the error's ``applied`` lists the rows the API holds,
  its ``unknown`` the row whose request got no answer or one that does not say (a 5xx, or a
  409 after an attempt that got none): the API may hold it; when the API accepted a row but
  its answer cannot be read, the row counts as applied;
* ``UPDATE``/``DELETE ... WHERE`` first reads the matching rows from the API (never from the
  cache: SQLite runs the whole scan before the first write), then writes them one by one by
  key; a DELETE answered 404 counts as done only when an earlier attempt of the same request
  may have deleted the row;
* rowids: an integer key that fits 64 bits is the rowid; any other key gets a 64-bit hash and
  the rows of a shared rowid are told apart by their key (see :func:`values.key_rowid`);
* a ``POST`` is never retried unless the table names an ``idempotency_header`` (then every row
  gets a fresh key, reused on retries, and a 409 "still in progress" is waited out);
  ``PUT``/``PATCH``/``DELETE`` retry like reads;
* ``INSERT ... RETURNING`` is refused (SQLite would return the values given, not the API's row);
* requests use the session user's token (the shared token for system integrations); after
  each write, every user's cached rows of every table on the same API origin are dropped, and
  a scan that started before the write does not store its rows.
"""

from __future__ import annotations

from remotetables.writes.values import key_rowid
from remotetables.writes.writer import MAX_REMEMBERED, NEW_ROW, TableWriter

__all__ = ["MAX_REMEMBERED", "NEW_ROW", "TableWriter", "key_rowid"]
