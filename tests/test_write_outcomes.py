"""What a write reports is what the API holds (issue 22), against a loopback API whose three
resources write as ServiceNow's Table API, GitHub's REST API and Stripe (tests/servers/write_api.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import remotetables
from remotetables.errors import NotSupportedError, RemoteError, TransportError
from remotetables.writes import key_rowid
from tests.servers.write_api import GH, SN, ST, WriteAPI, WriteFault

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}
SNOWFLAKE = 2**62  # GitHub-like ids: 2^62 + n * 2^46


def tables_toml(base: str, *, settings: str = "") -> str:
    return f"""
{settings}
[providers.demo]
token_env = "API_TOKEN"

[tables.sn_inc]
provider = "demo"
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
state = "TEXT"
priority = "INTEGER"
assigned_to = {{ type = "TEXT", writable = false }}

[tables.sn_active]
provider = "demo"
url = "{base}{SN}?sysparm_query=active%3Dtrue"
rows = "result"
pagination = "link"
page_size_param = "sysparm_limit"
max_page_size = 2
key = "sys_id"
[tables.sn_active.columns]
sys_id = "TEXT"
priority = "INTEGER"

[tables.gh_issues]
provider = "demo"
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
state = "TEXT"

[tables.st_customers]
provider = "demo"
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
"""


@pytest.fixture
def wapi() -> Iterator[WriteAPI]:
    with WriteAPI(tokens=TOKENS) as api:
        api.add(SN, "a1", "alice", short_description="one", state="open", priority=3, active=True)
        api.add(SN, "a2", "alice", short_description="two", state="open", priority=3, active=True)
        api.add(SN, "a3", "alice", short_description="three", state="open", priority=3)
        api.add(SN, "s1", None, short_description="shared", state="open", priority=3)
        api.add(SN, "b1", "bob", short_description="bob's", state="open", priority=3)
        for n in (1, 2):
            api.add(GH, SNOWFLAKE + n * 2**46, "alice", title=f"snow {n}", state="open")
        api.add(GH, -1, "alice", title="minus one", state="open")
        api.add(GH, -2, "alice", title="minus two", state="open")
        api.add(ST, "cus_a", "alice", name="Ada")
        yield api
        assert api.bugs == []


@pytest.fixture
def config(wapi: WriteAPI, write_config: Callable[..., Path]) -> Path:
    return write_config(tables_toml(wapi.base_url))


def connect(config: Path | None = None, token: str = "tok-alice", **kw: Any) -> Any:
    kw.setdefault("sleep", lambda s: None)
    if "runtime" in kw:
        return remotetables.connect(":memory:", **kw)
    return remotetables.connect(":memory:", config, environ={"API_TOKEN": token}, **kw)


def sent(api: WriteAPI) -> list[tuple[str, str]]:
    return [(m, p) for _, m, p, _ in api.log if m != "GET"]


# ---------------------------------------------------------------- 1. a scan open during a write


@pytest.mark.parametrize("writer", ["same connection", "another thread"])
def test_a_scan_open_during_a_write_does_not_store_its_stale_rows(
    wapi: WriteAPI, config: Path, writer: str
) -> None:
    with connect(config) as conn:
        cur = conn.execute("SELECT sys_id, priority FROM sn_inc")
        assert cur.fetchone() == ("a1", 3)  # page 1 (a1, a2) read: the scan is still open

        def update(c: Any) -> None:
            assert c.execute("UPDATE sn_inc SET priority = 9 WHERE sys_id = 'a2'").rowcount == 1

        if writer == "same connection":
            update(conn)
        else:

            def in_thread() -> None:
                with connect(runtime=conn.runtime) as other:
                    update(other)

            t = threading.Thread(target=in_thread)
            t.start()
            t.join(timeout=60)
            assert not t.is_alive()
        rest = cur.fetchall()  # the scan ends: it read a2 before the write
        assert ("a2", 3) in rest
        assert wapi.visible(SN, "alice")["a2"]["priority"] == 9
        # what the next SELECT says is what the API holds
        got = conn.execute("SELECT priority FROM sn_inc WHERE sys_id = 'a2'").fetchall()
        assert got == [(9,)]


# ---------------------------------------------------------------- 2. UPDATE/DELETE never read the cache


def test_an_update_is_sent_when_the_cache_holds_the_new_value_but_the_api_does_not(
    wapi: WriteAPI, config: Path
) -> None:
    with connect(config) as conn:
        assert conn.execute("SELECT count(*) FROM sn_inc").fetchone() == (4,)  # cached
        wapi.rows[SN]["a1"]["priority"] = 5  # someone else changes it at the API
        wapi.rows[SN]["a3"]["state"] = "closed"
        cur = conn.execute("UPDATE sn_inc SET priority = 3 WHERE sys_id = 'a1'")
        assert cur.rowcount == 1
        assert wapi.visible(SN, "alice")["a1"]["priority"] == 3
        # a DELETE decides which rows match from the API's rows, not the cached ones
        cur = conn.execute("DELETE FROM sn_inc WHERE state = 'open' AND sys_id = 'a3'")
        assert cur.rowcount == 0
        assert "a3" in wapi.visible(SN, "alice")
        assert conn.execute("SELECT priority FROM sn_inc WHERE sys_id = 'a1'").fetchall() == [(3,)]


# ---------------------------------------------------------------- 3. outcome unknown


@pytest.mark.parametrize("kind", ["commit_status", "commit_drop"])
def test_a_post_without_a_key_that_got_no_clear_answer_is_outcome_unknown(
    wapi: WriteAPI, config: Path, kind: str
) -> None:
    wapi.faults.append(WriteFault(kind, "POST", SN, status=500))
    with connect(config) as conn:
        cur = conn.cursor()
        with pytest.raises(RemoteError) as info:
            cur.execute("INSERT INTO sn_inc (short_description) VALUES ('maybe')")
        err = info.value
        msg = str(err)
        assert "outcome unknown" in msg and "failed" not in msg
        assert "check before running the statement again" in msg
        assert err.applied == ()  # type: ignore[attr-defined]
        assert err.unknown == ("new row (row 1 of the statement)",)  # type: ignore[attr-defined]
        assert isinstance(err, TransportError) == (kind == "commit_drop")
        assert cur.rowcount == 0
        # the row IS there: the error said it may be
        made = [
            k for k, r in wapi.visible(SN, "alice").items() if r["short_description"] == "maybe"
        ]
        assert len(made) == 1
        assert sent(wapi) == [("POST", SN)]  # a POST without a key is never retried


def test_rows_before_an_unknown_one_are_applied_and_later_ones_not_tried(
    wapi: WriteAPI, config: Path
) -> None:
    # SQLite writes the matched rows in rowid order (a hash of a text key): which rows come
    # before a2 is known only from the API's own log
    with connect(config) as conn:
        wapi.faults.append(WriteFault("commit_status", "PATCH", f"{SN}/a2", status=500, times=9))
        with pytest.raises(RemoteError) as info:
            conn.execute("UPDATE sn_inc SET priority = 1 WHERE sys_id IN ('a1', 'a2', 'a3')")
        err = info.value
        order = [p.rsplit("/", 1)[1] for _, m, p, _ in wapi.log if m == "PATCH"]
        first = order.index("a2")
        assert set(order[first:]) == {"a2"}  # a2 retried (PATCH is idempotent), nothing after it
        before = order[:first]
        assert err.applied == tuple(f"sys_id={k}" for k in before)  # type: ignore[attr-defined]
        assert err.unknown == ("sys_id=a2",)  # type: ignore[attr-defined]
        msg = str(err)
        assert "PATCH of sys_id=a2: outcome unknown" in msg
        if before:
            assert f"{len(before)} earlier row(s) of this statement were already applied" in msg
        rows = wapi.visible(SN, "alice")
        changed = {k for k in ("a1", "a2", "a3") if rows[k]["priority"] == 1}
        assert changed == {*before, "a2"}  # the unknown one was in fact carried out


def test_a_keyed_post_in_progress_after_no_answer_is_outcome_unknown(
    wapi: WriteAPI, config: Path
) -> None:
    """Stripe: no answer to the first attempt, then 409 (the same key is still being
    processed) on every retry: the row may exist, and does once the API finishes."""
    wapi.faults.append(WriteFault("hold", "POST", ST))
    with connect(config) as conn:
        with pytest.raises(RemoteError) as info:
            conn.execute("INSERT INTO st_customers (name) VALUES ('Grace')")
        err = info.value
        assert err.status_code == 409
        assert err.unknown == ("new row (row 1 of the statement)",)  # type: ignore[attr-defined]
        assert "outcome unknown (an earlier attempt got no answer" in str(err)
        statuses = [s for _, m, p, s in wapi.log if m == "POST"]
        assert statuses[0] is None and set(statuses[1:]) == {409} and len(statuses) > 2
        wapi.release()
        names = [r["name"] for r in wapi.visible(ST, "alice").values()]
        assert names.count("Grace") == 1
        assert conn.execute(
            "SELECT count(*) FROM st_customers WHERE name = 'Grace'"
        ).fetchone() == (1,)


def test_a_keyed_post_whose_answer_was_lost_is_replayed_once(wapi: WriteAPI, config: Path) -> None:
    wapi.faults.append(WriteFault("commit_drop", "POST", ST))
    with connect(config) as conn:
        cur = conn.execute("INSERT INTO st_customers (name) VALUES ('Linus')")
        assert cur.rowcount == 1
        got = conn.execute("SELECT id, name FROM st_customers WHERE rowid = ?", (cur.lastrowid,))
        (row,) = got.fetchall()
    assert [r["name"] for r in wapi.visible(ST, "alice").values()].count("Linus") == 1
    assert row[0] in wapi.visible(ST, "alice")


def test_a_keyed_post_whose_500_is_replayed_is_outcome_unknown(
    wapi: WriteAPI, config: Path
) -> None:
    """Stripe saves a 500 once execution began and replays it: the row exists."""
    wapi.faults.append(WriteFault("commit_status", "POST", ST, status=500))
    with connect(config) as conn, pytest.raises(RemoteError) as info:
        conn.execute("INSERT INTO st_customers (name) VALUES ('Barbara')")
    assert info.value.unknown == ("new row (row 1 of the statement)",)  # type: ignore[attr-defined]
    assert [r["name"] for r in wapi.visible(ST, "alice").values()].count("Barbara") == 1


# ---------------------------------------------------------------- 4. 404 to DELETE


def test_a_404_to_a_delete_of_a_row_just_read_is_not_a_deletion(
    wapi: WriteAPI, config: Path
) -> None:
    with connect(config) as conn:
        # ServiceNow: the ACL hides the shared row from deletion with a 404
        cur = conn.cursor()
        with pytest.raises(RemoteError) as info:
            cur.execute("DELETE FROM sn_inc WHERE sys_id IN ('a1', 's1')")
        err = info.value
        assert err.status_code == 404
        gone = {"a1", "s1"} - set(wapi.visible(SN, "alice"))
        assert gone <= {"a1"}  # a1 is deleted if SQLite sent it first (rowid order)
        assert err.applied == tuple(f"sys_id={k}" for k in gone)  # type: ignore[attr-defined]
        assert err.unknown == ()  # type: ignore[attr-defined]
        assert "DELETE of sys_id=s1 failed" in str(err)
        assert "this statement did not delete it" in str(err)
        assert cur.rowcount == len(gone)
        # GitHub: no DELETE route for issues
        with pytest.raises(RemoteError) as info:
            conn.execute("DELETE FROM gh_issues WHERE id = -1")
        assert info.value.status_code == 404
        assert conn.execute("SELECT count(*) FROM gh_issues WHERE id = -1").fetchone() == (1,)


def test_a_404_on_the_retry_of_a_delete_is_already_gone(wapi: WriteAPI, config: Path) -> None:
    wapi.faults.append(WriteFault("commit_drop", "DELETE", f"{SN}/a2"))
    with connect(config) as conn:
        assert conn.execute("DELETE FROM sn_inc WHERE sys_id = 'a2'").rowcount == 1
        assert conn.execute("SELECT count(*) FROM sn_inc WHERE sys_id = 'a2'").fetchone() == (0,)
    assert [s for _, m, _, s in wapi.log if m == "DELETE"] == [None, 404]


# ---------------------------------------------------------------- 5. rowids


def test_integer_keys_are_their_rowids_and_never_collide(wapi: WriteAPI, config: Path) -> None:
    snow = [SNOWFLAKE + 2**46, SNOWFLAKE + 2 * 2**46]
    with connect(config) as conn:
        cur = conn.execute("UPDATE gh_issues SET title = 'both' WHERE id IN (?, ?)", snow)
        assert cur.rowcount == 2
        cur = conn.execute("UPDATE gh_issues SET state = 'closed' WHERE id < 0")
        assert cur.rowcount == 2
        wapi.github_delete = True
        cur = conn.execute("DELETE FROM gh_issues WHERE id IN (-1, -2)")
        assert cur.rowcount == 2
        got = conn.execute("SELECT id, title FROM gh_issues ORDER BY id").fetchall()
        assert got == [(snow[0], "both"), (snow[1], "both")]
        got = conn.execute("SELECT rowid, id FROM gh_issues ORDER BY id").fetchall()
        assert got == [(snow[0], snow[0]), (snow[1], snow[1])]
    rows = wapi.visible(GH, "alice")
    assert sorted(rows) == snow and {r["title"] for r in rows.values()} == {"both"}


def test_rows_that_share_a_rowid_are_told_apart_by_their_key(wapi: WriteAPI, config: Path) -> None:
    """An INTEGER key column holding a REAL (2.5) gets a hashed rowid; an integer key equal to
    that hash shares it. UPDATE tells the rows apart by key; a DELETE, which SQLite hands over
    only the rowid (once), refuses rather than guess."""
    shared = key_rowid(2.5)
    wapi.github_delete = True
    wapi.add(GH, 2.5, "alice", title="real", state="open")
    wapi.add(GH, shared, "alice", title="int", state="open")
    with connect(config) as conn:
        got = conn.execute(
            "SELECT rowid, id FROM gh_issues WHERE id IN (2.5, ?) ORDER BY title", (shared,)
        ).fetchall()
        assert got == [(shared, shared), (shared, 2.5)]
        cur = conn.execute("UPDATE gh_issues SET title = 'both' WHERE id IN (2.5, ?)", (shared,))
        assert cur.rowcount == 2
        rows = wapi.visible(GH, "alice")
        assert rows[2.5]["title"] == rows[shared]["title"] == "both"
        with pytest.raises(NotSupportedError) as info:
            conn.execute("DELETE FROM gh_issues WHERE id IN (2.5, ?)", (shared,))
        assert "share one rowid" in str(info.value) and "nothing was sent" in str(info.value)
        assert f"id={shared}" in str(info.value) and "id=2.5" in str(info.value)
        assert 2.5 in wapi.visible(GH, "alice") and shared in wapi.visible(GH, "alice")
        # one at a time each DELETE matches one row of the rowid
        assert conn.execute("DELETE FROM gh_issues WHERE id = 2.5").rowcount == 1
        assert conn.execute("DELETE FROM gh_issues WHERE id = ?", (shared,)).rowcount == 1
    assert 2.5 not in wapi.visible(GH, "alice") and shared not in wapi.visible(GH, "alice")


def test_an_integer_key_from_a_location_header_is_the_rowid(
    wapi: WriteAPI, write_config: Callable[..., Path]
) -> None:
    """The answer holds no row (body_path points nowhere): the key comes from Location."""
    text = tables_toml(wapi.base_url).replace(
        "[tables.gh_issues.write]\n", '[tables.gh_issues.write]\nbody_path = "nothing"\n'
    )
    with connect(write_config(text)) as conn:
        cur = conn.execute("INSERT INTO gh_issues (title) VALUES ('located')")
        got = conn.execute("SELECT title FROM gh_issues WHERE rowid = ?", (cur.lastrowid,))
        assert got.fetchall() == [("located",)]


def test_a_row_without_a_key_is_not_written(wapi: WriteAPI, config: Path) -> None:
    wapi.add(ST, None, "alice", name="keyless")
    with connect(config) as conn:
        for sql in (
            "UPDATE st_customers SET name = 'x' WHERE name = 'keyless'",
            "DELETE FROM st_customers WHERE name = 'keyless'",
        ):
            with pytest.raises(NotSupportedError, match="whose key id is NULL"):
                conn.execute(sql)
    assert sent(wapi) == []


# ---------------------------------------------------------------- 6. INSERT ... RETURNING


def test_insert_returning_is_refused_before_sending(wapi: WriteAPI, config: Path) -> None:
    with connect(config) as conn:
        with pytest.raises(NotSupportedError, match=r"INSERT \.\.\. RETURNING is not supported"):
            conn.execute("INSERT INTO sn_inc (short_description) VALUES ('r') RETURNING sys_id")
        # a literal that says RETURNING is not the clause
        conn.execute("INSERT INTO sn_inc (short_description) VALUES ('RETURNING')")
    assert [r["short_description"] for r in wapi.visible(SN, "alice").values()].count("r") == 0
    assert sent(wapi) == [("POST", SN)]


# ---------------------------------------------------------------- 7. explicit transactions


@pytest.mark.parametrize("begin", ["BEGIN", "SAVEPOINT s1"])
def test_a_remote_write_inside_a_transaction_is_refused_unless_allowed(
    wapi: WriteAPI, config: Path, write_config: Callable[..., Path], begin: str
) -> None:
    with connect(config) as conn:
        conn.execute(begin)
        with pytest.raises(NotSupportedError) as info:
            conn.execute("UPDATE sn_inc SET priority = 7 WHERE sys_id = 'a1'")
        msg = str(info.value)
        assert "table sn_inc: UPDATE on a remote table inside an open transaction" in msg
        assert "ROLLBACK could not undo it" in msg and "writes_in_transaction" in msg
        conn.execute("ROLLBACK")
        assert sent(wapi) == []
        # outside the transaction the same statement runs
        assert conn.execute("UPDATE sn_inc SET priority = 7 WHERE sys_id = 'a1'").rowcount == 1
    # the user's choice: a connection switch, or the config
    allowed = write_config(
        tables_toml(wapi.base_url, settings="[settings]\nwrites_in_transaction = true\n")
    )
    for conn in (connect(config, writes_in_transaction=True), connect(allowed)):
        with conn:
            conn.execute(begin)
            assert conn.execute("UPDATE sn_inc SET priority = 8 WHERE sys_id = 'a1'").rowcount == 1
            conn.execute("ROLLBACK")
    assert wapi.visible(SN, "alice")["a1"]["priority"] == 8  # ROLLBACK undid nothing remote


# ---------------------------------------------------------------- 8. other tables over the resource


def test_a_write_drops_the_cached_rows_of_other_tables_over_the_same_resource(
    wapi: WriteAPI, config: Path
) -> None:
    with connect(config) as conn:
        assert conn.execute("SELECT priority FROM sn_active WHERE sys_id = 'a1'").fetchall() == [
            (3,)
        ]
        conn.execute("UPDATE sn_inc SET priority = 4 WHERE sys_id = 'a1'")
        assert conn.execute("SELECT priority FROM sn_active WHERE sys_id = 'a1'").fetchall() == [
            (4,)
        ]


# ---------------------------------------------------------------- a value the API did not take

NOT_TAKEN_TOML = """
[providers.demo]
token_env = "API_TOKEN"

