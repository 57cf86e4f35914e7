"""Consent callbacks: how a user approves access for one (provider, user).

A consent callback is any ``Callable[[ConsentRequest], str]`` that returns the redirect URL
the browser landed on. A callback may also implement :class:`RedirectAware`
(``redirect_uri_for(provider)``) to choose the redirect URI for the transaction, and
``release(redirect_uri)`` to free what it prepared when the transaction ends early.

Built-in callbacks:

- :func:`browser_consent`: system browser + one-shot :class:`LoopbackListener` on
  ``http://127.0.0.1:{ephemeral}/callback`` (RFC 8252 §7.3). The URL is printed as well.
- :func:`prompt_consent`: prints the URL and reads the pasted redirect URL (SSH sessions).
  Its redirect URI defaults to :data:`DEFAULT_REDIRECT_URI`, ``http://127.0.0.1/callback``:
  nothing listens there, the browser shows an error page, the user copies the address.
- :func:`raise_consent`: raises :class:`ConsentRequired` with the URL (web apps); the app
  finishes later with :func:`complete_pending` from its callback route. Its redirect URI is
  the app's registered one (default :data:`DEFAULT_REDIRECT_URI`).

Plain callables get :data:`DEFAULT_REDIRECT_URI` unless ``run_consent`` is told otherwise.
"""

from __future__ import annotations

import builtins
import contextlib
import hmac
import shlex
import sys
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from textwrap import shorten
from typing import Literal, Protocol, TextIO, runtime_checkable

from remotetables.auth.loopback import (
    NOT_A_REDIRECT_URL,
    LoopbackListener,
    interactive,
    is_redirect_url,
    read_pasted,
    state_of,
)
from remotetables.auth.oauth import DeviceAuthorization, OAuthClient
from remotetables.auth.store import SYSTEM_SUBJECT, PendingAuth, TokenSet
from remotetables.errors import ConsentFailed, ConsentRequired, Error, redact_text

__all__ = [
    "DEFAULT_REDIRECT_URI",
    "BrowserConsent",
    "ConsentCallback",
    "ConsentRequest",
    "LoopbackListener",
    "PromptConsent",
    "RaiseConsent",
    "RedirectAware",
    "TakePending",
    "auto_consent_mode",
    "browser_consent",
    "complete_pending",
    "device_message",
    "login_command",
    "prompt_consent",
    "raise_consent",
    "run_consent",
]

DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"


@dataclass(frozen=True)
class ConsentRequest:
    """What a consent callback gets: whom to ask, for which provider, and where to send them."""

    user: str
    provider: str
    authorization_url: str
    redirect_uri: str


ConsentCallback = Callable[[ConsentRequest], str]


@runtime_checkable
class RedirectAware(Protocol):
    """A callback that picks the redirect URI of each transaction (None: use the default)."""

    def redirect_uri_for(self, provider: str) -> str | None: ...


class TakePending(Protocol):
    """Take a pending transaction by state, once (``TokenStore.take_pending``).

    With ``web_session``, a transaction started from another web session is left in place
    and :class:`ConsentFailed` is raised.
    """

    def __call__(
        self, state: str, *, now: float, web_session: str | None = None
    ) -> PendingAuth | None: ...


# ---------------------------------------------------------------------- callbacks


def login_command(request: ConsentRequest) -> str:
    """The command that connects the user of ``request`` from a terminal."""
    who = "--system" if request.user == SYSTEM_SUBJECT else f"--user {shlex.quote(request.user)}"
    return f"remotetables login {shlex.quote(request.provider)} {who}"


