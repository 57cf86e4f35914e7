"""HTML pages of the demo authorization server: login, consent, device code, messages.

Plain HTML with inline CSS, no scripts and no external resources. Every value is escaped.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping, Sequence
from html import escape
from urllib.parse import urlsplit

from flask import Response, request, session
from werkzeug.wrappers import Response as WsgiResponse

__all__ = [
    "SCOPE_DESCRIPTIONS",
    "check_post",
    "consent_page",
    "csrf_token",
    "device_page",
    "html_response",
    "login_page",
    "logout_page",
    "message_page",
    "safe_next",
    "security_headers",
]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;
color:#1f2328;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:28px 32px;width:100%;
max-width:380px;box-shadow:0 2px 8px rgba(0,0,0,.06)}
h1{font-size:1.25rem;margin:0 0 4px}
p.sub{color:#57606a;margin:0 0 20px;font-size:.9rem}
label{display:block;font-size:.85rem;font-weight:600;margin:12px 0 4px}
input[type=text],input[type=password]{box-sizing:border-box;width:100%;padding:8px 10px;
border:1px solid #d0d7de;border-radius:6px;font-size:1rem}
ul{padding-left:20px;margin:8px 0 20px}li{margin:4px 0}code{background:#f6f8fa;padding:1px 5px;
border-radius:4px}
.row{display:flex;gap:10px;margin-top:20px}
button{flex:1;padding:9px 12px;border-radius:6px;border:1px solid #d0d7de;background:#f6f8fa;
font-size:.95rem;cursor:pointer}
button.primary{background:#1f883d;border-color:#1a7f37;color:#fff}
.error{background:#ffebe9;border:1px solid #ff818266;color:#82071e;padding:8px 10px;
border-radius:6px;font-size:.9rem}
.who{font-size:.85rem;color:#57606a;margin-top:18px}
.hint{background:#ddf4ff;border:1px solid #54aeff66;padding:8px 10px;border-radius:6px;
font-size:.85rem;margin:0 0 12px}
li code{font-size:.8rem;color:#57606a}
"""

# What each scope of the demo API lets an application do, in words a person can judge.
SCOPE_DESCRIPTIONS: Mapping[str, str] = {
    "incidents.read": "Read the incidents assigned to you",
    "incidents.write": "Create, change and delete the incidents assigned to you",
}


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _hidden(name: str, value: str) -> str:
    return f'<input type=hidden name="{escape(name)}" value="{escape(value)}">'


def login_page(
    *,
    action: str,
    next_url: str,
    csrf_token: str,
    error: str | None = None,
    hint: str | None = None,
    username: str = "",
    signed_in: str | None = None,
) -> str:
    """The sign-in form; posts ``username``, ``password``, ``next`` and ``csrf_token``.

    ``hint``: a line above the form (the demo's users and passwords). ``username`` fills the
    field in (a ``login_hint``); ``signed_in`` names who is signed in now (signing in
    replaces them).
    """
    err = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    tip = f"<p class=hint>{escape(hint)}</p>" if hint else ""
    now = (
        f"<p class=sub>Signed in as <strong>{escape(signed_in)}</strong>; "
        "signing in here replaces that session.</p>"
        if signed_in
        else ""
    )
    body = (
        "<h1>Sign in</h1><p class=sub>remotetables demo authorization server</p>"
        f'{now}{tip}{err}<form method=post action="{escape(action)}">'
        f"{_hidden('csrf_token', csrf_token)}{_hidden('next', next_url)}"
        "<label for=username>Username</label>"
        f'<input type=text id=username name=username value="{escape(username)}" '
        "autocomplete=username autofocus required>"
        "<label for=password>Password</label>"
        "<input type=password id=password name=password autocomplete=current-password required>"
        "<div class=row><button class=primary type=submit name=login value=1>Sign in</button></div>"
        "</form>"
    )
    return _page("Sign in", body)


