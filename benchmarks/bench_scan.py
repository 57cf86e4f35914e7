"""Scan throughput of remotetables against a plain HTTP client, in one run.

    python benchmarks/bench_scan.py [--quick] [--reps N] [--json PATH]

The loopback API (``remotetables.demo.api.server``, dataset ``bulk``: 8 flat fields, 1,000-row pages)
runs in separate processes, one per added latency, so it never shares our GIL. Every approach
is timed the same way (``perf_counter`` around the whole statement, rows consumed, GC run
before each timing), repetitions are interleaved (the order rotates every repetition) and the
table shows medians. "x floor" is median(floor) / median(approach) measured in the same block:
the floor is a plain ``httpx2.Client`` that follows the ``Link: rel="next"`` chain in sequence
and decodes every page with the stdlib ``json`` module (no filtering, no counting: it is the
cheapest thing that reads every row, so ratios against it are conservative).

Peak RSS is measured in fresh subprocesses (``--rss-child``): baseline VmRSS after imports,
connect and a one-row warm-up; the peak (VmHWM, reset just before the statement) during
``SELECT count(*)``; and VmRSS after it (what a cache keeps).

Results also go to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import httpx2

import remotetables

sys.path.insert(0, str(Path(__file__).resolve().parent))
from breakdown import vtable_over

HERE = Path(__file__).resolve().parent
PAGE = 1000
COLUMNS = """
[tables.{name}.columns]
sys_id = "TEXT"
number = "TEXT"
short_description = "TEXT"
state = "TEXT"
priority = "INTEGER"
opened_at = "TEXT"
active = "BOOLEAN"
score = "REAL"
"""
LINK = 'url = "{base}/styles/link/bulk"\nrows = ""\npagination = "link"'
OFFSET = (
    'url = "{base}/styles/offset/bulk"\nrows = "results"\n'
    'pagination = {{ style = "offset", offset_param = "offset", total_path = "total" }}'
)
Q_ALL = "SELECT * FROM {t}"
Q_COUNT = "SELECT count(*) FROM {t}"
# state has no API parameter: Filter checks it (SQLite does not see the rows it drops)
Q_WHERE = "SELECT * FROM {t} WHERE state = 'open'"
Q_WHERE_SQL = "SELECT * FROM {t} WHERE state LIKE 'open'"  # the same rows, filtered by SQLite
PAGE_STYLE = (
    'url = "{base}/styles/page/bulk"\nrows = "rows"\n'
    'pagination = {{ style = "page", page_param = "page", total_pages_path = "total_pages" }}'
)
Q_LIMIT = "SELECT * FROM {t} LIMIT 10"


# ------------------------------------------------------------------ servers and configs


def api_args(rows: int, latency: float) -> list[str]:
    return ["--rows", str(rows), "--port", "0", "--latency", str(latency)]


@contextmanager
def api_servers(specs: dict[str, tuple[int, float]]) -> Iterator[dict[str, str]]:
    """Start one API process per (rows, latency); yield name -> base URL."""
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, (rows, latency) in specs.items():
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "remotetables.demo.api.server", *api_args(rows, latency)],
                stdout=subprocess.PIPE,
                text=True,
            )
        bases = {}
        for name, proc in procs.items():
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("READY "):
                raise RuntimeError(f"API server {name} did not start: {line!r}")
            bases[name] = line.split()[1]
        yield bases
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=10)


def table_toml(name: str, style: str, base: str, *, cache_ttl: float, concurrency: int = 4) -> str:
    head = {"link": LINK, "offset": OFFSET, "page": PAGE_STYLE}[style].format(base=base)
    size_param = "per_page" if style == "page" else "limit"
    return (
        f'[tables.{name}]\n{head}\npage_size_param = "{size_param}"\nmax_page_size = {PAGE}\n'
        f"cache_ttl = {cache_ttl}\nconcurrency = {concurrency}\nmax_pages = 100000\n"
        + COLUMNS.format(name=name)
    )


def write_config(tmp: Path, tables: list[str], *, cache_max_bytes: int | None = None) -> Path:
    text = ""
    if cache_max_bytes is not None:
        text += f"[settings]\ncache_max_bytes = {cache_max_bytes}\n\n"
    text += "\n".join(tables)
    path = tmp / f"bench-{len(list(tmp.iterdir()))}.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ the approaches


def floor_scan(client: httpx2.Client, base: str, *, decode: bool = True) -> int:
    """Plain client: follow the Link chain, stdlib-json-decode every page. Returns rows.
    ``decode=False``: the requests alone (the network part of any scan); returns pages."""
    url: str | None = f"{base}/styles/link/bulk?limit={PAGE}"
    n = 0
    while url:
        resp = client.get(url)
        resp.raise_for_status()
        n += len(json.loads(resp.content)) if decode else 1
        url = resp.links.get("next", {}).get("url")
    return n


def floor_first(client: httpx2.Client, base: str) -> int:
    """Plain client's LIMIT 10: the first 1,000-row page, decoded, cut to 10 rows."""
    resp = client.get(f"{base}/styles/link/bulk?limit={PAGE}")
    return len(json.loads(resp.content)[:10])