class BrowserConsent:
    """Open the system browser and catch the redirect on a loopback listener.

    ``redirect_uri_for`` opens a fresh listener for one transaction; ``__call__`` waits on it;
    ``release`` closes it if the transaction ends before the call.
    """

    def __init__(
        self,
        *,
        timeout: float = 300,
        open_browser: Callable[[str], bool] = webbrowser.open,
        out: TextIO | None = None,
        host: str = "127.0.0.1",
        paste: TextIO | Literal["auto"] | None = "auto",
    ) -> None:
        """``paste``: a stream the user may paste the redirect URL into while we wait (when the
        browser runs elsewhere, or did not open); "auto": standard input if it is a terminal,
        else, when no browser opened, the process's terminal (/dev/tty) if it has one.

        With no browser opened and nothing to paste into, the call fails at once
        (:class:`ConsentRequired` naming ``remotetables login``) instead of waiting."""
        self.timeout = timeout
        self.open_browser = open_browser
        self.out = out
        self.host = host
        self._tty_fallback = paste == "auto"
        if paste == "auto":
            paste = sys.stdin if interactive(sys.stdin) else None
        self.paste = paste
        self._listeners: dict[str, LoopbackListener] = {}
        self._lock = threading.Lock()

    def redirect_uri_for(self, provider: str) -> str | None:
        listener = LoopbackListener(timeout=self.timeout, host=self.host)
        listener.start()
        with self._lock:
            self._listeners[listener.redirect_uri] = listener
        return listener.redirect_uri

    def release(self, redirect_uri: str) -> None:
        with self._lock:
            listener = self._listeners.pop(redirect_uri, None)
        if listener is not None:
            listener.close()

    def __call__(self, request: ConsentRequest) -> str:
        with self._lock:
            listener = self._listeners.pop(request.redirect_uri, None)
        if listener is None:
            raise ConsentFailed(
                f"{request.provider}: no loopback listener for {request.redirect_uri}",
                provider=request.provider,
                user=request.user,
            )
        tty: TextIO | None = None
        paste = self.paste
        reader: threading.Thread | None = None
        try:
            state = state_of(request.authorization_url)
            if state is None:
                raise ConsentFailed("the authorization URL has no state", provider=request.provider)
            listener.expect(state)
            out = self.out if self.out is not None else sys.stderr
            print(
                f"Authorize remotetables to use {request.provider} as {request.user}.\n"
                f"Opening your browser; if it does not open, visit:\n\n"
                f"  {request.authorization_url}\n",
                file=out,
                flush=True,
            )
            opened = False
            with contextlib.suppress(Exception):  # a broken browser must not end the wait
                opened = bool(self.open_browser(request.authorization_url))
            if not opened and paste is None and self._tty_fallback:
                tty = paste = _open_tty()  # standard input is not a terminal: the terminal
            if not opened and paste is None:  # nothing could ever complete it: say so now
                raise ConsentRequired(
                    f"{request.provider}: {request.user} must authorize access, and nothing here "
                    "can complete it (no browser could be opened and there is no terminal to "
                    f"paste the redirect address into). Run `{login_command(request)}` where a "
                    "browser or a terminal is at hand, then run this again. (Authorization URL, "
                    f"valid only while this process waited: {request.authorization_url})",
                    provider=request.provider,
                    user=request.user,
                    authorization_url=request.authorization_url,
                    state=state,
                )
            if paste is not None:
                print(
                    ("" if opened else "(No browser could be opened here.) ")
                    + "If the browser is on another machine, approve there, then paste the "
                    "address it lands on (it may fail to load) here and press Enter.",
                    file=out,
                    flush=True,
                )
                reader = threading.Thread(
                    target=read_pasted, args=(paste, listener, out), daemon=True
                )
                reader.start()
            try:
                return listener.wait(state)
            except ConsentFailed as exc:
                raise ConsentFailed(
                    f"{request.provider}: {exc}",
                    provider=request.provider,
                    user=request.user,
                    error_code=exc.error_code,
                ) from None
        finally:
            listener.close()
            if tty is not None:
                if reader is not None:
                    reader.join(timeout=2)  # it polls: ends soon after the wait is over
                tty.close()


def _open_tty() -> TextIO | None:
    """The process's terminal, when standard input is not one (input piped, output redirected)."""
    try:
        tty = open("/dev/tty", encoding="utf-8")  # noqa: SIM115 - closed after the wait
    except OSError:
        return None
    if not interactive(tty):
        tty.close()
        return None
    return tty


def _forget_last_input() -> None:
    """Drop the line just typed from readline's history (saved to ~/.sqlite_history by the
    shell): a pasted redirect URL holds an authorization code."""
    readline = sys.modules.get("readline")
    if readline is None:
        return
    with contextlib.suppress(Exception):
        n = readline.get_current_history_length()
        if n > 0:
            readline.remove_history_item(n - 1)


def _ask_terminal(question: str, out: TextIO) -> str:
    """Ask on ``out`` (the terminal's stderr, never stdout: it may hold the query's results)
    and read the answer from standard input (with line editing when it is a terminal)."""
    print(question, end="", file=out, flush=True)
    if sys.stdin is not None and sys.stdin.isatty():
        return builtins.input("")  # readline edits; the empty prompt writes nothing to stdout
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise EOFError
    return line


