"""SQLAlchemy reflection of remote tables: primary key from ``key``, comment from
``description``, JSON and BOOLEAN types, automap, pandas ``read_sql_table``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.automap import automap_base
from sqlalchemy.orm import Session

from remotetables.demo.api.server import IncidentsAPI
from tests.conftest import incidents_table

DESCRIPTION = "Incidents of the service desk, one row per ticket"


@pytest.fixture
def engine(
    api: IncidentsAPI, write_config: Callable[..., Path], tmp_path: Path
) -> Iterator[sa.Engine]:
    extra = f'key = "sys_id"\ndescription = "{DESCRIPTION}"\n'
    toml = incidents_table("inc", "link", api.base_url, extra=extra)
    toml += incidents_table("nokey", "offset", api.base_url)
    url = sa.URL.create(
        "remotetables", database=str(tmp_path / "r.db"), query={"config": str(write_config(toml))}
    )
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.exec_driver_sql("INSERT INTO notes VALUES (1, 'native')")
    yield eng
    eng.dispose()


def test_key_comment_and_types(engine: sa.Engine) -> None:
    inc = sa.Table("inc", sa.MetaData(), autoload_with=engine)
    assert [c.name for c in inc.primary_key.columns] == ["sys_id"]
    assert inc.comment == DESCRIPTION
    assert isinstance(inc.c.tags.type, sa.JSON)
    assert isinstance(inc.c.active.type, sa.Boolean)
    assert isinstance(inc.c.priority.type, sa.Integer)
    assert isinstance(inc.c.score.type, sa.REAL)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(inc.c.tags, inc.c.active).where(inc.c.tags.is_not(None)).limit(1)
        ).one()
    assert isinstance(row.tags, list) and isinstance(row.active, bool)
    nokey = sa.Table("nokey", sa.MetaData(), autoload_with=engine)
    assert list(nokey.primary_key.columns) == [] and nokey.comment is None
    notes = sa.Table("notes", sa.MetaData(), autoload_with=engine)
    assert notes.comment is None and [c.name for c in notes.primary_key.columns] == ["id"]


def test_inspector_finds_remote_tables_where_they_live(engine: sa.Engine) -> None:
    insp = sa.inspect(engine)
    assert insp.get_table_names() == ["inc", "nokey", "notes"]
    assert insp.get_schema_names() == ["main", "temp"]
    assert insp.get_table_names(schema="main") == ["notes"]
    assert insp.get_table_names(schema="temp") == ["inc", "nokey"]
    assert insp.has_table("inc") and insp.has_table("inc", schema="temp")
    assert insp.get_pk_constraint("inc", schema="temp")["constrained_columns"] == ["sys_id"]
    assert insp.get_table_comment("inc", schema="temp") == {"text": DESCRIPTION}
    assert insp.get_table_comment("notes") == {"text": None}


def test_automap_maps_tables_with_a_key(engine: sa.Engine) -> None:
    base = automap_base()
    base.prepare(autoload_with=engine)
    assert sorted(base.classes.keys()) == ["inc", "notes"]  # nokey has no primary key
    inc = base.classes.inc
    with Session(engine) as session:
        first = session.scalars(sa.select(inc).order_by(inc.number).limit(1)).one()
        again = session.get(inc, first.sys_id)
    assert again is first and first.number == "INC0000001"


def test_pandas_read_sql_table(engine: sa.Engine, api: IncidentsAPI) -> None:
    frame = pd.read_sql_table("inc", engine, columns=["sys_id", "priority", "active"])
    assert len(frame) == len(api.dataset("incidents").snapshot.rows)
    assert frame["active"].dtype == bool
    assert pd.read_sql_table("notes", engine).to_dict("list") == {"id": [1], "body": ["native"]}