def apsw_consume(db: apsw.Connection, sql: str) -> int:
    n = 0
    for _ in db.execute(sql):
        n += 1
    return n


def dbapi_consume(conn: Any, sql: str) -> int:
    return len(conn.execute(sql).fetchall())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def first_row_time(db: apsw.Connection, sql: str) -> tuple[float, float]:
    """(time to first row, time to the end) of ``sql``."""
    gc.collect()
    t0 = time.perf_counter()
    cur = db.execute(sql)
    next(cur)
    t1 = time.perf_counter()
    for _ in cur:
        pass
    return t1 - t0, time.perf_counter() - t0


class Block:
    """Interleaved repetitions of named callables; medians afterwards."""

    def __init__(self, reps: int) -> None:
        self.reps = reps
        self.cases: dict[str, Callable[[], float]] = {}
        self.times: dict[str, list[float]] = {}
        self.setup: dict[str, Callable[[], None]] = {}

    def add(
        self, name: str, fn: Callable[[], float], setup: Callable[[], None] | None = None
    ) -> None:
        self.cases[name] = fn
        self.times[name] = []
        if setup is not None:
            self.setup[name] = setup

    def run(self) -> dict[str, float]:
        names = list(self.cases)
        for rep in range(self.reps):
            k = rep % len(names)
            for name in names[k:] + names[:k]:
                if name in self.setup:
                    self.setup[name]()
                self.times[name].append(self.cases[name]())
        return {name: statistics.median(ts) for name, ts in self.times.items()}


def elapsed(fn: Callable[[], Any], expect: int | None = None) -> Callable[[], float]:
    def run() -> float:
        dt, out = timed(fn)
        if expect is not None and out != expect:
            raise AssertionError(f"expected {expect} rows, got {out}")
        return dt

    return run


# ------------------------------------------------------------------ blocks