class PromptConsent:
    """Print the URL and read the redirect URL the user pastes back (headless/SSH).

    The text and the question go to ``out`` (default stderr); the answer is read with ``input``
    (default: standard input), which gets the question as its prompt when given.

    A paste that is not a redirect URL, or is the redirect of another sign-in (its ``state``
    differs), is not echoed and is asked for again, up to ``attempts`` times in all; an empty
    line, end of input or Ctrl-C gives up at once.
    """

    def __init__(
        self,
        *,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        input: Callable[[str], str] | None = None,
        out: TextIO | None = None,
        attempts: int = 3,
    ) -> None:
        self.redirect_uri = redirect_uri
        self.input = input
        self.out = out
        self.attempts = max(1, attempts)

    def redirect_uri_for(self, provider: str) -> str | None:
        return self.redirect_uri

    def __call__(self, request: ConsentRequest) -> str:
        out = self.out if self.out is not None else sys.stderr
        print(
            f"Authorize remotetables to use {request.provider} as {request.user}.\n"
            f"Open this URL in a browser:\n\n  {request.authorization_url}\n\n"
            f"After approving, the browser goes to {request.redirect_uri}... "
            f"(the page may fail to load).\nCopy the full address from the address bar.",
            file=out,
            flush=True,
        )
        expected_state = state_of(request.authorization_url)
        for attempt in range(1, self.attempts + 1):
            try:
                if self.input is None:
                    answer = _ask_terminal("Paste the redirect URL: ", out).strip()
                else:
                    answer = self.input("Paste the redirect URL: ").strip()
            except (EOFError, KeyboardInterrupt):
                answer = ""
            if answer:
                _forget_last_input()  # the code and state must not stay in readline's history
            if not answer:  # Enter on an empty line, end of input or Ctrl-C: give up
                raise ConsentFailed(
                    f"{request.provider}: no redirect URL was entered",
                    provider=request.provider,
                    user=request.user,
                )
            # never echoed: a mistaken paste may be a password
            if not is_redirect_url(answer):
                problem = NOT_A_REDIRECT_URL.format(redirect_uri=request.redirect_uri)
            elif expected_state and state_of(answer) not in (None, expected_state):
                problem = (
                    "that is the redirect address of another sign-in (its state does not "
                    "match): paste the address the browser shows after this approval"
                )
            else:
                return answer
            if attempt == self.attempts:
                raise ConsentFailed(
                    f"{request.provider}: {problem} ({attempt} tries; run the query again "
                    "to start over)",
                    provider=request.provider,
                    user=request.user,
                    error_code="invalid_request",
                )
            left = self.attempts - attempt
            print(
                f"{problem[0].upper()}{problem[1:]}. Try again ({left} more "
                f"{'try' if left == 1 else 'tries'}; an empty line gives up).",
                file=out,
                flush=True,
            )
        raise AssertionError("unreachable")  # pragma: no cover


class RaiseConsent:
    """Raise :class:`ConsentRequired` with the authorization URL (web apps, BI servers)."""

    def __init__(self, *, redirect_uri: str = DEFAULT_REDIRECT_URI) -> None:
        self.redirect_uri = redirect_uri

    def redirect_uri_for(self, provider: str) -> str | None:
        return self.redirect_uri

    def __call__(self, request: ConsentRequest) -> str:
        raise ConsentRequired(
            f"{request.provider}: {request.user} must authorize access",
            provider=request.provider,
            user=request.user,
            authorization_url=request.authorization_url,
            state=state_of(request.authorization_url),
        )


def auto_consent_mode(environ: dict[str, str]) -> str:
    """browser where one can open, prompt on a terminal, raise otherwise."""
    if (
        sys.platform in ("darwin", "win32")
        or environ.get("BROWSER")
        or environ.get("DISPLAY")
        or environ.get("WAYLAND_DISPLAY")
    ):
        return "browser"
    if sys.stdin is not None and sys.stdin.isatty():
        return "prompt"
    return "raise"


def browser_consent(
    *,
    timeout: float = 300,
    open_browser: Callable[[str], bool] = webbrowser.open,
    out: TextIO | None = None,
    host: str = "127.0.0.1",
    paste: TextIO | Literal["auto"] | None = "auto",
) -> BrowserConsent:
    """System browser + loopback listener (and a pasted redirect URL, on a terminal).
    ``out`` defaults to ``sys.stderr``."""
    return BrowserConsent(
        timeout=timeout, open_browser=open_browser, out=out, host=host, paste=paste
    )


def prompt_consent(
    *,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    input: Callable[[str], str] | None = None,
    out: TextIO | None = None,
) -> PromptConsent:
    """Print the URL, read the pasted redirect URL. ``out`` (the text and the question)
    defaults to ``sys.stderr``; ``input`` to reading standard input."""
    return PromptConsent(redirect_uri=redirect_uri, input=input, out=out)


def raise_consent(*, redirect_uri: str = DEFAULT_REDIRECT_URI) -> RaiseConsent:
    """Raise ConsentRequired; finish with :func:`complete_pending` in the app's route."""
    return RaiseConsent(redirect_uri=redirect_uri)