[tables.sn_sys]
provider = "demo"
url = "{base}/api/now/table/incident"
rows = "result"
pagination = "link"
page_size_param = "sysparm_limit"
max_page_size = 2
key = "sys_id"
[tables.sn_sys.write]
update = true
[tables.sn_sys.columns]
sys_id = { type = "TEXT", writable = false }
state = "TEXT"
sys_class_name = "TEXT"

[tables.gh_labels]
provider = "demo"
url = "{base}/repos/acme/widgets/issues"
rows = ""
pagination = "link"
page_size_param = "per_page"
max_page_size = 2
key = "id"
[tables.gh_labels.write]
update = true
[tables.gh_labels.columns]
id = { type = "INTEGER", writable = false }
title = "TEXT"
labels = "JSON"
"""


def test_an_update_the_api_ignored_is_an_error_naming_row_and_column(
    wapi: WriteAPI, write_config: Callable[..., Path]
) -> None:
    """ServiceNow answers 200 to a PATCH of a read-only field and keeps its value: rowcount 1
    alone would say the row holds the new value. The error names the row and the column; the
    row counts as applied (its other columns changed), later rows are not attempted."""
    for key in ("a1", "a2"):
        wapi.rows[SN][key]["sys_class_name"] = "incident"
    config = write_config(NOT_TAKEN_TOML, base=wapi.base_url)
    with connect(config) as conn:
        cur = conn.cursor()
        with pytest.raises(remotetables.ValueNotTaken) as info:
            cur.execute(
                "UPDATE sn_sys SET state = 'closed', sys_class_name = 'problem' "
                "WHERE sys_id IN ('a1', 'a2')"
            )
        err = info.value
        assert (err.table, err.column, err.row) == ("sn_sys", "sys_class_name", "sys_id=a1")
        assert err.applied == ("sys_id=a1",)  # type: ignore[attr-defined]
        msg = str(err)
        assert "PATCH of sys_id=a1 was applied, but the API did not take column sys_class_name" in (
            msg
        )
        assert "holds 'incident', not the 'problem' sent" in msg
        assert "later rows were not attempted" in msg
        assert isinstance(err, remotetables.DataError)
        assert cur.rowcount == 1
        assert sent(wapi) == [("PATCH", f"{SN}/a1")]
        got = conn.execute("SELECT sys_id, state, sys_class_name FROM sn_sys ORDER BY 1")
        assert got.fetchall()[:2] == [("a1", "closed", "incident"), ("a2", "open", "incident")]
        # taken values raise nothing; ServiceNow holds a NULL as "" (no false alarm)
        sql = "UPDATE sn_sys SET state = ? WHERE sys_id = 'a2'"
        assert cur.execute(sql, ("closed",)).rowcount == 1
        assert cur.execute(sql, (None,)).rowcount == 1
        assert wapi.rows[SN]["a2"]["state"] is None


def test_labels_dropped_without_push_access_are_reported(
    wapi: WriteAPI, write_config: Callable[..., Path]
) -> None:
    """GitHub: "Without push access to the repository, label changes are silently dropped"."""
    wapi.rows[GH][-1]["labels"] = []
    config = write_config(NOT_TAKEN_TOML, base=wapi.base_url)
    update = "UPDATE gh_labels SET labels = ? WHERE id = -1"
    with connect(config) as conn:
        with pytest.raises(
            remotetables.ValueNotTaken, match=r"holds '\[\]', not the '\[\"bug\"\]'"
        ):
            conn.execute(update, ('["bug"]',))
        wapi.pushers.add("alice")
        # taken: no error (JSON compared parsed, so the API's spacing or key order is no change)
        assert conn.execute(update, ('[ "bug" ]',)).rowcount == 1
        assert wapi.rows[GH][-1]["labels"] == ["bug"]
        got = conn.execute("SELECT labels FROM gh_labels WHERE id = -1").fetchall()
        assert got == [('["bug"]',)]
