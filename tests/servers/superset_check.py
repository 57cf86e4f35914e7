"""Run by ``tests/test_superset.py`` with a Python that has Apache Superset installed (not this
project's test environment: Superset 6 needs SQLAlchemy < 2). Prints one ``RESULT {json}`` line.

Inside Superset's own app: the engine spec it finds for ``remotetables://`` (through the entry
point), a ``Database`` with "impersonate logged in user" queried as alice through
``get_sqla_engine()``, a SQLite time grain, the tables Superset lists, ATTACH refused by the
spec's ``execute``; then Superset's own OAuth2 flow against the demo authorization server: the
prompt when alice has no token, consent, Superset's callback route storing the token, and the
next query made with that token.

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
        out = basics(work)
        out["oauth2"] = oauth2(app, work)
    return out


def basics(work: Path) -> dict[str, Any]:
    if True:
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
                    try:
                        conn.exec_driver_sql("SELECT set_user('bob')")
                        out["set_user"] = "allowed"
                    except Exception as exc:  # SQLAlchemy wraps it: the driver's error is .orig
                        out["set_user"] = type(getattr(exc, "orig", exc)).__name__
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


def oauth2(app: Any, work: Path) -> dict[str, Any]:
    import secrets
    from urllib.parse import urlsplit

    import httpx2
    import superset.key_value.models  # noqa: F401  (the PKCE verifier's table)
    from superset import db as metadata_db
    from superset import security_manager
    from superset.exceptions import OAuth2RedirectError
    from superset.models.core import Database
    from superset.utils.core import override_user

    from remotetables.demo.api.server import IncidentsAPI
    from remotetables.demo.authserver.models import DemoClient
    from remotetables.demo.authserver.server import DemoAuthServer
    from tests.servers.walk import walk_consent

    Database.metadata.create_all(metadata_db.engine)  # Superset's own tables (no migrations)
    out: dict[str, Any] = {}
    secret = secrets.token_urlsafe(16)
    callback = "http://127.0.0.1/api/v1/database/oauth2/"  # Superset's route (any loopback port)
    rows = [
        {"sys_id": "a1", "assigned_to": "alice"},
        {"sys_id": "b1", "assigned_to": "bob"},
        {"sys_id": "a2", "assigned_to": "alice"},
    ]
    with (
        DemoAuthServer(clients=[DemoClient("superset", secret, [callback])]) as auth,
        IncidentsAPI({"incidents": rows}, token_validator=auth.validate_token) as api,
    ):
        meta = httpx2.get(auth.metadata_url).json()
        cfg = work / "oauth.toml"
        cfg.write_text(
            f'[providers.demo]\nissuer = "{auth.issuer}"\nclient_id = "superset"\n'
            f'[tables.inc]\nurl = "{api.base_url}/styles/link/incidents"\npagination = "link"\n'
            '[tables.inc.columns]\nsys_id = "TEXT"\n',
            encoding="utf-8",
        )
        database = Database(
            database_name="rt-oauth2",
            sqlalchemy_uri=f"remotetables:///{work / 'o.db'}?config={cfg}",
            impersonate_user=True,
            encrypted_extra=json.dumps(
                {
                    "oauth2_client_info": {
                        "id": "superset",
                        "secret": secret,
                        "scope": "incidents.read",
                        "redirect_uri": "http://127.0.0.1:8088/api/v1/database/oauth2/",
                        "authorization_request_uri": meta["authorization_endpoint"],
                        "token_request_uri": meta["token_endpoint"],
                    }
                }
            ),
        )
        alice = security_manager.user_model(
            username="alice", first_name="A", last_name="L", email="alice@example.com", active=True
        )
        metadata_db.session.add_all([database, alice])
        metadata_db.session.commit()
        out["oauth2_enabled"] = database.is_oauth2_enabled()
        query = "SELECT group_concat(sys_id) FROM (SELECT sys_id FROM inc ORDER BY sys_id)"
        spec = database.db_engine_spec
        with override_user(alice):
            # 1. no token yet: Superset's prompt (OAuth2RedirectError carries the URL)
            try:
                with database.get_raw_connection() as raw:
                    spec.execute(raw.cursor(), query, database)
                out["first"] = "ran"
            except OAuth2RedirectError as exc:
                url = exc.error.extra["url"]
                out["first"] = "prompt"
                out["prompt_origin"] = urlsplit(url).netloc == urlsplit(auth.issuer).netloc
                out["pkce"] = "code_challenge_method=S256" in url
            # 2. the user consents; the browser lands on Superset's callback route
            landed = walk_consent(url, username="alice", password="alice")
            client = app.test_client()
            resp = client.get("/api/v1/database/oauth2/?" + urlsplit(landed).query)
            out["callback_status"] = resp.status_code
        # 3. the next query carries the token Superset stored and hands in
        api.clear_requests()
        with override_user(alice):  # (the callback request reset the app context's user)
            with database.get_raw_connection() as raw:
                cur = raw.cursor()
                spec.execute(cur, query, database)
                out["rows"] = cur.fetchall()[0][0]
            out["api_users"] = sorted({r.user for r in api.requests})
        # 4. another Superset user gets the prompt, never alice's token
        bob = security_manager.user_model(
            username="bob", first_name="B", last_name="O", email="bob@example.com", active=True
        )
        metadata_db.session.add(bob)
        metadata_db.session.commit()
        with override_user(bob):
            try:
                with database.get_raw_connection() as raw:
                    spec.execute(raw.cursor(), query, database)
                out["bob"] = "ran"
            except OAuth2RedirectError:
                out["bob"] = "prompt"
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(Path(sys.argv[1]))))