def device_message(dev: DeviceAuthorization, *, provider: str, user: str) -> str:
    """What to show for the device grant (RFC 8628 §3.3), with the §5.4 phishing warning."""
    lines = [
        f"Authorize remotetables to use {provider} as {user}:",
        f"  open {dev.verification_uri} and enter the code {dev.user_code}",
    ]
    if dev.verification_uri_complete:
        lines.append(f"  (or open {dev.verification_uri_complete})")
    lines.append(
        "Only enter this code if you started this request yourself; never enter a code "
        "someone else sent you."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------- orchestration


def _redirect_uri(callback: ConsentCallback, provider: str, default: str) -> str:
    if isinstance(callback, RedirectAware):
        chosen = callback.redirect_uri_for(provider)
        if chosen:
            return chosen
    return default


def _release(callback: ConsentCallback, redirect_uri: str) -> None:
    release = getattr(callback, "release", None)
    if callable(release):
        release(redirect_uri)


def run_consent(
    client: OAuthClient,
    callback: ConsentCallback,
    *,
    subject: str,
    provider: str | None = None,
    save_pending: Callable[[PendingAuth], None],
    take_pending: TakePending,
    clock: Callable[[], float] | None = None,
    ttl: float = 600,
    web_session: str | None = None,
    default_redirect_uri: str = DEFAULT_REDIRECT_URI,
    sign_in: bool = False,
) -> TokenSet:
    """Run one authorization-code transaction for ``subject`` through ``callback``.

    Picks the redirect URI (the callback's ``redirect_uri_for``, else ``default_redirect_uri``),
    begins, saves the pending record, calls the callback, takes the record back (single use)
    and completes. If the callback raises :class:`ConsentRequired` the record stays saved for
    :func:`complete_pending`; on any other failure it is taken (discarded). The caller stores
    the returned tokens. ``clock`` defaults to the client's clock. ``sign_in`` asks the
    server to sign the user in again (``prompt=login``), see :meth:`OAuthClient.begin`.
    """
    clock = clock or client.clock
    name = provider or client.settings.name
    if name != client.settings.name:
        raise ConsentFailed(f"{name}: the client belongs to {client.settings.name}", provider=name)
    redirect_uri = _redirect_uri(callback, name, default_redirect_uri)
    try:
        url, pending = client.begin(
            subject=subject,
            redirect_uri=redirect_uri,
            ttl=ttl,
            web_session=web_session,
            sign_in=sign_in,
        )
        save_pending(pending)
        request = ConsentRequest(
            user=subject, provider=name, authorization_url=url, redirect_uri=redirect_uri
        )
        try:
            callback_url = callback(request)
            if not isinstance(callback_url, str):
                raise ConsentFailed(
                    f"{name}: the consent callback for {subject} returned "
                    f"{type(callback_url).__name__}, not the redirect URL",
                    provider=name,
                    user=subject,
                )
        except ConsentRequired:
            raise
        except BaseException as exc:
            take_pending(pending.state, now=clock())
            if isinstance(exc, Error) or not isinstance(exc, Exception):
                raise  # ours already say whose; KeyboardInterrupt, SystemExit pass through
            raise ConsentFailed(
                f"{name}: the consent callback for {subject} failed: {type(exc).__name__}: "
                f"{shorten(redact_text(str(exc)), 300)}; nothing was stored",
                provider=name,
                user=subject,
            ) from exc
        taken = take_pending(pending.state, now=clock())
        if taken is None or taken.subject != subject:
            raise ConsentFailed(
                f"{name}: the authorization transaction was already used or has expired",
                provider=name,
                user=subject,
            )
        if clock() > taken.expires_at:
            raise ConsentFailed(
                f"{name}: the authorization transaction has expired", provider=name, user=subject
            )
        return client.complete(taken, callback_url)
    finally:
        _release(callback, redirect_uri)


def complete_pending(
    client: OAuthClient,
    callback_url: str,
    take_pending: TakePending,
    *,
    web_session: str | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[PendingAuth, TokenSet]:
    """Finish a transaction from the app's callback route: the URL's state finds the record.

    Unknown or used state -> :class:`ConsentFailed`. If ``web_session`` is given it must equal
    the one the transaction was started with (binds it to the user agent, checklist #6); a
    callback from another session fails without using the transaction up.
    """
    name = client.settings.name
    state = state_of(callback_url)
    now = (clock or client.clock)()
    pending = take_pending(state, now=now, web_session=web_session) if state else None
    if pending is None:
        raise ConsentFailed(f"{name}: unknown or already used authorization state", provider=name)
    if web_session is not None and not (
        pending.web_session is not None
        and hmac.compare_digest(pending.web_session.encode(), web_session.encode())
    ):  # the store judged it before taking the transaction; a custom one may not have
        raise ConsentFailed(
            f"{name}: the authorization was started from another session",
            provider=name,
            user=pending.subject,
        )
    return pending, client.complete(pending, callback_url)
