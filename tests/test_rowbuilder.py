"""RowBuilder's compiled fast and tolerant paths give exactly what per-value coercion gives."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remotetables.errors import CoercionError
from remotetables.rows import JsonPath, RowBuilder, coerce, get_path

COLUMNS: list[tuple[str, str, JsonPath, bool]] = [
    ("a", "TEXT", ("a",), False),
    ("b", "INTEGER", ("b",), True),
    ("c", "REAL", ("c",), True),
    ("d", "BOOLEAN", ("d",), True),
    ("e", "JSON", ("e",), False),
    ("f", "TEXT", ("n", "x"), True),
    ("g", "INTEGER", ("l", 0), True),
    ("h", "TEXT", ("a",), False),  # the same key twice
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.integers(2**63 - 2, 2**64 - 1),  # JSON decoders give these; SQLite stops at 2**63 - 1
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", " 7 ", "x", "1.5", "true", "no", "2e0", "99999999999999999999"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.just("x"), scalars))
item = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "n", "l", "z"]), values)
page = st.lists(st.one_of(item, item, item, st.integers(), st.lists(scalars)), max_size=6)


def reference(items: list[Any]) -> list[tuple[Any, ...]] | type[CoercionError]:
    """Row by row, value by value: NULL for a missing key, NULL on error where allowed."""
    out = []
    for it in items:
        if not isinstance(it, dict):
            return CoercionError
        row = []
        for _name, typ, path, null_on_error in COLUMNS:
            try:
                row.append(coerce(get_path(it, path), typ))
            except ValueError:
                if not null_on_error:
                    return CoercionError
                row.append(None)
        out.append(tuple(row))
    return out


@settings(max_examples=400, deadline=None)
@given(pages=st.lists(page, min_size=1, max_size=12))
def test_build_page_matches_per_value_coercion(pages: list[list[Any]]) -> None:
    builder = RowBuilder("t", COLUMNS)  # one builder across pages: the fast path is stateful
    for items in pages:
        expected = reference(items)
        if expected is CoercionError:
            with pytest.raises(CoercionError):
                builder.build_page(items, 0)
        else:
            got = builder.build_page(items, 0)
            assert got == expected
            assert [tuple(map(type, r)) for r in got] == [tuple(map(type, r)) for r in expected]


def test_missing_key_falls_back_then_fast_path_resumes() -> None:
    cols: list[tuple[str, str, JsonPath, bool]] = [
        ("a", "TEXT", ("a",), False),
        ("d", "BOOLEAN", ("d",), False),
    ]
    builder = RowBuilder("t", cols)
    full = [{"a": "x", "d": True}, {"a": "y", "d": False, "extra": 1}]
    assert builder.build_page(full, 0) == [("x", 1), ("y", 0)]
    assert builder.build_page([{"a": "z"}], 0) == [("z", None)]
    for _ in range(RowBuilder._FAST_PAUSE + 2):
        assert builder.build_page(full, 0) == [("x", 1), ("y", 0)]
    assert builder.build_page([{"d": 1}], 0) == [(None, 1)]


def test_error_names_row_and_column() -> None:
    builder = RowBuilder("t", [("n", "INTEGER", ("n",), False), ("s", "TEXT", ("s",), False)])
    with pytest.raises(CoercionError) as info:
        builder.build_page([{"n": 1, "s": "a"}, {"n": "abc", "s": "b"}], 10)
    assert info.value.column == "n"
    assert info.value.row == 12


def test_single_column_and_root_path() -> None:
    one = RowBuilder("t", [("n", "INTEGER", ("n",), False)])
    assert one.build_page([{"n": 1}, {"n": "2"}], 0) == [(1,), (2,)]
    root = RowBuilder("t", [("v", "JSON", (), False), ("n", "INTEGER", ("n",), True)])
    assert root.build_page([{"n": 3}], 0) == [('{"n":3}', 3)]


def test_integers_outside_sqlite_range_are_an_error_or_null() -> None:
    cols: list[tuple[str, str, JsonPath, bool]] = [
        ("id", "INTEGER", ("id",), False),
        ("n", "INTEGER", ("id",), True),
        ("t", "TEXT", ("id",), False),
    ]
    b = RowBuilder("t", cols)
    assert b.build_page([{"id": 2**63 - 1}], 0) == [(2**63 - 1, 2**63 - 1, str(2**63 - 1))]
    for big in (2**63, 12345678901234567890, "-9223372036854775809"):
        with pytest.raises(CoercionError) as info:
            b.build_page([{"id": 1}, {"id": big}], 0)
        assert (info.value.column, info.value.row) == ("id", 2)
        assert "64-bit integer range" in str(info.value)
        assert RowBuilder("t", cols[1:]).build_page([{"id": big}], 0) == [(None, str(big))]
