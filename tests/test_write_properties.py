"""Property: whatever sequence of writes and reads two users run from two threads against a write
API that fails now and then, what SQL reports is what the API holds.

Each step runs in its user's thread (one connection per thread, one shared runtime: one row
cache for both). After a write, its report is checked against the API's own log of what it
carried out: ``rowcount`` (or, after an error, ``err.applied``) names exactly the rows changed,
the row in ``err.unknown`` may or may not be, nothing else changed, the message says "outcome
unknown" exactly when a row's outcome is. After every step, each user's SELECT of every table
returns what the API holds for that user, whatever the cache held before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remotetables
from remotetables.auth.store import MemoryTokenStore
from remotetables.demo.authserver.server import DemoAuthServer
from remotetables.errors import Error
from tests.servers.walk import walk_consent
from tests.servers.write_api import GH, SN, ST, WriteAPI, WriteFault

pytestmark = pytest.mark.slow

USERS = ("alice", "bob")
TABLES = {"sn_inc": SN, "gh_issues": GH, "st_customers": ST}
KEY = {"sn_inc": "sys_id", "gh_issues": "id", "st_customers": "id"}
FIELD = {"sn_inc": "short_description", "gh_issues": "title", "st_customers": "name"}
SNOW = 2**62


def config_toml(issuer: str, base: str) -> str:
    return f"""
[providers.demo]
issuer = "{issuer}"
client_id = "remotetables-demo"
scopes = ["incidents.read"]
max_retries = 2

[tables.sn_inc]
url = "{base}{SN}"
rows = "result"
pagination = "link"
page_size_param = "sysparm_limit"
max_page_size = 2
key = "sys_id"
[tables.sn_inc.write]
insert = true
update = true
delete = true
[tables.sn_inc.columns]
sys_id = {{ type = "TEXT", writable = false }}
short_description = "TEXT"
priority = "INTEGER"

[tables.sn_view]
url = "{base}{SN}?sysparm_view=mobile"
rows = "result"
pagination = "link"
page_size_param = "sysparm_limit"
max_page_size = 3
key = "sys_id"
[tables.sn_view.columns]
sys_id = "TEXT"
short_description = "TEXT"
priority = "INTEGER"

[tables.gh_issues]
url = "{base}{GH}"
rows = ""
pagination = "link"
page_size_param = "per_page"
max_page_size = 2
key = "id"
[tables.gh_issues.write]
insert = true
update = true
delete = true
[tables.gh_issues.columns]
id = {{ type = "INTEGER", writable = false }}
title = "TEXT"
priority = "INTEGER"

[tables.st_customers]
url = "{base}{ST}"
rows = "data"
pagination = {{ style = "cursor", cursor_path = "data[-1].id", cursor_param = "starting_after", has_more_path = "has_more" }}
page_size_param = "limit"
max_page_size = 2
key = "id"
[tables.st_customers.write]
insert = true
update = {{ method = "POST", url = "{{url}}/{{key}}" }}
delete = true
idempotency_header = "Idempotency-Key"
[tables.st_customers.columns]
id = {{ type = "TEXT", writable = false }}
name = "TEXT"
priority = "INTEGER"
"""


def seed(api: WriteAPI) -> None:
    api.reset()
    api.github_delete = True
    for owner, keys in (("alice", ("a1", "a2")), ("bob", ("b1",)), ("*", ("t1",)), (None, ("s1",))):
        for k in keys:
            api.add(SN, k, owner, short_description=f"sn {k}", priority=3)
            api.add(ST, f"cus_{k}", owner, name=f"st {k}", priority=3)
    for n, owner in ((1, "alice"), (2, "alice"), (3, "*"), (4, "bob"), (5, None)):
        api.add(GH, SNOW + n * 2**46, owner, title=f"gh {n}", priority=3)
    api.add(GH, -1, "alice", title="gh -1", priority=3)
    api.add(GH, -2, "*", title="gh -2", priority=3)


def expected(api: WriteAPI, table: str, user: str) -> list[tuple[Any, ...]]:
    """What ``SELECT key, field, priority`` must return for ``user``, from the API's state."""
    rows = api.visible(TABLES["sn_inc" if table == "sn_view" else table], user)
    field = FIELD["sn_inc" if table == "sn_view" else table]
    out = []
    for key, row in rows.items():
        prio = row.get("priority")
        out.append((key, row.get(field), None if prio is None else int(prio)))
    return sorted(out, key=repr)


