"""Run by ``tests/test_superset.py`` with a Python that has Apache Superset installed (not this
project's test environment: Superset 6 needs SQLAlchemy < 2). Prints one ``RESULT {json}`` line.

Inside Superset's own app: the engine spec it finds for ``remotetables://`` (through the entry
point), a ``Database`` with "impersonate logged in user" queried as alice through
``get_sqla_engine()``, a SQLite time grain, the tables Superset lists, and ATTACH refused by
the spec's ``execute``.

    python tests/servers/superset_check.py WORKDIR   (SUPERSET_CONFIG_PATH set by the caller)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main(work: Path) -> dict[str, Any]:
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from superset import db as metadata_db
        from superset import security_manager
        from superset.db_engine_specs import get_engine_spec
        from superset.models.core import Database
        from superset.utils.core import override_user

        from remotetables.demo.api.server import IncidentsAPI

        metadata_db.create_all()
        out: dict[str, Any] = {}
        spec = get_engine_spec("remotetables", "remotetables")
        out["spec"] = f"{spec.__module__}.{spec.__name__}"
        with IncidentsAPI(n_rows=30, seed=1) as api:
            cfg = work / "rt.toml"
            cfg.write_text(
                f'[tables.inc]\nurl = "{api.base_url}/styles/link/incidents"\n'
                'pagination = "link"\npage_size_param = "limit"\nmax_page_size = 10\n'
                'key = "sys_id"\n[tables.inc.columns]\nsys_id = "TEXT"\nopened_at = "TEXT"\n'
                'priority = "INTEGER"\n',
                encoding="utf-8",
            )
            database = Database(
                database_name="rt",
                sqlalchemy_uri=f"remotetables:///{work / 'w.db'}?config={cfg}",
                impersonate_user=True,
            )
            out["db_engine_spec"] = database.db_engine_spec.__name__
            alice = security_manager.user_model(
                username="alice", first_name="A", last_name="L", email="a@example.com"
            )
            with override_user(alice):
                with database.get_sqla_engine() as engine, engine.connect() as conn:
                    out["current_user"] = conn.exec_driver_sql("SELECT current_user()").scalar()
                    day = spec.get_time_grain_expressions()["P1D"].format(col="opened_at")
                    out["days"] = conn.exec_driver_sql(
                        f"SELECT count(DISTINCT {day}) = count(DISTINCT date(opened_at)), "
                        "count(*) FROM inc"
                    ).one()[:]
                names = database.get_all_table_names_in_schema(catalog=None, schema="temp")
                out["tables"] = sorted(str(t[0]) for t in names)
                with database.get_raw_connection() as raw:
                    try:
                        spec.execute(raw.cursor(), "ATTACH '/etc/hostname' AS x", database)
                        out["attach"] = "allowed"
                    except Exception as exc:  # what Superset would show
                        out["attach"] = f"{type(exc).__name__}: {exc}"
        return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(Path(sys.argv[1]))))
