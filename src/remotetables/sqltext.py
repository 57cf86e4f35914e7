"""What the connection reads of a statement's text without SQLite: the table an INSERT / UPDATE /
DELETE writes, whether it may be an ``INSERT ... RETURNING`` (the DB-API cursor and the exec
trace use them; SQLite itself still compiles every statement)."""

from __future__ import annotations

import re

__all__ = ["DML", "QUOTED", "dml_target", "insert_returning"]

_LEAD = r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*"  # blanks and comments before the statement
DML = re.compile(_LEAD + r"(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE | re.DOTALL)
# an identifier: "quoted", [bracketed], `backticked` or bare
_NAME = r'"(?:[^"]|"")*"|\[[^\]]*\]|`(?:[^`]|``)*`|[^\W\d][\w$]*'
_OR = r"(?:\s+OR\s+(?:ROLLBACK|ABORT|REPLACE|FAIL|IGNORE))?"
_TARGET = re.compile(
    _LEAD
    + rf"(?:INSERT{_OR}\s+INTO|REPLACE\s+INTO|UPDATE{_OR}|DELETE\s+FROM)\s+"
    + rf"(?P<first>{_NAME})(?:\s*\.\s*(?P<second>{_NAME}))?",
    re.IGNORECASE | re.DOTALL,
)
# what may hold a ';' that does not end a statement: literals, quoted names, comments
QUOTED = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|\[[^\]]*\]|`(?:[^`]|``)*`|--[^\n]*|/\*.*?(?:\*/|\Z)""",
    re.DOTALL,
)


def _unquote(name: str) -> str:
    if name[:1] == '"':
        return name[1:-1].replace('""', '"')
    if name[:1] == "`":
        return name[1:-1].replace("``", "`")
    if name[:1] == "[":
        return name[1:-1]
    return name


def dml_target(sql: str) -> tuple[str | None, str] | None:
    """(schema or None, table) that an INSERT / REPLACE / UPDATE / DELETE statement writes,
    unquoted; None for any other statement, for SQL holding several statements, or for one
    this cannot read (``WITH ...`` first).

    >>> dml_target("insert or replace into main.[my table] (a) values (1)")
    ('main', 'my table')
    """
    m = _TARGET.match(sql)
    if m is None:
        return None
    _, _, rest = QUOTED.sub(" ", sql).partition(";")
    if rest.strip().strip(";").strip():
        return None  # more statements follow
    first, second = m["first"], m["second"]
    if second is None:
        return None, _unquote(first)
    return _unquote(first), _unquote(second)


_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_INSERT = re.compile(r"\b(?:INSERT|REPLACE)\b", re.IGNORECASE)


def insert_returning(sql: str) -> bool:
    """Whether ``sql`` may be an ``INSERT ... RETURNING`` (literals, quoted names and comments
    are not looked at).

    >>> insert_returning("INSERT INTO t (a) VALUES ('returning') RETURNING rowid")
    True
    """
    bare = QUOTED.sub(" ", sql)
    return bool(_INSERT.search(bare) and _RETURNING.search(bare))
