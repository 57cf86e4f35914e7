"""Where the time of a cold `SELECT *` goes, next to the plain-client floor.

    python benchmarks/breakdown.py [--rows 100000]

Times each stage alone over the same 1,000-row pages of the loopback API (a separate process):
the HTTP fetch, stdlib json and orjson decoding, our HttpClient (fetch + orjson), building row
tuples, and APSW walking prebuilt tuples through a minimal virtual table (SELECT * and count(*)).
The floor of bench_scan.py is "httpx2 fetch + stdlib json"; a cold remotetables scan costs at
least "HttpClient + build + APSW SELECT *". Medians of 5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import apsw
import httpx2
import orjson

from remotetables.config import parse_config
from remotetables.decoders import page_decoder
from remotetables.http.client import HttpClient, RequestContext, RetryPolicy
from remotetables.rows import RowBuilder
from remotetables.scan import _build_passing, apply_checks


def timed(fn: Callable[[], Any], reps: int = 5) -> float:
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remotetables.demo.api.server",
            "--rows",
            str(args.rows),
            "--port",
            "0",
            "--warm",
            "1000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base = server.stdout.readline().split()[1]
        urls = [
            f"{base}/styles/offset/bulk?limit=1000&offset={o}" for o in range(0, args.rows, 1000)
        ]
        client = httpx2.Client()
        bodies = [client.get(u).content for u in urls]
        pages = [orjson.loads(b)["results"] for b in bodies]
        first = pages[0][0]
        types = {str: "TEXT", int: "INTEGER", float: "REAL", bool: "BOOLEAN"}
        builder = RowBuilder("bulk", [(k, types[type(v)], (k,), False) for k, v in first.items()])
        rows = [r for p in pages for r in builder.build_page(p, 0)]
        db = vtable_over(rows, list(first))
        # what SQLite receives for WHERE state = 'open' when the filter is applied in Filter
        state = list(first).index("state")
        matching = [r for r in rows if r[state] == "open"]
        db_where = vtable_over(matching, list(first))
        checks: list[tuple[int, list[Any]]] = [(state, ["open"])]
        prefilter = RowBuilder(
            "bulk", [(k, types[type(v)], (k,), False) for k, v in first.items()], [state]
        )
        hc = HttpClient()
        ctx, policy = RequestContext(table="bulk"), RetryPolicy()
        # the fast path (remotetables.decoders): msgspec straight into tuples of the columns read
        cfg = parse_config(
            {
                "tables": {
                    "bulk": {
                        "url": f"{base}/styles/offset/bulk",
                        "rows": "results",
                        "pagination": {"style": "offset", "total_path": "total"},
                        "columns": {k: types[type(v)] for k, v in first.items()},
                    }
                }
            }
        )
        spec = cfg.table("bulk")
        decode_all = page_decoder(spec, None)
        decode_none = page_decoder(spec, [])
        assert decode_all is not None and decode_none is not None
        stages = {
            "httpx2 fetch only": timed(lambda: [client.get(u).content for u in urls]),
            "stdlib json decode": timed(lambda: [json.loads(b) for b in bodies]),
            "orjson decode": timed(lambda: [orjson.loads(b) for b in bodies]),
            "HttpClient.request_json (fetch + orjson)": timed(
                lambda: [hc.request_json("GET", u, ctx=ctx, policy=policy) for u in urls]
            ),
            "fast path: msgspec into tuples, all columns": timed(
                lambda: [decode_all(b) for b in bodies]
            ),
            "fast path: msgspec, no column (count(*))": timed(
                lambda: [decode_none(b) for b in bodies]
            ),
            "RowBuilder: tuples from decoded pages": timed(
                lambda: [builder.build_page(p, 0) for p in pages]
            ),
            "APSW SELECT * over prebuilt tuples": timed(
                lambda: sum(1 for _ in db.execute("SELECT * FROM v"))
            ),
            "APSW count(*) over prebuilt tuples": timed(
                lambda: list(db.execute("SELECT count(*) FROM v"))
            ),
            f"APSW SELECT * over the {len(matching):,} 'open' tuples": timed(
                lambda: sum(1 for _ in db_where.execute("SELECT * FROM v"))
            ),
            # WHERE state = 'open' applied in Filter: whole rows then the check, or the checked
            # column first and whole rows only for the items that pass (what scan.py does)
            "WHERE in Filter: build whole rows, then check": timed(
                lambda: [apply_checks(builder.build_page(p, 0), checks) for p in pages]
            ),
            "WHERE in Filter: check column first (scan.py)": timed(
                lambda: [_build_passing(builder, prefilter, p, 0, checks) for p in pages]
            ),
        }
        floor = stages["httpx2 fetch only"] + stages["stdlib json decode"]
        least = (
            stages["HttpClient.request_json (fetch + orjson)"]
            + stages["RowBuilder: tuples from decoded pages"]
            + stages["APSW SELECT * over prebuilt tuples"]
        )
        print(f"{args.rows:,} rows x {len(first)} fields, {len(urls)} pages; medians of 5 (ms)")
        for name, ms in stages.items():
            print(f"  {name:<44} {ms:8.1f}")
        print(f"  {'floor = fetch + stdlib json':<44} {floor:8.1f}")
        print(f"  {'least cold SELECT * = HttpClient + build + APSW':<44} {least:8.1f}")
        print(f"  best possible SELECT * ratio to the floor: {floor / least:.2f}x")
        _lower_bounds(stages, floor, len(urls))
        client.close()
        hc.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def _lower_bounds(stages: dict[str, float], floor: float, pages: int) -> None:
    """Each missed target against a lower bound of its time, from the stages above.

    With strictly lazy pages (page N+1 is requested only after SQLite consumed page N) nothing
    overlaps: a scan costs at least the sum of the stages it cannot skip. Every bound leaves
    out work that a real scan also does, so the real figure is worse than the bound.
    """
    fetch = stages["httpx2 fetch only"]
    orjson_ms = stages["orjson decode"]
    build = stages["RowBuilder: tuples from decoded pages"]
    where_key = next(k for k in stages if k.endswith("'open' tuples"))
    bounds = [
        (
            "SELECT *  >= 0.9x (fetch + APSW, no decoding at all)",
            fetch + stages["APSW SELECT * over prebuilt tuples"],
            0.9,
        ),
        (
            "WHERE     >= 1.0x (fetch + orjson + APSW on matching rows, no building)",
            fetch + orjson_ms + stages[where_key],
            1.0,
        ),
        (
            "count(*)  >= 1.0x with the cache on (the cache keeps built rows)",
            fetch + orjson_ms + build + stages["APSW count(*) over prebuilt tuples"],
            1.0,
        ),
    ]
    print(f"  lower bounds at 0 ms, strictly lazy pages; floor {floor:.1f} ms:")
    for name, bound, target in bounds:
        verdict = "reachable" if floor / bound >= target else "out of reach"
        print(f"    {name:<74} {bound:7.1f} ms -> at most {floor / bound:.2f}x: {verdict}")
    per_page = {name: (bound - floor) / pages for name, bound, _ in bounds}
    worst = ", ".join(f"{name.split()[0]} {ms:+.2f}" for name, ms in per_page.items())
    print(
        "  at 20 ms each page also waits 20 ms, on both sides; pages cannot overlap, so a ratio "
        f"below 1 at 0 ms stays below 1 (ms of CPU per page over the floor's: {worst})"
    )


def vtable_over(rows: list[tuple[Any, ...]], names: list[str]) -> apsw.Connection:
    """The thinnest possible APSW virtual table over ``rows``: APSW's own per-call cost."""

    class Cursor:
        __slots__ = ("it", "row")

        def Filter(self, *args: Any) -> None:
            self.it = iter(rows)
            self.row: Any = next(self.it, None)

        def Eof(self) -> bool:
            return self.row is None

        def Next(self) -> None:
            self.row = next(self.it, None)

        def Column(self, n: int) -> Any:
            return self.row[n]

        def Close(self) -> None:
            pass

    class Table:
        def BestIndexObject(self, ii: Any) -> bool:
            return True

        def Open(self) -> Cursor:
            return Cursor()

        def Disconnect(self) -> None:
            pass

    class Module:
        def Create(self, *args: Any) -> tuple[str, Table]:
            return f"CREATE TABLE x({', '.join(names)})", Table()

        Connect = Create

    db = apsw.Connection(":memory:")
    db.create_module("m", Module(), use_bestindex_object=True)  # type: ignore[arg-type]
    db.execute("CREATE VIRTUAL TABLE v USING m()")
    return db


if __name__ == "__main__":
    main()
