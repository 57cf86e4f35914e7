"""Walk a login + consent as a browser would, with one httpx2 client (no JS, no redirects).

Works for the demo authorization server and for django-oauth-toolkit: forms are parsed
generically (hidden inputs + the chosen submit button's name/value).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2

__all__ = [
    "ConsentWalkError",
    "Form",
    "authorization_url",
    "callback_params",
    "new_verifier",
    "parse_forms",
    "s256",
    "walk_consent",
]

_APPROVE_WORDS = ("allow", "authorize", "approve", "accept", "yes")
_DENY_WORDS = ("deny", "cancel", "reject", "no")


def s256(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(ASCII(verifier))) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_verifier() -> str:
    """A fresh 64-character code verifier from 48 random octets."""
    return secrets.token_urlsafe(48)


def authorization_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    verifier: str | None,
    method: str | None = "S256",
    scope: str | None = None,
) -> str:
    """An authorization request URL; ``verifier=None`` sends no PKCE at all."""
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri}
    params["state"] = state
    if scope is not None:
        params["scope"] = scope
    if verifier is not None:
        params["code_challenge"] = s256(verifier) if method == "S256" else verifier
        if method is not None:
            params["code_challenge_method"] = method
    return endpoint + "?" + urlencode(params)


def callback_params(url: str) -> dict[str, str]:
    """The single-valued query parameters of a callback URL."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class ConsentWalkError(AssertionError):
    """The walk did not end at a redirect off the authorization server."""


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # hidden + prefilled inputs
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> type
    buttons: list[tuple[str | None, str]] = field(default_factory=list)  # (name, value/label)

    @property
    def is_login(self) -> bool:
        return "password" in self.inputs.values()


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._button: tuple[str | None, str | None] | None = None
        self._button_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(action=a.get("action", ""), method=a.get("method", "get")))
            return
        if not self.forms:
            return
        form = self.forms[-1]
        if tag == "input":
            kind = a.get("type", "text").lower()
            name = a.get("name")
            if kind in ("submit", "image"):
                form.buttons.append((name, a.get("value", "")))
            elif name:
                form.inputs[name] = kind
                if kind in ("hidden", "text") and a.get("value"):
                    form.fields.append((name, a.get("value", "")))
                elif kind == "hidden":
                    form.fields.append((name, ""))
        elif tag == "button" and a.get("type", "submit").lower() == "submit":
            self._button = (a.get("name"), a.get("value"))
            self._button_text = []

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None and self.forms:
            name, value = self._button
            label = value if value is not None else "".join(self._button_text).strip()
            self.forms[-1].buttons.append((name, label))
            self._button = None


def parse_forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def _pick_button(form: Form, approve: bool) -> tuple[str | None, str]:
    words = _APPROVE_WORDS if approve else _DENY_WORDS
    for name, value in form.buttons:
        text = f"{name or ''} {value}".lower()
        if any(w in text.split() for w in words):
            return name, value
    raise ConsentWalkError(f"no {'approve' if approve else 'deny'} button in {form.buttons}")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def walk_consent(
    authorization_url: str,
    *,
    username: str,
    password: str,
    approve: bool = True,
    client: httpx2.Client | None = None,
    max_steps: int = 12,
) -> str:
    """Sign in and answer the consent form; return the final redirect URL (the callback).

    If the walk ends on a page without a form (device flow), that page's URL is returned.
    """
    server_origin = _origin(authorization_url)
    own = client is None
    http = client or httpx2.Client(follow_redirects=False, timeout=10.0)
    try:
        url, method = authorization_url, "GET"
        data: dict[str, str] | None = None
        headers: dict[str, str] = {}
        logins = 0
        for _ in range(max_steps):
            resp = http.request(method, url, data=data, headers=headers)
            if resp.is_redirect:
                target = urljoin(url, resp.headers["location"])
                if _origin(target) != server_origin:
                    return target
                url, method, data, headers = target, "GET", None, {}
                continue
            forms = [f for f in parse_forms(resp.text) if f.method.lower() == "post"]
            if resp.status_code >= 400 and (not forms or forms[0].is_login):
                raise ConsentWalkError(f"{resp.status_code} at {url}: {resp.text[:300]}")
            if not forms:
                return url
            form = forms[0]
            fields = list(form.fields)
            if form.is_login:
                logins += 1
                if logins > 1:
                    raise ConsentWalkError(f"login refused for {username!r} at {url}")
                user_field = next(
                    (n for n, t in form.inputs.items() if t in ("text", "email")), "username"
                )
                pw_field = next(n for n, t in form.inputs.items() if t == "password")
                fields = [(k, v) for k, v in fields if k not in (user_field, pw_field)]
                fields += [(user_field, username), (pw_field, password)]
                button = form.buttons[0] if form.buttons else (None, "")
            else:
                button = _pick_button(form, approve)
            if button[0]:
                fields.append((button[0], button[1]))
            url = urljoin(url, form.action or url)
            method, data, headers = "POST", dict(fields), {"Origin": _origin(url)}
        raise ConsentWalkError(f"no redirect to the client after {max_steps} steps")
    finally:
        if own:
            http.close()
