"""Loopback mocks of APIs that take a query language, built from their public documentation.

Each mock parses its language strictly and records what it parsed (``parsed``): an injection
test asserts that a value arrived as one value, never as syntax.

* :class:`ServiceNowTable`: the Table API, ``GET /api/now/table/{table}`` (ServiceNow docs
  "Table API", "Operators available for filters and queries"; shared/reference/real-api-facts.md
  section 1): rows in ``result``, every value a string, a reference field
  ``{"link": ..., "value": sys_id}``; ``sysparm_query`` conditions ``<field><OP><value>`` joined
  by ``^`` (``^^`` is a literal ``^``), ``ORDERBY<f>``/``ORDERBYDESC<f>``, IN with a comma list,
  ISEMPTY/ISNOTEMPTY, LIKE (contains); ``sysparm_fields``, ``sysparm_limit``/``sysparm_offset``,
  ``X-Total-Count`` and a ``Link`` ``rel="next"``; ``sysparm_display_value=true`` gives choice
  labels instead of stored values.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from tests.servers.mockapi import Reply

__all__ = ["SN_STATES", "ServiceNowTable", "servicenow_rows"]

SN_STATES = {
    "1": "New",
    "2": "In Progress",
    "3": "On Hold",
    "6": "Resolved",
    "7": "Closed",
    "8": "Canceled",
}
_SN_OPS = ("ISNOTEMPTY", "ISEMPTY", "STARTSWITH", "ENDSWITH", "NOT LIKE", "LIKE", "NOT IN", "IN",
           "!=", ">=", "<=", "=", ">", "<")  # fmt: skip
_NUMERIC = {"state", "priority"}


def servicenow_rows(base: str = "https://example.service-now.com") -> list[dict[str, Any]]:
    words = ["Disk full", "disk slow", "DISK^error", "Email down", "VPN 100% broken", "printer_jam"]
    rows = []
    for i in range(45):
        caller = f"{i % 5:032x}"
        rows.append(
            {
                "sys_id": f"{i:032x}",
                "number": f"INC{i:07d}",
                "short_description": f"{words[i % len(words)]} #{i}",
                "state": ["1", "2", "3", "6", "7", "8"][i % 6],
                "priority": str(1 + i % 5),
                "caller_id": {"link": f"{base}/api/now/table/sys_user/{caller}", "value": caller}
                if i % 9
                else "",
                "opened_at": f"2024-06-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00",
            }
        )
    return rows


def _split_query(query: str) -> list[str]:
    """Split on ``^`` but not ``^^`` (a literal caret)."""
    parts, buf, i = [], "", 0
    while i < len(query):
        if query.startswith("^^", i):
            buf += "^"
            i += 2
        elif query[i] == "^":
            parts.append(buf)
            buf = ""
            i += 1
        else:
            buf += query[i]
            i += 1
    parts.append(buf)
    return [p for p in parts if p]


class ServiceNowTable:
    def __init__(self) -> None:
        self.rows = servicenow_rows()
        self.parsed: list[list[tuple[str, str, str]]] = []  # per request: (field, op, value)

    def _condition(self, text: str) -> tuple[str, str, str]:
        m = re.match(r"^([a-z_][a-z0-9_.]*)", text)
        if not m:
            raise ValueError(text)
        field, rest = m.group(1), text[m.end() :]
        for op in _SN_OPS:
            if rest.startswith(op):
                return field, op, rest[len(op) :]
        raise ValueError(text)

    @staticmethod
    def _value(row: dict[str, Any], field: str) -> str:
        v = row.get(field, "")
        return v["value"] if isinstance(v, dict) else str(v)

    def _keep(self, row: dict[str, Any], field: str, op: str, want: str) -> bool:
        have = self._value(row, field)
        if field in _NUMERIC and op in ("=", "!=", ">", ">=", "<", "<="):
            a, b = int(have), int(want)
            return {"=": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[
                op
            ]
        if op == "=":
            return have == want
        if op == "!=":
            return have != want
        if op == "LIKE":
            return want.lower() in have.lower()
        if op == "IN":
            return have in want.split(",")
        if op == "ISEMPTY":
            return have == ""
        if op == "ISNOTEMPTY":
            return have != ""
        return {">": have > want, ">=": have >= want, "<": have < want, "<=": have <= want}.get(
            op, True
        )

    def __call__(
        self, method: str, seg: list[str], query: list[tuple[str, str]], base: str
    ) -> Reply:
        q = dict(query)
        if seg[:3] != ["api", "now", "table"] or len(seg) != 4:
            return Reply(
                400, {"error": {"message": "Invalid table", "detail": ""}, "status": "failure"}
            )
        rows = list(self.rows)
        conditions, order = [], []
        for part in _split_query(q.get("sysparm_query", "")):
            if part.startswith("ORDERBYDESC"):
                order.append((part[11:], True))
            elif part.startswith("ORDERBY"):
                order.append((part[7:], False))
            else:
                conditions.append(self._condition(part))
        self.parsed.append(conditions)
        for field, op, value in conditions:
            rows = [r for r in rows if self._keep(r, field, op, value)]
        for field, desc in reversed(order):
            rows.sort(key=lambda r: self._value(r, field), reverse=desc)
        total = len(rows)
        limit, offset = int(q.get("sysparm_limit", "10000")), int(q.get("sysparm_offset", "0"))
        page = rows[offset : offset + limit]
        if q.get("sysparm_display_value") == "true":
            page = [{**r, "state": SN_STATES[r["state"]]} for r in page]
        if q.get("sysparm_fields"):
            fields = q["sysparm_fields"].split(",")
            page = [{k: v for k, v in r.items() if k in fields} for r in page]
        headers = [("X-Total-Count", str(total))]
        if offset + limit < total:
            nxt = urlencode({**q, "sysparm_offset": str(offset + limit)})
            headers.append(("Link", f'<{base}/{"/".join(seg)}?{nxt}>;rel="next"'))
        return Reply(200, {"result": page}, tuple(headers))