def _scope_list(scopes: Sequence[str], descriptions: Mapping[str, str]) -> str:
    """Each scope as what it allows, with its code beside it (or only the code when unknown)."""
    if not scopes:
        return "<ul><li>basic access</li></ul>"
    items = []
    for s in scopes:
        words = descriptions.get(s)
        code = f"<code>{escape(s)}</code>"
        items.append(f"<li>{escape(words)} {code}</li>" if words else f"<li>{code}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _decision_buttons() -> str:
    return (
        "<div class=row>"
        "<button type=submit name=decision value=deny>Deny</button>"
        "<button class=primary type=submit name=decision value=allow>Allow</button>"
        "</div>"
    )


def consent_page(
    *,
    action: str,
    client_name: str,
    user: str,
    scopes: Sequence[str],
    csrf_token: str,
    client_id: str | None = None,
    descriptions: Mapping[str, str] = SCOPE_DESCRIPTIONS,
    switch_url: str | None = None,
    logout_action: str | None = None,
) -> str:
    """Allow / Deny for an authorization request; posts ``decision`` and ``csrf_token``.

    Names the application asking (its registered name and client id) and says what each
    requested scope allows. ``switch_url`` adds "Not USER? Sign in as someone else" (the
    sign-in page, back to this request); ``logout_action`` a Sign out button (its form comes
    after the decision form).
    """
    switch = (
        f'<p class=who>Not {escape(user)}? <a href="{escape(switch_url)}">Sign in as someone '
        "else</a></p>"
        if switch_url
        else ""
    )
    logout = (
        f'<form method=post action="{escape(logout_action)}">{_hidden("csrf_token", csrf_token)}'
        f"{_hidden('next', action)}<div class=row><button type=submit name=logout value=1>"
        "Sign out</button></div></form>"
        if logout_action
        else ""
    )
    ident = (
        f" (client id <code>{escape(client_id)}</code>)"
        if client_id and client_id != client_name
        else ""
    )
    body = (
        f"<h1>Allow {escape(client_name)} to use your account?</h1>"
        f"<p class=sub>The application <strong>{escape(client_name)}</strong>{ident} asks "
        "to act as you with these permissions:</p>"
        f"{_scope_list(scopes, descriptions)}"
        f'<form method=post action="{escape(action)}">{_hidden("csrf_token", csrf_token)}'
        f"{_decision_buttons()}</form>"
        f"<p class=who>Signed in as <strong>{escape(user)}</strong></p>{switch}{logout}"
    )
    return _page(f"Allow {client_name}?", body)


def logout_page(*, action: str, next_url: str, csrf_token: str) -> str:
    """Confirm signing out; posts ``next`` and ``csrf_token``."""
    body = (
        "<h1>Sign out?</h1><p class=sub>remotetables demo authorization server</p>"
        f'<form method=post action="{escape(action)}">{_hidden("csrf_token", csrf_token)}'
        f"{_hidden('next', next_url)}<div class=row><button class=primary type=submit "
        "name=logout value=1>Sign out</button></div></form>"
    )
    return _page("Sign out", body)


def device_page(
    *,
    action: str,
    user: str,
    csrf_token: str,
    user_code: str = "",
    client_name: str | None = None,
    scopes: Sequence[str] = (),
    error: str | None = None,
    descriptions: Mapping[str, str] = SCOPE_DESCRIPTIONS,
) -> str:
    """Enter (or confirm) a device ``user_code``, then Allow / Deny."""
    err = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    what = (
        f"<p class=sub><strong>{escape(client_name)}</strong> on another device asks for:</p>"
        f"{_scope_list(scopes, descriptions)}"
        if client_name
        else "<p class=sub>Enter the code shown on your device.</p>"
    )
    body = (
        f"<h1>Connect a device</h1>{what}{err}"
        f'<form method=post action="{escape(action)}">{_hidden("csrf_token", csrf_token)}'
        "<label for=user_code>Code</label>"
        f'<input type=text id=user_code name=user_code value="{escape(user_code)}" '
        "autocomplete=off required>"
        f"{_decision_buttons()}</form>"
        f"<p class=who>Signed in as <strong>{escape(user)}</strong></p>"
    )
    return _page("Connect a device", body)


def message_page(title: str, text: str) -> str:
    """A page with a title and one paragraph (errors, device done)."""
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


# ---------------------------------------------------------------- Flask helpers


def html_response(body: str, status: int = 200) -> WsgiResponse:
    return Response(body, status=status, mimetype="text/html")


def security_headers(resp: WsgiResponse) -> WsgiResponse:
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    if resp.mimetype == "text/html":
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
        )
    return resp


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_post(issuer: str) -> bool:
    """CSRF token must match the session's; a cross-origin ``Origin`` is refused.

    Browsers send ``Origin: null`` under ``Referrer-Policy: no-referrer``, so that passes.
    """
    origin = request.headers.get("Origin")
    if origin not in (None, "null", issuer):
        return False
    expected = session.get("csrf")
    sent = request.form.get("csrf_token", "")
    return isinstance(expected, str) and hmac.compare_digest(expected.encode(), sent.encode())


def safe_next(value: str) -> str:
    """Only local paths: no open redirector."""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or "\\" in value:
        return "/"
    return value
