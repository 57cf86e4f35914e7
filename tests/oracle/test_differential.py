"""Property-based differential test: generated configs x generated queries, remote vs native.

Each example draws a table config (pagination style, page size 1-50, keyed or keyless, cache
on or off, which columns push down and how, an API that filters exactly as SQLite, loosely, or
not at all, ServiceNow-style ACLs after paging that leave pages short or empty) and a few
queries. Every query runs on the remote table and on a native SQLite copy of the rows the API
lets the user see (tests/oracle/model.py); the answers must be identical, value and type.

``pytest --hypothesis-profile=long tests/oracle`` runs many more examples (see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import remotetables
from remotetables.demo.api.server import IncidentsAPI
from tests.oracle.compare import check
from tests.oracle.model import (
    COLUMNS,
    PARAM_COLUMNS,
    Reference,
    native_schema,
    trap_rows,
    unique_rows,
)
from tests.oracle.queries import Query, queries

STYLES = ("link", "next_url", "cursor", "offset", "page", "servicenow")


@dataclass(frozen=True)
class TableConfig:
    style: str
    page_size: int
    keyed: bool
    cached: bool
    api: str  # "exact" | "loose" | "ignore"
    acl: bool
    totals: bool  # offset/page: the config names the total
    columns: tuple[tuple[str, str, str, bool], ...]  # (name, param?, in style, exact)

    @property
    def list_mode(self) -> bool:
        return any(p and i == "comma" for _, p, i, _ in self.columns)

    @property
    def native(self) -> str:
        return f"n_{'key' if self.keyed else 'all'}_{'acl' if self.acl else 'open'}"

    def toml(self, base: str, name: str) -> str:
        dataset = "trapkey" if self.keyed else "trap"
        prefix = "/list" if self.list_mode else ""
        query = []
        if self.api == "ignore":
            query.append("_ignore_filters=1")
        elif self.api != "strict":
            query.append(f"_match={self.api}")
        if self.acl:
            query.append("_acl=1")
        qs = ("?" + "&".join(query)) if query else ""
        if self.style == "servicenow":
            url = f"{base}{prefix}/api/now/table/{dataset}{qs}"
            head = f'url = "{url}"\nrows = "result"\npagination = "link"\npage_size_param = "sysparm_limit"\n'
        else:
            url = f"{base}{prefix}/styles/{self.style}/{dataset}{qs}"
            rows, pag, size = {
                "link": ('""', '"link"', "limit"),
                "next_url": ('"data"', '{ style = "next_url", next_path = "links.next" }', "limit"),
                "cursor": ('"items"', '{ style = "cursor", cursor_path = "next_cursor" }', "limit"),
                "offset": (
                    '"results"',
                    '{ style = "offset", total_path = "total" }' if self.totals else '"offset"',
                    "limit",
                ),
                "page": (
                    '"rows"',
                    '{ style = "page", total_pages_path = "total_pages" }'
                    if self.totals
                    else '"page"',
                    "per_page",
                ),
            }[self.style]
            head = f'url = "{url}"\nrows = {rows}\npagination = {pag}\npage_size_param = "{size}"\n'
        lines = [f"[tables.{name}]", head.rstrip("\n"), f"max_page_size = {self.page_size}"]
        lines.append(f"cache_ttl = {30 if self.cached else 0}")
        if self.keyed:
            lines.append('key = "id"')
        lines.append(f"[tables.{name}.columns]")
        for col, param, in_style, exact in self.columns:
            typ, path = COLUMNS[col]
            parts = [f'type = "{typ}"', f'path = "{path}"']
            if typ in ("INTEGER", "REAL", "BOOLEAN"):
                parts.append('on_error = "null"')
            if param:
                parts.append(f'param = "{param}"')
                parts.append(f'in = "{in_style}"')
                if exact:
                    parts.append("exact = true")
            lines.append(f"{col} = {{ {', '.join(parts)} }}")
        return "\n".join(lines) + "\n"


@st.composite
def table_configs(draw: st.DrawFn) -> TableConfig:
    api = draw(st.sampled_from(["exact", "exact", "loose", "ignore"]))
    # an API with a comma list syntax (the /list routes) splits every parameter on commas
    comma_api = draw(st.booleans())
    columns = []
    for col in COLUMNS:
        pushed = col in PARAM_COLUMNS and draw(st.booleans())
        in_style = (
            ("comma" if comma_api else draw(st.sampled_from(["separate", "repeat"])))
            if pushed
            else "separate"
        )
        # exact = true only where the API's filter is exactly SQLite's `=` on the value sent
        exact = pushed and api == "exact" and col != "flag" and draw(st.booleans())
        columns.append((col, col if pushed else "", in_style, exact))
    style = draw(st.sampled_from(STYLES))
    totals = draw(st.booleans())
    # ACLs after paging leave pages empty: offset and page styles then need a total to know
    # where the rows end (an empty page is their only other end signal)
    acl = draw(st.booleans()) and (totals or style not in ("offset", "page"))
    return TableConfig(
        style=style,
        page_size=draw(st.one_of(st.integers(1, 50), st.sampled_from([1, 2, 7, 50]))),
        keyed=draw(st.booleans()),
        cached=draw(st.booleans()),
        api=api,
        acl=acl,
        totals=totals,
        columns=tuple(columns),
    )


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference()


@pytest.fixture(scope="module")
def trap_api(reference: Reference) -> Iterator[IncidentsAPI]:
    rows = trap_rows()
    with IncidentsAPI(datasets={"trap": rows, "trapkey": unique_rows(rows)}) as server:
        server.router.matchers["exact"] = lambda field, value, accepted: any(
            reference.equal(field, value, text) for text in accepted
        )
        yield server


def _natives(reference: Reference) -> dict[str, list[tuple[Any, ...]]]:
    rows = trap_rows()
    keyed = unique_rows(rows)
    visible = [r for r in rows if r.get("_acl") != "deny"]
    visible_keyed = [r for r in keyed if r.get("_acl") != "deny"]
    return {
        name: [reference.native_row(r) for r in data]
        for name, data in (
            ("n_all_open", rows),
            ("n_all_acl", visible),
            ("n_key_open", keyed),
            ("n_key_acl", visible_keyed),
        )
    }


AUX = """
CREATE TABLE aux_nums(v);
INSERT INTO aux_nums VALUES (1), ('2'), (3.0), (' 4'), (NULL), ('x'), (2.5), (x'33'), ('\uff13');
CREATE TABLE aux_texts(v TEXT);
INSERT INTO aux_texts VALUES ('open'), ('1'), ('01'), ('new,open'), (''), (NULL), ('Ada');
"""


class Session:
    """One connection per example: the remote table ``r`` beside the native copies."""

    def __init__(self, path: Path, natives: dict[str, list[tuple[Any, ...]]]) -> None:
        self.conn = remotetables.connect(":memory:", config=path, sleep=lambda s: None)
        db = self.conn.apsw
        db.execute(AUX)
        for name, rows in natives.items():
            db.execute(native_schema(name))
            db.executemany(f"INSERT INTO {name} VALUES (?,?,?,?,?,?,?)", rows)

    def run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        self.conn.close()


# the run is bounded by the profile's examples (ci: about 80 s here), not by pytest-timeout's 300 s
@pytest.mark.timeout(settings.default.max_examples * 3)
def test_generated_configs_and_queries(
    trap_api: IncidentsAPI, reference: Reference, tmp_path_factory: pytest.TempPathFactory
) -> None:
    natives = _natives(reference)
    folder = tmp_path_factory.mktemp("differential")
    counter = iter(range(10**9))
    stats = {"examples": 0, "queries": 0}

    @settings(
        max_examples=settings.default.max_examples * 2,  # ci: 200 configs; long: 3000
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(cfg=table_configs(), qs=st.lists(queries(), min_size=1, max_size=4))
    def run(cfg: TableConfig, qs: list[Query]) -> None:
        path = folder / f"c{next(counter)}.toml"
        path.write_text(cfg.toml(trap_api.base_url, "r"), encoding="utf-8")
        note(path.read_text(encoding="utf-8"))
        session = Session(path, natives)
        try:
            for q in qs:
                note(f"{q.template} {q.params!r} ({q.mode})")
                check(session.run, q, "r", cfg.native)
                stats["queries"] += 1
        finally:
            session.close()
        stats["examples"] += 1

    run()
    print(f"\ndifferential: {stats['examples']} configs, {stats['queries']} queries")