def scan_block(
    base: str, tmp: Path, rows: int, reps: int, *, label: str, with_offset: bool
) -> dict[str, Any]:
    """Floor vs remotetables (cache off; cold cache; DB-API; offset+parallel) on one server."""
    tables = [
        table_toml("bulk", "link", base, cache_ttl=0),
        table_toml("bulk_cold", "link", base, cache_ttl=600),
    ]
    if with_offset:
        tables.append(table_toml("bulk_par", "offset", base, cache_ttl=0, concurrency=4))
        tables.append(table_toml("bulk_page", "page", base, cache_ttl=0, concurrency=4))
    cfg = write_config(tmp, tables)
    conn = remotetables.connect(":memory:", config=cfg)
    db = conn.apsw
    # the same tables with the fast path forced off (the general path, strictly lazy pages)
    off = remotetables.connect(":memory:", config=cfg, environ={"REMOTETABLES_FAST_PATH": "off"})
    client = httpx2.Client(trust_env=False)
    n_open = apsw_consume(db, Q_WHERE.format(t="bulk"))  # warms the server's page cache too
    assert floor_scan(client, base) == rows
    if with_offset:
        apsw_consume(db, Q_COUNT.format(t="bulk_par"))
        apsw_consume(db, Q_COUNT.format(t="bulk_page"))
    clear = conn.runtime.cache.clear

    b = Block(reps)
    b.add("floor", elapsed(lambda: floor_scan(client, base), rows))
    b.add("all", elapsed(lambda: apsw_consume(db, Q_ALL.format(t="bulk")), rows))
    b.add("count", elapsed(lambda: db.execute(Q_COUNT.format(t="bulk")).fetchall()[0][0], rows))
    b.add("where", elapsed(lambda: apsw_consume(db, Q_WHERE.format(t="bulk")), n_open))
    b.add("where_sql", elapsed(lambda: apsw_consume(db, Q_WHERE_SQL.format(t="bulk")), n_open))
    odb = off.apsw
    b.add("all_off", elapsed(lambda: apsw_consume(odb, Q_ALL.format(t="bulk")), rows))
    b.add(
        "count_off", elapsed(lambda: odb.execute(Q_COUNT.format(t="bulk")).fetchall()[0][0], rows)
    )
    b.add("where_off", elapsed(lambda: apsw_consume(odb, Q_WHERE.format(t="bulk")), n_open))
    b.add("all_dbapi", elapsed(lambda: dbapi_consume(conn, Q_ALL.format(t="bulk")), rows))
    b.add("all_cold", elapsed(lambda: apsw_consume(db, Q_ALL.format(t="bulk_cold")), rows), clear)
    b.add(
        "count_cold",
        elapsed(lambda: db.execute(Q_COUNT.format(t="bulk_cold")).fetchall()[0][0], rows),
        clear,
    )
    names = [c.split(" = ")[0] for c in COLUMNS.strip().splitlines()[1:]]
    if not with_offset:
        # bounds: APSW's own per-call cost over prebuilt tuples, and the requests alone. A scan
        # that fetches its pages in order and hands every value to SQLite through APSW cannot
        # beat fetch + APSW, whatever its decoding costs
        prebuilt = list(db.execute(Q_ALL.format(t="bulk")))
        state = names.index("state")
        bare = vtable_over(prebuilt, names)
        bare_open = vtable_over([r for r in prebuilt if r[state] == "open"], names)
        b.add("fetch", elapsed(lambda: floor_scan(client, base, decode=False), rows // PAGE))
        b.add("apsw_all", elapsed(lambda: apsw_consume(bare, "SELECT * FROM v"), rows))
        b.add(
            "apsw_count",
            elapsed(lambda: bare.execute("SELECT count(*) FROM v").fetchall()[0][0], rows),
        )
        b.add("apsw_where", elapsed(lambda: apsw_consume(bare_open, "SELECT * FROM v"), n_open))
    if with_offset:
        b.add("all_par", elapsed(lambda: apsw_consume(db, Q_ALL.format(t="bulk_par")), rows))
        b.add(
            "count_par",
            elapsed(lambda: db.execute(Q_COUNT.format(t="bulk_par")).fetchall()[0][0], rows),
        )
        b.add("all_page", elapsed(lambda: apsw_consume(db, Q_ALL.format(t="bulk_page")), rows))
    med = b.run()

    # LIMIT 10: time to first row and pages fetched, interleaved with the floor's first page
    lim = Block(max(reps, 7))
    ttfr: list[float] = []

    def limit_case() -> float:
        first, _total = first_row_time(db, Q_LIMIT.format(t="bulk"))
        ttfr.append(first)
        return _total

    lim.add("floor_limit", elapsed(lambda: floor_first(client, base), 10))
    lim.add("limit", limit_case)
    lmed = lim.run()
    apsw_consume(db, Q_LIMIT.format(t="bulk"))
    limit_stats = conn.last_stats
    apsw_consume(db, Q_ALL.format(t="bulk"))
    all_stats = conn.last_stats
    par_stats: dict[str, Any] = {}
    if with_offset:
        apsw_consume(db, Q_ALL.format(t="bulk_par"))
        par_stats = conn.last_stats
    client.close()
    conn.close()
    off.close()

    bounds: dict[str, float] = {}
    if "fetch" in med:
        for tag in ("all", "count", "where"):
            bounds[tag] = med["floor"] / (med["fetch"] + med[f"apsw_{tag}"])
    out: dict[str, Any] = {
        "label": label,
        "bound_x_floor": bounds,
        "rows": rows,
        "reps": reps,
        "median_s": med,
        "samples_s": b.times,
        "rows_per_s": {k: rows / v for k, v in med.items()},
        "x_floor": {k: med["floor"] / v for k, v in med.items()},
        "where_matches": n_open,
        "limit10": {
            "time_to_first_row_s": statistics.median(ttfr),
            "total_s": lmed["limit"],
            "floor_first_page_s": lmed["floor_limit"],
            "x_floor": lmed["floor_limit"] / statistics.median(ttfr),
            "pages": limit_stats.get("pages"),
            "requests": limit_stats.get("requests"),
        },
        "stats_select_all": all_stats,
        "stats_select_all_offset_parallel": par_stats,
    }
    return out


def warm_block(base: str, tmp: Path, rows: int, reps: int) -> dict[str, Any]:
    """Warm row cache vs the same rows in a native SQLite table of the same connection."""
    cfg = write_config(tmp, [table_toml("bulk_warm", "link", base, cache_ttl=3600)])
    conn = remotetables.connect(":memory:", config=cfg)
    db = conn.apsw
    db.execute("CREATE TABLE native AS SELECT * FROM bulk_warm")  # fills the cache too
    n_open = apsw_consume(db, Q_WHERE.format(t="native"))
    b = Block(reps)
    for q, tag, expect in (
        (Q_ALL, "all", rows),
        (Q_COUNT, "count", None),
        (Q_WHERE, "where", n_open),
        (Q_WHERE_SQL, "where_sql", n_open),
    ):
        for t in ("native", "bulk_warm"):
            sql = q.format(t=t)
            if tag == "count":
                b.add(f"{tag}_{t}", elapsed(lambda sql=sql: db.execute(sql).fetchall()[0][0], rows))
            else:
                b.add(f"{tag}_{t}", elapsed(lambda sql=sql: apsw_consume(db, sql), expect))
    names = [c.split(" = ")[0] for c in COLUMNS.strip().splitlines()[1:]]
    prebuilt = list(db.execute(Q_ALL.format(t="native")))
    state = names.index("state")
    bare = vtable_over(prebuilt, names)
    bare_open = vtable_over([r for r in prebuilt if r[state] == "open"], names)
    b.add("all_bare", elapsed(lambda: apsw_consume(bare, "SELECT * FROM v"), rows))
    b.add("where_bare", elapsed(lambda: apsw_consume(bare_open, "SELECT * FROM v"), n_open))
    med = b.run()
    apsw_consume(db, Q_ALL.format(t="bulk_warm"))
    stats = conn.last_stats
    conn.close()
    return {
        "rows": rows,
        "median_s": med,
        "x_native": {
            t: med[f"{t}_bulk_warm"] / med[f"{t}_native"]
            for t in ("all", "count", "where", "where_sql")
        },
        # the thinnest APSW virtual table over the same tuples (WHERE: the matching ones)
        "bare_x_native": {t: med[f"{t}_bare"] / med[f"{t}_native"] for t in ("all", "where")},
        "stats_select_all": stats,
    }


# ------------------------------------------------------------------ peak RSS (child processes)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def rss_child(spec: dict[str, Any]) -> dict[str, Any]:
    base, mode = spec["base"], spec["mode"]
    if mode == "floor":
        client = httpx2.Client(trust_env=False)
        client.get(f"{base}/styles/link/bulk?limit=1").raise_for_status()
        run: Callable[[], int] = lambda: floor_scan(client, base)  # noqa: E731
    else:
        tmp = Path(spec["tmp"])
        ttl = 0 if mode == "nocache" else 600
        cfg = write_config(
            tmp, [table_toml("bulk", "link", base, cache_ttl=ttl)],
            cache_max_bytes=spec.get("cache_max_bytes"),
        )  # fmt: skip
        conn = remotetables.connect(":memory:", config=cfg)
        apsw_consume(conn.apsw, Q_LIMIT.format(t="bulk"))
        run = lambda: conn.apsw.execute(Q_COUNT.format(t="bulk")).fetchall()[0][0]  # noqa: E731
    gc.collect()
    baseline = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    n = run()
    gc.collect()
    return {
        "mode": mode,
        "rows": n,
        "baseline_kb": baseline,
        "peak_kb": _status_kb("VmHWM"),
        "after_kb": _status_kb("VmRSS"),
        "hwm_reset": reset,
    }


def rss_block(
    bases: dict[int, str], tmp: Path, cache_max_bytes: int, *, quick: bool
) -> list[dict[str, Any]]:
    out = []
    for rows, base in bases.items():
        for mode, cmb in (("floor", None), ("nocache", None), ("cache", cache_max_bytes),
                          ("cache", 64 * 1024 * 1024)):  # fmt: skip
            if quick and cmb == 64 * 1024 * 1024:
                continue
            spec = {
                "base": base,
                "mode": mode,
                "rows": rows,
                "tmp": str(tmp),
                "cache_max_bytes": cmb,
            }
            proc = subprocess.run(
                [sys.executable, __file__, "--rss-child", json.dumps(spec)],
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["cache_max_bytes"] = cmb
            if res["rows"] != rows:
                raise AssertionError(f"RSS child read {res['rows']} rows, not {rows}")
            out.append(res)
    return out


# ------------------------------------------------------------------ report


def _k(rate: float) -> str:
    return f"{rate / 1000:,.0f}k"


def _mb(kb: int) -> str:
    return f"{kb / 1024:,.1f} MB"


def render(res: dict[str, Any]) -> str:
    lines: list[str] = []
    w = lines.append
    w(f"remotetables scan benchmark  ({res['meta']['when']}, {res['meta']['machine']}, "
      f"python {res['meta']['python']}, {res['meta']['cpus']} CPUs, load {res['meta']['load']}"
      f"{', QUICK' if res['meta']['quick'] else ''})")  # fmt: skip
    w(f"dataset bulk: 8 fields, {PAGE}-row pages; medians of {res['meta']['reps']} interleaved reps; "
      "x = ratio to the floor of the same block")  # fmt: skip
    for key in ("lat0", "lat20"):
        blk = res[key]
        x, r = blk["x_floor"], blk["rows_per_s"]
        w("")
        w(
            f"## {blk['label']}: {blk['rows']:,} rows (WHERE state='open' matches {blk['where_matches']:,})"
        )
        w(
            f"| {'approach':<44} | {'SELECT *':>15} | {'count(*)':>15} | {'WHERE (Filter)':>16} | {'WHERE (SQLite)':>16} |"
        )
        w(f"|{'-' * 46}|{'-' * 17}|{'-' * 17}|{'-' * 18}|{'-' * 18}|")  # fmt: skip

        def row(
            name: str,
            *keys: str | None,
            r: Any = r,
            x: Any = x,
        ) -> None:
            cells = [f"{_k(r[k])} ({x[k]:.2f})" if k else "-" for k in keys]
            w(f"| {name:<44} | {cells[0]:>15} | {cells[1]:>15} | {cells[2]:>16} | {cells[3]:>16} |")

        row("floor: httpx2 + stdlib json, Link chain", "floor", "floor", "floor", "floor")
        row("remotetables, cache off (apsw)", "all", "count", "where", "where_sql")
        row("  the same, fast path forced off", "all_off", "count_off", "where_off", None)
        row("remotetables, cache off (DB-API fetchall)", "all_dbapi", None, None, None)
        row("remotetables, cold cache (cache on, emptied)", "all_cold", "count_cold", None, None)
        if "all_par" in blk["median_s"]:
            row("remotetables, offset + parallel pages (4)", "all_par", "count_par", None, None)
            row("remotetables, page + parallel pages (4)", "all_page", None, None, None)
        bounds = blk.get("bound_x_floor") or {}
        if bounds:
            ms = blk["median_s"]
            w(f"bounds: the floor's requests alone {ms['fetch'] * 1e3:.1f} ms; the thinnest APSW "
              f"virtual table over prebuilt tuples: SELECT * {ms['apsw_all'] * 1e3:.1f} ms, count(*) "
              f"{ms['apsw_count'] * 1e3:.1f} ms, the {blk['where_matches']:,} 'open' rows "
              f"{ms['apsw_where'] * 1e3:.1f} ms. Requests + APSW, with decoding free, would be "
              f"x{bounds['all']:.2f} / x{bounds['count']:.2f} / x{bounds['where']:.2f} "
              "(SELECT * / count(*) / WHERE)")  # fmt: skip
        lim = blk["limit10"]
        w(f"LIMIT 10: first row {lim['time_to_first_row_s'] * 1e3:.2f} ms (statement "
          f"{lim['total_s'] * 1e3:.2f} ms), pages fetched {lim['pages']}, requests {lim['requests']}; "
          f"floor's first {PAGE}-row page {lim['floor_first_page_s'] * 1e3:.2f} ms "
          f"(x{lim['x_floor']:.2f})")  # fmt: skip
    warm = res["warm"]
    m = warm["median_s"]
    w("")
    w(f"## warm row cache vs native SQLite table, {warm['rows']:,} rows (ms; x native)")
    w(f"| {'query':<18} | {'native':>9} | {'warm cache':>10} | {'x native':>8} |")
    w(f"|{'-' * 20}|{'-' * 11}|{'-' * 12}|{'-' * 10}|")
    for t, name in (("all", "SELECT *"), ("count", "count(*)"), ("where", "WHERE (Filter)"),
                    ("where_sql", "WHERE (SQLite)")):  # fmt: skip
        w(f"| {name:<18} | {m[f'{t}_native'] * 1e3:>9.1f} | {m[f'{t}_bulk_warm'] * 1e3:>10.1f} | "
          f"{warm['x_native'][t]:>8.2f} |")  # fmt: skip
    bx = warm["bare_x_native"]
    w(f"the thinnest APSW virtual table over the same tuples: SELECT * {m['all_bare'] * 1e3:.1f} ms "
      f"(x{bx['all']:.2f} native), the matching rows {m['where_bare'] * 1e3:.1f} ms "
      f"(x{bx['where']:.2f}): APSW's own cost per value")  # fmt: skip
    w("")
    w(
        "## peak RSS, SELECT count(*), fresh process each (baseline = after imports + connect + warm-up)"
    )
    w(
        f"| {'rows':>7} | {'approach':<34} | {'baseline':>9} | {'peak':>9} | {'peak-base':>9} | {'after-base':>10} |"
    )
    w(f"|{'-' * 9}|{'-' * 36}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 12}|")
    for e in res["rss"]:
        if e["mode"] == "cache":
            name = f"remotetables, cache_max_bytes {e['cache_max_bytes'] // 2**20} MB"
        else:
            name = {
                "floor": "floor (pages decoded, dropped)",
                "nocache": "remotetables, cache_ttl = 0",
            }[e["mode"]]
        w(f"| {e['rows']:>7,} | {name:<34} | {_mb(e['baseline_kb']):>9} | {_mb(e['peak_kb']):>9} | "
          f"{_mb(e['peak_kb'] - e['baseline_kb']):>9} | {_mb(e['after_kb'] - e['baseline_kb']):>10} |")  # fmt: skip
    page_kb = res["page_kb"]
    w(f"one {PAGE}-row page decoded (orjson + row builder, tracemalloc): {_mb(page_kb)}")

    # issue 19's table: today's figure beside each target
    x0, x20 = res["lat0"]["x_floor"], res["lat20"]["x_floor"]
    xw = warm["x_native"]
    nc = {e["rows"]: e["peak_kb"] - e["baseline_kb"] for e in res["rss"] if e["mode"] == "nocache"}
    big = nc.get(max(nc), 0) if nc else 0
    fl = {e["rows"]: e["peak_kb"] - e["baseline_kb"] for e in res["rss"] if e["mode"] == "floor"}
    floor_big = fl.get(max(fl), 0) if fl else 0
    pages0 = [res[k]["limit10"]["pages"] for k in ("lat0", "lat20")]
    bd = res["lat0"].get("bound_x_floor") or {}
    bx = warm["bare_x_native"]

    def bound(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}x"

    # (figure, this run, target, met, the bound any APSW virtual table has on this machine)
    table: list[tuple[str, str, str, bool, str]] = [
        ("0 ms count(*)", f"{x0['count']:.2f}x", ">= 1.5x", x0["count"] >= 1.5,
         bound(bd.get("count"))),
        ("0 ms WHERE state = 'open' (checked in Filter)", f"{x0['where']:.2f}x", ">= 1.2x",
         x0["where"] >= 1.2, bound(bd.get("where"))),
        ("0 ms WHERE SQLite filters (state LIKE 'open')", f"{x0['where_sql']:.2f}x", ">= 1.0x",
         x0["where_sql"] >= 1.0, "-"),
        ("0 ms SELECT *", f"{x0['all']:.2f}x", ">= 0.75x", x0["all"] >= 0.75,
         bound(bd.get("all"))),
        ("20 ms SELECT *, Link chain", f"{x20['all']:.2f}x", ">= 1.0x", x20["all"] >= 1.0, "-"),
        ("20 ms count(*) and WHERE", f"{x20['count']:.2f}x / {x20['where']:.2f}x", ">= 1.05x",
         min(x20["count"], x20["where"]) >= 1.05, "-"),
        ("offset / page with a known total, 20 ms", f"{x20['all_par']:.2f}x / {x20['all_page']:.2f}x",
         ">= 3.0x", min(x20["all_par"], x20["all_page"]) >= 3.0, "-"),
        ("warm cache, SELECT * and WHERE vs native", f"{xw['all']:.2f}x / {xw['where']:.2f}x",
         "<= 2.5x", max(xw["all"], xw["where"]) <= 2.5, f"{bx['all']:.2f}x / {bx['where']:.2f}x"),
        ("LIMIT 10 (0 ms / 20 ms)", " / ".join(f"{p} page" for p in pages0), "1 page",
         all(p == 1 for p in pages0), "-"),
        (f"peak RSS, count(*) over {max(nc):,} rows, cache off" if nc else "peak RSS",
         f"+{_mb(big)}", f"<= 2 pages decoded ({_mb(2 * page_kb)})", 0 <= big <= 2 * page_kb,
         f"+{_mb(floor_big)} (floor)"),
    ]  # fmt: skip
    w("")
    w("## issue 19's targets (ratios to the floor of the same run)")
    w("bound: the best any APSW virtual table could do here (0 ms: the requests alone + APSW over")
    w(
        "prebuilt tuples, decoding free; warm: the thinnest APSW table over the same tuples; RSS: the"
    )
    w("floor's own peak)")
    w(f"| {'figure':<46} | {'this run':>17} | {'target':<28} | result | {'bound':>17} |")
    w(f"|{'-' * 48}|{'-' * 19}|{'-' * 30}|--------|{'-' * 19}|")
    for name, today, target, ok, lim in table:
        w(
            f"| {name:<46} | {today:>17} | {target:<28} | {'MET' if ok else 'MISSED':<6} | {lim:>17} |"
        )
    res["targets"] = [
        {"figure": n, "this_run": t, "target": g, "met": ok, "bound": lim}
        for n, t, g, ok, lim in table
    ]
    return "\n".join(lines)


def page_decoded_kb(base: str) -> int:
    """KiB that one page's rows take once decoded the general way (orjson + row builder)."""
    import tracemalloc

    import orjson

    from remotetables.rows import RowBuilder

    with httpx2.Client(trust_env=False) as client:
        content = client.get(f"{base}/styles/link/bulk?limit={PAGE}").content
    cols = [line.split(" = ") for line in COLUMNS.strip().splitlines()[1:]]
    builder = RowBuilder("bulk", [(n, t.strip('"'), (n,), False) for n, t in cols])
    tracemalloc.start()
    rows = builder.build_page(orjson.loads(content), 0)
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(rows) == PAGE
    return size // 1024


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rows at 20 ms; under a minute")
    ap.add_argument(
        "--reps", type=int, default=None, help="repetitions (default 5; 3 with --quick)"
    )
    ap.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        print(json.dumps(rss_child(json.loads(args.rss_child))))
        return 0
    reps = args.reps or (3 if args.quick else 5)
    rows0 = 100_000
    rows20 = 20_000 if args.quick else 100_000
    cache_max = 16 * 1024 * 1024
    t_start = time.perf_counter()
    servers = {"lat0": (rows0, 0.0), "lat20": (rows20, 0.02), "small": (10_000, 0.0)}
    res: dict[str, Any] = {
        "meta": {
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "apsw": apsw.apswversion(),
            "sqlite": apsw.sqlite_lib_version(),
            "quick": args.quick,
            "reps": reps,
            "page_size": PAGE,
            "load": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        }
    }
    phases: dict[str, float] = {}
    res["meta"]["phase_seconds"] = phases
    with tempfile.TemporaryDirectory() as td, api_servers(servers) as bases:
        tmp = Path(td)
        phases["servers"] = time.perf_counter() - t_start
        for key, base, rows, label, offset in (
            ("lat0", bases["lat0"], rows0, "0 ms added latency", False),
            ("lat20", bases["lat20"], rows20, "20 ms added latency", True),
        ):
            t0 = time.perf_counter()
            res[key] = scan_block(base, tmp, rows, reps, label=label, with_offset=offset)
            phases[key] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res["warm"] = warm_block(bases["lat0"], tmp, rows0, reps)
        phases["warm"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res["rss"] = rss_block(
            {10_000: bases["small"], rows0: bases["lat0"]}, tmp, cache_max, quick=args.quick
        )
        res["page_kb"] = page_decoded_kb(bases["lat0"])
        phases["rss"] = time.perf_counter() - t0
    res["meta"]["seconds"] = round(time.perf_counter() - t_start, 1)
    text = render(res)
    print(text)
    took = ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
    print(f"\n(total {res['meta']['seconds']} s: {took}; JSON in {args.json})")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