class Users:
    """One thread and one connection per user, on one runtime."""

    def __init__(self, config: Path, store: MemoryTokenStore) -> None:
        self.pools = {u: ThreadPoolExecutor(max_workers=1) for u in USERS}
        self.conns: dict[str, Any] = {}

        def walk(req: Any) -> str:
            return walk_consent(req.authorization_url, username=req.user, password=req.user)

        def open_first() -> Any:
            return remotetables.connect(
                ":memory:", config, user="alice", consent=walk, token_store=store,
                sleep=lambda s: None,
            )  # fmt: skip

        self.conns["alice"] = self.pools["alice"].submit(open_first).result(60)
        runtime = self.conns["alice"].runtime

        def open_other() -> Any:
            return remotetables.connect(
                ":memory:", user="bob", consent=walk, runtime=runtime, sleep=lambda s: None
            )

        self.conns["bob"] = self.pools["bob"].submit(open_other).result(60)
        for u in USERS:  # consent once per user, now
            self.run(u, lambda c: c.execute("SELECT count(*) FROM sn_inc").fetchall())

    def run(self, user: str, fn: Callable[[Any], Any]) -> Any:
        return self.pools[user].submit(fn, self.conns[user]).result(120)

    def submit(self, user: str, fn: Callable[[Any], Any]) -> Any:
        return self.pools[user].submit(fn, self.conns[user])

    def close(self) -> None:
        for u in reversed(USERS):
            self.run(u, lambda c: c.close())
        for pool in self.pools.values():
            pool.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WriteAPI, Users]]:
    with DemoAuthServer() as auth, WriteAPI(token_validator=auth.validate_token) as api:
        path = tmp_path_factory.mktemp("props") / "remotetables.toml"
        path.write_text(config_toml(auth.issuer, api.base_url), encoding="utf-8")
        seed(api)
        users = Users(path, MemoryTokenStore())
        try:
            yield api, users
        finally:
            users.close()
        assert api.bugs == []


# ---------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    kind: str  # insert | update | delete | select | scan_across_write
    user: str
    table: str
    where: str = "all"  # all | key | priority
    pick: int = 0  # which key, for where == "key"
    value: int = 1
    fault: tuple[str, int, int] | None = None  # (kind, status, times)
    other: str = "bob"  # scan_across_write: who writes while `user` reads


FAULTS = st.sampled_from(
    [
        None,
        None,
        ("refuse", 503, 1),
        ("refuse", 503, 9),
        ("refuse", 429, 1),
        ("refuse", 403, 1),
        ("commit_status", 500, 1),
        ("commit_drop", 0, 1),
        ("drop", 0, 1),
        ("hold", 0, 1),
    ]
)

STEPS = st.builds(
    Step,
    kind=st.sampled_from(["insert", "update", "update", "delete", "select", "scan_across_write"]),
    user=st.sampled_from(USERS),
    table=st.sampled_from(list(TABLES)),
    where=st.sampled_from(["all", "key", "key", "priority"]),
    pick=st.integers(0, 9),
    value=st.integers(1, 4),
    fault=FAULTS,
    other=st.sampled_from(USERS),
)


def where_clause(
    step: Step, api: WriteAPI
) -> tuple[str, tuple[Any, ...], Callable[[Any, dict[str, Any]], bool]]:
    """SQL WHERE, its parameters, and the same test on the API's rows."""
    if step.where == "key":
        keys = [*sorted(api.rows[TABLES[step.table]], key=repr), "nope"]
        key = keys[step.pick % len(keys)]
        return f" WHERE {KEY[step.table]} = ?", (key,), lambda k, r: k == key
    if step.where == "priority":
        return " WHERE priority = ?", (step.value,), lambda k, r: r.get("priority") == step.value
    return "", (), lambda k, r: True


def label_key(label: str, table: str) -> Any:
    key = label.split("=", 1)[1]
    return int(key) if table == "gh_issues" else key


