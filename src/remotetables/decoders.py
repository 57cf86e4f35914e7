"""The fast path: a page's JSON decoded by msgspec straight into the columns a statement reads.

:func:`page_decoder` compiles, per table and set of columns read (SQLite's colUsed), msgspec
struct types for the answer: the rows (at the table's ``rows`` path) as structs that hold only
the columns read, each typed so that msgspec accepts exactly the values the general row builder
(:class:`remotetables.rows.RowBuilder`) passes through unchanged, and the few body fields the
paginator reads (``next_path``, ``cursor_path``, ``total_path``, ...). Everything else in the
answer is skipped without building Python objects.

A page that does not validate (a value of another JSON type, an integer beyond 64 bits, a
missing rows list, an item that is not an object) makes the decoder return ``None``: that page
alone goes the general way (orjson and the row builder), which converts it or says what is
wrong. So the fast path never changes a result; it only skips work.

Not every table can use it: a JSON column, a path through an array index, or one column's path
inside another's make :func:`page_decoder` return ``None`` (the general path for every page).
``REMOTETABLES_FAST_PATH=off`` in the environment turns it off (the test suite runs both ways).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import orjson

from remotetables.config import TableSpec
from remotetables.rows import JsonPath

__all__ = ["FastPage", "PageDecoder", "fast_path_enabled", "page_decoder"]

_I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
# The JSON values the general builder keeps as they are (after orjson), per declared type.
# msgspec's strict mode refuses every other JSON type (a bool for an int, a str for a float...):
# such a page falls back. A JSON integer in a REAL column becomes a float either way.
_LEAF: dict[str, Any] = {
    "INTEGER": _I64 | None,
    "REAL": float | None,
    "TEXT": str | None,
    "BOOLEAN": bool | None,
    # kept as its bytes, then read and written by orjson exactly as the general path does
    "JSON": msgspec.Raw,
}
# A field name no API sends: the placeholder for a column the statement does not read, so the
# decoded struct is already the row tuple (msgspec never sees the key, the default is None).
_UNUSED = "remotetables: column {} is not read"


def fast_path_enabled(environ: Mapping[str, str]) -> bool:
    """False when ``REMOTETABLES_FAST_PATH`` is ``0``, ``off``, ``false`` or ``no``."""
    value = environ.get("REMOTETABLES_FAST_PATH", "").strip().lower()
    return value not in ("0", "off", "false", "no")


@dataclass
class FastPage:
    """One decoded page: its rows as tuples, and what the paginator reads of the body.

    ``whole``: the rows hold every column.
    """

    rows: list[tuple[Any, ...]]
    body: Any
    whole: bool = False


# A tree of JSON object keys: a leaf is a type annotation, an inner node another tree.
_Tree = dict[str, Any]


def _insert(tree: _Tree, path: JsonPath, leaf: Any) -> bool:
    """Add ``path`` -> ``leaf``; False if it collides with a path already there."""
    node = tree
    for step in path[:-1]:
        assert isinstance(step, str)
        sub = node.setdefault(step, {})
        if not isinstance(sub, dict):
            return False
        node = sub
    last = path[-1]
    assert isinstance(last, str)
    if last in node:
        return node[last] == leaf and not isinstance(leaf, dict)  # two columns, one field
    node[last] = leaf
    return True


_counter = iter(range(1 << 62))


def _struct(tree: _Tree, required: frozenset[str] = frozenset()) -> Any:
    """A msgspec struct type for ``tree`` (fields f0, f1 ... renamed to the JSON keys)."""
    fields: list[Any] = []
    rename: dict[str, str] = {}
    for n, (key, sub) in enumerate(tree.items()):
        name = f"f{n}"
        rename[name] = key
        typ = (_struct(sub) | None) if isinstance(sub, dict) else sub
        if key in required:
            fields.append((name, typ))
        else:
            fields.append((name, typ, None))
    # required fields first: msgspec wants those without a default before the others
    fields.sort(key=lambda f: len(f))
    return msgspec.defstruct(f"_Page{next(_counter)}", fields, rename=rename, gc=False)


class PageDecoder:
    """Decodes one answer's bytes into a :class:`FastPage`, or ``None`` if it does not fit."""

    def __init__(
        self,
        spec: TableSpec,
        used: Sequence[int],
        body_paths: list[JsonPath],
        distinct: bool = False,
    ) -> None:
        columns = spec.columns
        self._distinct = distinct
        self._whole = len(set(used)) == len(columns)
        used_set = frozenset(used)
        direct = len({columns[i].path for i in used_set}) == len(used_set) and all(
            len(columns[i].path) == 1 and columns[i].type in ("INTEGER", "REAL", "TEXT")
            for i in used_set
        )
        if direct:
            # one field per column, in column order: the struct's fields are the row tuple
            fields: list[Any] = []
            rename: dict[str, str] = {}
            for i, col in enumerate(columns):
                name = f"c{i}"
                if i in used_set:
                    rename[name] = str(col.path[0])
                    fields.append((name, _LEAF[col.type], None))
                else:
                    rename[name] = _UNUSED.format(i)
                    fields.append((name, None, None))
            row_type: Any = msgspec.defstruct(
                f"_Row{next(_counter)}", fields, rename=rename, gc=False
            )
            self._to_row: Callable[[Any], tuple[Any, ...]] | None = msgspec.structs.astuple
        else:
            tree: _Tree = {}
            for i in sorted(used_set):
                ok = _insert(tree, columns[i].path, _LEAF[columns[i].type])
                assert ok  # page_decoder checked the paths
            row_type = _struct(tree)
            self._to_row = self._compile(spec, used_set, tree)
        self._const: tuple[Any, ...] | None = (None,) * len(columns) if not used_set else None
        # a REAL column holds 0.0 for -0.0 (SQLite stores an integral REAL as an integer; the
        # general builder adds 0.0): msgspec keeps the sign of -0.0, -0e5, -1e-999 ...
        reals = [i for i in sorted(used_set) if columns[i].type == "REAL"]
        self._unsign: Callable[[list[Any]], list[Any]] | None = None
        if reals:
            test = " and ".join(f"r[{i}] != 0.0" for i in reals)  # None != 0.0; -0.0 == 0.0
            src = f"def unsign(rows):\n    return [r if {test} else _fix(r) for r in rows]\n"
            env: dict[str, Any] = {"_fix": functools.partial(_zero_reals, frozenset(reals))}
            exec(src, env)
            self._unsign = env["unsign"]
        self._rows_path = spec.rows_path
        self._body_paths = body_paths
        if not spec.rows_path:
            self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(list[row_type])
        else:
            envelope: _Tree = {}
            _insert(envelope, spec.rows_path, list[row_type])
            for path in body_paths:
                _insert(envelope, path, Any)
            self._decoder = msgspec.json.Decoder(_struct_required(envelope, spec.rows_path))

    @staticmethod
    def _compile(
        spec: TableSpec, used: frozenset[int], tree: _Tree
    ) -> Callable[[Any], tuple[Any, ...]]:
        """``build(struct) -> tuple`` for nested paths and BOOLEAN columns."""
        outs: list[str] = []
        for i, col in enumerate(spec.columns):
            if i not in used:
                outs.append("None")
                continue
            node = tree
            expr = "s"
            guards: list[str] = []
            for step in col.path:
                keys = list(node)
                expr = f"{expr}.f{keys.index(str(step))}"
                sub = node[str(step)]
                if isinstance(sub, dict):
                    guards.append(expr)
                    node = sub
            value = expr
            if col.type == "BOOLEAN":
                value = f"(1 if {expr} is True else 0 if {expr} is False else None)"
            elif col.type == "JSON":
                value = f"(None if {expr} is None else _json({expr}))"
            if guards:
                value = f"({value} if {' and '.join(f'{g} is not None' for g in guards)} else None)"
            outs.append(value)
        src = (
            "def build(s):\n    return (" + ", ".join(outs) + ("," if len(outs) == 1 else "") + ")"
        )
        env: dict[str, Any] = {"_json": _json}
        exec(src, env)
        build: Callable[[Any], tuple[Any, ...]] = env["build"]
        return build

    def __call__(self, content: bytes | bytearray) -> FastPage | None:
        if not content.isascii():
            # msgspec does not look at the strings it skips: text that is not UTF-8 there
            # would pass here and be refused by the general path (RFC 8259: JSON is UTF-8)
            try:
                content.decode()
            except UnicodeDecodeError:
                return None
        try:
            doc = self._decoder.decode(content)
            body: Any = {}
            if self._rows_path:
                body = _as_dict(doc, skip=self._rows_path)
                items = doc
                for step in self._rows_path:
                    items = getattr(items, _field(items, str(step)))
            else:
                items = doc
            if self._const is not None:
                if self._distinct:  # one tuple per row: the rows are told apart by identity
                    nones = list(self._const)
                    return FastPage([tuple(nones) for _ in items], body, self._whole)
                return FastPage([self._const] * len(items), body, self._whole)
            assert self._to_row is not None
            rows = list(map(self._to_row, items))
            if self._unsign is not None and b"-" in content:  # no "-": no -0.0
                rows = self._unsign(rows)
            return FastPage(rows, body, self._whole)
        except (msgspec.MsgspecError, orjson.JSONDecodeError, RecursionError):
            # RecursionError: msgspec nests on the Python stack, so it gives up on JSON that
            # orjson reads (up to 1024 levels) or refuses with a message
            return None  # the general path decodes this page (and names what is wrong)


def _zero_reals(reals: frozenset[int], row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` with 0.0 for -0.0 in the ``reals`` columns."""
    return tuple(v + 0.0 if i in reals and v is not None else v for i, v in enumerate(row))


def _json(raw: msgspec.Raw) -> str | None:
    """A JSON column's text, as the general path makes it (orjson's reading and writing)."""
    value = orjson.loads(memoryview(raw))
    return None if value is None else orjson.dumps(value).decode()


def _field(struct: Any, key: str) -> str:
    names: tuple[str, ...] = struct.__struct_fields__
    encoded: tuple[str, ...] = struct.__struct_encode_fields__
    return names[encoded.index(key)]


def _as_dict(struct: Any, skip: JsonPath) -> dict[str, Any]:
    """The envelope as nested dicts (what the paginator reads), without the rows list."""
    out: dict[str, Any] = {}
    for name, key in zip(struct.__struct_fields__, struct.__struct_encode_fields__, strict=True):
        if skip and key == skip[0] and len(skip) == 1:
            continue
        value = getattr(struct, name)
        if isinstance(value, msgspec.Struct):
            value = _as_dict(value, skip[1:] if skip and key == skip[0] else ())
        if value is not None:
            out[key] = value
    return out


def _struct_required(tree: _Tree, rows_path: JsonPath) -> Any:
    """Like :func:`_struct`, with the objects along ``rows_path`` required (no rows: fall back)."""
    fields: list[Any] = []
    rename: dict[str, str] = {}
    for n, (key, sub) in enumerate(tree.items()):
        name = f"f{n}"
        rename[name] = key
        on_path = bool(rows_path) and key == rows_path[0]
        if isinstance(sub, dict):
            typ = _struct_required(sub, rows_path[1:]) if on_path else (_struct(sub) | None)
        else:
            typ = sub
        fields.append((name, typ) if on_path else (name, typ, None))
    fields.sort(key=lambda f: len(f))
    return msgspec.defstruct(f"_Page{next(_counter)}", fields, rename=rename, gc=False)


def page_decoder(
    spec: TableSpec, used: Sequence[int] | None, distinct: bool = False
) -> PageDecoder | None:
    """The fast decoder for ``spec`` reading ``used`` columns (None: all), or None if the
    table's shape is not one it handles. ``distinct``: one tuple object per row, even when no column is read (PartialPage tells
    rows apart by identity)."""
    cols = range(len(spec.columns)) if used is None else used
    if not all(isinstance(step, str) for step in spec.rows_path):
        return None
    tree: _Tree = {}
    for i in cols:
        col = spec.columns[i]
        if col.type not in _LEAF or not col.path:
            return None
        if not all(isinstance(step, str) for step in col.path):
            return None
        if not _insert(tree, col.path, _LEAF[col.type]):
            return None  # one column's path inside another's (or the same path twice)
    p = spec.pagination
    body_paths = [
        path
        for path in (p.next_path, p.cursor_path, p.total_path, p.total_pages_path, p.has_more_path)
        if path is not None
    ]
    if spec.rows_path:
        envelope: _Tree = {}
        _insert(envelope, spec.rows_path, "rows")
        for path in body_paths:
            if not path or not all(isinstance(s, str) for s in path):
                return None
            if not _insert(envelope, path, "body"):
                return None  # a body path inside the rows, or the rows inside one
    return PageDecoder(spec, sorted(cols), body_paths, distinct)