def check_write(api: WriteAPI, users: Users, step: Step) -> None:
    resource = TABLES[step.table]
    key, field = KEY[step.table], FIELD[step.table]
    before = api.visible(resource, step.user)
    sql_where, params, matches = where_clause(step, api)
    matched = {k for k, r in before.items() if matches(k, r)}
    if step.kind == "insert":
        sql = f"INSERT INTO {step.table} ({field}, priority) VALUES (?, ?)"
        params = (f"new {step.value}", step.value)
    elif step.kind == "update":
        sql = f"UPDATE {step.table} SET priority = ?{sql_where}"
        params = (step.value, *params)
    else:
        sql = f"DELETE FROM {step.table}{sql_where}"
    method = {"insert": "POST", "update": "POST" if resource == ST else "PATCH"}.get(
        step.kind, "DELETE"
    )
    if step.fault is not None:
        kind, status, times = step.fault
        if kind != "hold" or resource == ST:  # a held request only means something with a key
            api.faults.append(WriteFault(kind, method, resource, status=status or 500, times=times))
    n_changes = len(api.changes)

    def run(conn: Any) -> tuple[int, Error | None]:
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
        except Error as exc:
            return cur.rowcount, exc
        return cur.rowcount, None

    rowcount, err = users.run(step.user, run)
    done = [c for c in api.changes[n_changes:] if c.user == step.user]
    api.faults.clear()
    api.release()  # a held request completes now: it is the row of unknown outcome
    late = [c for c in api.changes[n_changes:] if c.user == step.user][len(done) :]
    changed = [c.key for c in done]  # a PATCH retried after a 5xx may change a row twice
    if err is None:
        assert not late
        if step.kind == "insert":
            assert rowcount == 1 and len(changed) == 1
        else:
            assert set(changed) <= matched
            assert rowcount == len(matched), (sql, params, rowcount, matched)
            after = api.visible(resource, step.user)
            for k in matched:
                assert (
                    (k not in after)
                    if step.kind == "delete"
                    else after[k]["priority"] == step.value
                )
        return
    applied = getattr(err, "applied", None)
    unknown = getattr(err, "unknown", None)
    assert applied is not None and unknown is not None, repr(err)
    assert rowcount == len(applied)
    msg = str(err)
    assert ("outcome unknown" in msg) == bool(unknown), msg
    assert len(unknown) <= 1
    applied_keys = [label_key(a, step.table) for a in applied if a != "1 new row"]
    for label in applied:
        assert label == "1 new row" or label in msg, (label, msg)
    if step.kind != "insert":
        # every row the API changed is named applied, or is the unknown one; no-op rows
        # (the value was already there) are applied without a request
        unknown_keys = [label_key(u, step.table) for u in unknown]
        assert set(changed) - set(applied_keys) <= set(unknown_keys), (changed, applied, unknown)
        assert set(applied_keys) <= matched
        assert {c.key for c in late} <= set(unknown_keys)
        after = api.visible(resource, step.user)
        for k in applied_keys:
            assert (k not in after) if step.kind == "delete" else after[k]["priority"] == step.value
        for k in matched - set(applied_keys) - set(unknown_keys):
            assert after.get(k) == before[k], f"row {key}={k} changed but was not reported"
    else:
        # the rows created are those named applied, plus perhaps the unknown one
        created = len(done) + len(late)
        assert len(applied) <= created <= len(applied) + len(unknown), (created, applied, unknown)


def check_selects(api: WriteAPI, users: Users) -> None:
    for user in USERS:
        for table in ("sn_inc", "sn_view", "gh_issues", "st_customers"):
            key = KEY.get(table, "sys_id")
            field = FIELD.get(table, "short_description")
            sql = f"SELECT {key}, {field}, priority FROM {table}"
            got = users.run(user, lambda c, sql=sql: sorted(c.execute(sql).fetchall(), key=repr))
            assert got == expected(api, table, user), (user, table)


def scan_across_write(api: WriteAPI, users: Users, step: Step) -> None:
    """``user`` reads the first page; ``other`` updates every row it may; the scan ends."""
    table = step.table
    cur_box: list[Any] = []

    def start(conn: Any) -> Any:
        cur = conn.execute(f"SELECT {KEY[table]}, priority FROM {table}")
        cur_box.append(cur)
        return cur.fetchone()

    users.run(step.user, start)
    owner_rows = [k for k, r in api.rows[TABLES[table]].items() if r["_owner"] in ("*", step.other)]
    sql = f"UPDATE {table} SET priority = ? WHERE {KEY[table]} = ?"
    for k in owner_rows[:2]:
        assert users.run(step.other, lambda c, k=k: c.execute(sql, (step.value, k)).rowcount) == 1
    users.run(step.user, lambda c: cur_box[0].fetchall())


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEPS, min_size=1, max_size=8))
def test_what_sql_reports_is_what_the_api_holds(
    world: tuple[WriteAPI, Users], steps: list[Step]
) -> None:
    api, users = world
    seed(api)
    users.run("alice", lambda c: c.runtime.cache.clear())
    for step in steps:
        if step.kind == "select":
            pass
        elif step.kind == "scan_across_write":
            scan_across_write(api, users, step)
        else:
            check_write(api, users, step)
        check_selects(api, users)
