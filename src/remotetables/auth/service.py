"""The OAuth side of a runtime: token store, OAuth clients, single-flight refresh, consent.

:class:`OAuthService` is made on first use by the runtime (any :class:`ServiceHost`). For each
OAuth provider it hands out :class:`OAuthCredentials`, which give the vtable an ``httpx2.Auth``
for the current principal:

* ``personal``: the session user's token (``TokenKey(issuer, client_id, user)``);
* ``system``: one shared token, from the client-credentials grant or from an administrator's
  ``remotetables login PROVIDER --system``.

A missing grant runs the consent callback (browser, prompt, raise, device or any callable); an
expired token is refreshed single-flight; a 401 refreshes once if the stored token is still the
one that failed.
"""

from __future__ import annotations

import hmac
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2

from remotetables.auth.account import signing_in
from remotetables.auth.breaker import CircuitBreaker
from remotetables.auth.consent import (
    DEFAULT_REDIRECT_URI,
    ConsentCallback,
    auto_consent_mode,
    browser_consent,
    complete_pending,
    device_message,
    prompt_consent,
    raise_consent,
    run_consent,
)
from remotetables.auth.flow import BearerAuth
from remotetables.auth.host import ServiceHost, SessionView
from remotetables.auth.loopback import is_redirect_url, state_of
from remotetables.auth.manager import TokenManager
from remotetables.auth.oauth import OAuthClient, OAuthSettings
from remotetables.auth.singleflight import consent_once
from remotetables.auth.store import PendingAuth, TokenInfo, TokenKey, TokenSet, TokenStore
from remotetables.auth.store.factory import default_paths, open_token_store
from remotetables.config import ProviderConfig
from remotetables.errors import (
    AuthError,
    ConfigError,
    ConsentFailed,
    ConsentRequired,
    ProviderError,
    ProviderUnavailable,
    UnknownTableError,
)
from remotetables.http.client import RequestContext

__all__ = [
    "SYSTEM_SUBJECT",
    "CircuitBreaker",
    "OAuthCredentials",
    "OAuthService",
    "ServiceHost",
    "SessionView",
    "complete_consent",
    "default_paths",
]

SYSTEM_SUBJECT = "__system__"

# last_error of a grant whose revocation the provider refused (invalid_client ...): a permanent
# answer, so retry_revocations leaves it; only another logout of that grant asks again
REVOCATION_REFUSED = "revocation refused"
_REFUSALS = frozenset({"invalid_client", "unauthorized_client"})

log = logging.getLogger("remotetables.auth")


class OAuthService:
    def __init__(
        self,
        runtime: ServiceHost,
        *,
        token_store: TokenStore | None = None,
        key_file: str | None = None,
    ) -> None:
        self.rt = runtime
        self._store = token_store
        self._owns_store = token_store is None
        self._key_file = key_file
        self._clients: dict[str, OAuthClient] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._creds: dict[str, OAuthCredentials] = {}
        self._lock = threading.RLock()
        self._manager: TokenManager | None = None
        self._consent_lock = threading.Lock()
        self._grant_locks: dict[TokenKey, threading.Lock] = {}

    def grant_lock(self, key: TokenKey) -> threading.Lock:
        """One new grant at a time per (provider, subject): the others then reuse it."""
        with self._lock:
            lock = self._grant_locks.get(key)
            if lock is None:
                lock = self._grant_locks[key] = threading.Lock()
            return lock

    # ------------------------------------------------------------ pieces

    @property
    def store(self) -> TokenStore:
        with self._lock:
            if self._store is None:
                self._store = self._open_store()
            return self._store

    def _open_store(self) -> TokenStore:
        settings = self.rt.config.settings
        return open_token_store(
            settings.token_store,
            environ=self.rt.environ,
            clock=self.rt.clock,
            key_file=self._key_file or settings.key_file,
            config_path=self.rt.config.path,
            timeout=settings.token_store_timeout,
        )

    @property
    def manager(self) -> TokenManager:
        with self._lock:
            self._manager = self._manager or TokenManager.for_host(self.store, self.rt)
            return self._manager

    def _provider(self, name: str) -> ProviderConfig:
        try:
            return self.rt.config.providers[name]
        except KeyError:
            raise UnknownTableError(f"unknown provider {name!r}") from None

    def client(self, provider: ProviderConfig) -> OAuthClient:
        with self._lock:
            client = self._clients.get(provider.name)
            if client is None:
                client = OAuthClient(
                    self._settings(provider), self.rt.http.raw, clock=self.rt.clock
                )
                self._clients[provider.name] = client
            return client

    def breaker(self, provider: ProviderConfig) -> CircuitBreaker:
        """One per authorization server: providers sharing an issuer share its breaker."""
        server = provider.token_endpoint or provider.token_key_issuer
        with self._lock:
            b = self._breakers.get(server)
            if b is None:
                b = self._breakers[server] = CircuitBreaker(self.rt.clock)
            return b

    def _settings(self, p: ProviderConfig) -> OAuthSettings:
        secret = None
        if p.client_secret_env:
            secret = self.rt.environ.get(p.client_secret_env)
            if not secret:
                raise ConfigError(
                    f"environment variable {p.client_secret_env} is not set (it holds the client secret)",
                    file=self.rt.config.path,
                    key=f"providers.{p.name}.client_secret_env",
                )
        method = p.token_endpoint_auth_method or ("client_secret_basic" if secret else "none")
        assert p.client_id is not None
        return OAuthSettings(
            name=p.name,
            client_id=p.client_id,
            client_secret=secret,
            issuer=p.issuer,
            authorization_endpoint=p.authorization_endpoint,
            token_endpoint=p.token_endpoint,
            revocation_endpoint=p.revocation_endpoint,
            device_authorization_endpoint=p.device_authorization_endpoint,
            scopes=p.scopes,
            extra_authorize_params=dict(p.extra_authorize_params),
            extra_token_params=dict(p.extra_token_params),
            token_endpoint_auth_method=method,
            send_scope_on_refresh=p.send_scope_on_refresh,
            timeout=p.read_timeout,
            prompt=p.prompt,
            login_hint=p.login_hint,
            account=p.account,
            account_claim=p.account_claim,
            deadline=p.oauth_timeout,
            max_response_bytes=p.max_response_bytes,
        )

    def key(self, provider: ProviderConfig, subject: str) -> TokenKey:
        assert provider.client_id is not None
        return TokenKey(provider.token_key_issuer, provider.client_id, subject)

    def credentials(self, provider: ProviderConfig) -> OAuthCredentials:
        with self._lock:
            creds = self._creds.get(provider.name)
            if creds is None:
                creds = self._creds[provider.name] = OAuthCredentials(self, provider)
            return creds

    # ------------------------------------------------------------ tokens

    def refresher(self, provider: ProviderConfig) -> Callable[[str], TokenSet]:
        client = self.client(provider)
        breaker = self.breaker(provider)

        def refresh(refresh_token: str) -> TokenSet:
            breaker.before(provider.name)
            log.info("refreshing an access token at provider %s", provider.name)
            try:
                tokens = client.refresh(refresh_token)
            except ProviderUnavailable:
                breaker.failure()
                raise
            breaker.success()
            return tokens

        return refresh

    def obtain(
        self,
        provider: ProviderConfig,
        subject: str,
        consent: Any,
        *,
        web_session: str | None = None,
    ) -> TokenSet:
        """Get a new grant for ``subject``: client credentials, or the consent callback.

        ``web_session`` binds a pending authorization to the web session that started it
        (RFC 9700 2.1.1): only a callback presented with the same session completes it.
        """
        client = self.client(provider)
        if subject == SYSTEM_SUBJECT and provider.system_grant == "client_credentials":
            log.info("client credentials grant at provider %s", provider.name)
            breaker = self.breaker(provider)
            breaker.before(provider.name)
            try:
                tokens = client.client_credentials()
            except ProviderUnavailable:
                breaker.failure()
                raise
            breaker.success()
            return tokens
        mode = consent if consent is not None else self.rt.config.settings.consent
        if mode == "device":
            dev = client.device_start()
            print(
                device_message(dev, provider=provider.name, user=subject),
                file=sys.stderr,
                flush=True,
            )
            with signing_in(self.store, provider, subject):
                return client.device_poll(dev, sleep=self.rt.sleep, subject=subject)
        callback = self.callback(mode, provider)
        store = self.store
        log.info("asking %s to consent at provider %s", subject, provider.name)
        # one consent at a time per process: two browser tabs for the same user help nobody
        with self._consent_lock, signing_in(self.store, provider, subject) as sign_in:
            return run_consent(
                client,
                callback,
                subject=subject,
                provider=provider.name,
                save_pending=store.save_pending,
                take_pending=store.take_pending,
                clock=self.rt.clock,
                default_redirect_uri=provider.redirect_uri or "http://127.0.0.1/callback",
                web_session=web_session,
                sign_in=sign_in,
            )

    def callback(self, mode: Any, provider: ProviderConfig | None = None) -> ConsentCallback:
        """The consent callback for ``mode``; raise and prompt use the provider's redirect_uri."""
        if callable(mode):
            cb: ConsentCallback = mode
            return cb
        timeout = self.rt.config.settings.consent_timeout
        redirect = (provider.redirect_uri if provider else None) or DEFAULT_REDIRECT_URI
        if mode == "auto":
            mode = auto_consent_mode(self.rt.environ)
        if mode == "browser":
            return browser_consent(timeout=timeout)
        if mode == "prompt":
            return prompt_consent(redirect_uri=redirect)
        if mode == "raise":
            return raise_consent(redirect_uri=redirect)
        raise ConfigError(
            f"unknown consent mode {mode!r}: browser, prompt, raise, device, auto or a callable"
        )

    def login(self, provider: ProviderConfig, subject: str, consent: Any = None) -> TokenSet:
        self.retry_revocations(provider)  # an old grant waiting for revocation goes first
        return self.obtain_and_store(provider, subject, consent)

    def obtain_and_store(
        self,
        provider: ProviderConfig,
        subject: str,
        consent: Any,
        *,
        web_session: str | None = None,
    ) -> TokenSet:
        """:meth:`obtain` a grant and store it, single-flight across processes (singleflight.py)."""
        key = self.key(provider, subject)
        if subject == SYSTEM_SUBJECT and provider.system_grant == "client_credentials":
            tokens = self.obtain(provider, subject, consent)  # no person to ask
            self.manager.save_grant(key, tokens, now=self.rt.clock())
            return tokens
        mode = consent if consent is not None else self.rt.config.settings.consent
        tell = mode in ("browser", "prompt", "device", "auto")  # a person waits: say why
        return consent_once(
            self.store,
            key,
            lambda: self.obtain(provider, subject, consent, web_session=web_session),
            provider=provider.name,
            user=subject,
            clock=self.rt.clock,
            sleep=self.rt.sleep,
            lease_seconds=self.rt.config.settings.consent_timeout + 60,
            notify=(lambda text: print(text, file=sys.stderr, flush=True)) if tell else None,
        )

    def complete(
        self, callback_url: str, *, web_session: str | None = None, user: str | None = None
    ) -> tuple[str, str]:
        """Finish a consent started by the ``raise`` callback; returns (provider, user).

        The URL's state finds the pending record. ``web_session``, when given, must be the web
        session it was started from: a callback from another session fails and leaves the
        record for the rightful one. Otherwise the record is taken once (single use) whatever
        happens next; ``user`` (the session user finishing it) must be the user who started it.
        """
        if not is_redirect_url(callback_url):
            raise ConsentFailed(
                "this consent callback is not a redirect URL: pass the full URL the browser "
                "was redirected to (with its state and code)",
                error_code="invalid_request",
            )
        state = state_of(callback_url)
        now = self.rt.clock()
        pending = (
            self.store.take_pending(state, now=now, web_session=web_session) if state else None
        )
        if pending is None:
            raise ConsentFailed(
                "this consent callback matches no pending authorization "
                "(unknown, already used or expired state)",
                error_code="invalid_state",
            )
        provider = self._provider(pending.provider)
        if user is not None and not hmac.compare_digest(user.encode(), pending.subject.encode()):
            raise ConsentFailed(
                f"{provider.name}: this authorization was started for another user; "
                "it is discarded (start again as the right user)",
                provider=provider.name,
                user=user,
                error_code="invalid_state",
            )

        def take(state: str, *, now: float, web_session: str | None = None) -> PendingAuth | None:
            return pending if state == pending.state else None  # taken above, session judged

        with signing_in(self.store, provider, pending.subject):
            taken, tokens = complete_pending(
                self.client(provider),
                callback_url,
                take,
                web_session=web_session,
                clock=self.rt.clock,
            )
        self.manager.save_grant(self.key(provider, taken.subject), tokens, now=self.rt.clock())
        return provider.name, taken.subject

    def logout(self, provider: ProviderConfig, subject: str) -> bool:
        """Revoke at the provider (RFC 7009), then delete locally; True if revocation succeeded.

        When the provider cannot confirm (503, outage), the grant becomes unusable at once
        (status ``revoked``) and its tokens are kept, encrypted, only to retry the revocation
        later (:meth:`retry_revocations`, run by the CLI's login, logout and tokens commands).

        When the provider refuses the client (``invalid_client``: a wrong secret, say), the
        grant becomes unusable here just the same, but that answer will not change by itself:
        it is not retried in the background, and :class:`ProviderError` says that the token is
        still valid at the provider. A later logout of the same grant tries again.
        """
        key = self.manager.forget(self.key(provider, subject))  # its kept token too
        self.retry_revocations(provider)
        record = self.store.get(key)
        revoked = False
        refused: ProviderError | None = None
        if record is not None and record.tokens is not None:
            try:
                revoked = self._revoke(provider, record.tokens)
            except ProviderError as exc:
                refused = exc
            if refused is not None:
                reason = f"{REVOCATION_REFUSED} ({refused.error_code})"
                self.store.mark_revoked(key, reason=reason, now=self.rt.clock())
            elif not revoked and self._can_revoke(provider):
                self.store.mark_revoked(key, reason="revocation pending", now=self.rt.clock())
                log.info("revocation at provider %s not confirmed; will retry", provider.name)
            else:
                self.store.delete(key)
        else:
            self.store.delete(key)
        # rows fetched with the revoked grant are not served any more
        principal = "system" if subject == SYSTEM_SUBJECT else f"user:{subject}"
        self.rt.cache.clear(principal=principal)
        if refused is not None:
            raise self._refusal(provider, subject, refused) from None
        return revoked

    def _refusal(self, provider: ProviderConfig, subject: str, exc: ProviderError) -> ProviderError:
        who = "the system's token" if subject == SYSTEM_SUBJECT else f"{subject}'s token"
        check = (
            f"the client secret in ${provider.client_secret_env} and client_id "
            f"{provider.client_id!r}"
            if provider.client_secret_env
            else f"client_id {provider.client_id!r}"
        )
        return ProviderError(
            f"{exc}, so {who} was NOT revoked at {provider.name}. It can no longer be used "
            "here; it is kept (encrypted) only for that revocation, which is not retried on its "
            f"own: check {check}, then log out again (or revoke the access at the provider)",
            provider=provider.name,
            user=None if subject == SYSTEM_SUBJECT else subject,
            error_code=exc.error_code,
        )

    def _can_revoke(self, provider: ProviderConfig) -> bool:
        try:
            return bool(self.client(provider).metadata().revocation_endpoint)
        except AuthError:
            return True  # discovery is down too: assume there is an endpoint to retry later

    def _revoke(self, provider: ProviderConfig, tokens: TokenSet) -> bool:
        """True if revoked; False if not confirmed (outage ...): worth retrying later.

        Raises :class:`ProviderError` when the provider refuses the client (invalid_client,
        unauthorized_client): asking again will not help until the configuration changes.
        """
        client = self.client(provider)
        try:
            if tokens.refresh_token and client.revoke(tokens.refresh_token, hint="refresh_token"):
                return True
            return client.revoke(tokens.access_token, hint="access_token")
        except ProviderError as exc:
            if exc.error_code in _REFUSALS:
                raise
            return False
        except AuthError:
            return False

    def retry_revocations(self, provider: ProviderConfig | None = None) -> int:
        """Retry revocations that a provider could not confirm; returns how many now succeeded."""
        done = 0
        providers = (
            [provider]
            if provider is not None
            else [p for p in self.rt.config.providers.values() if p.auth == "oauth"]
        )
        if not providers:
            return 0
        by_issuer = {(p.token_key_issuer, p.client_id): p for p in providers}
        for info in self.store.list():
            p = by_issuer.get((info.provider, info.client_id))
            if info.status != "revoked" or p is None:
                continue
            key = TokenKey(info.provider, info.client_id, info.subject)
            record = self.store.get(key)
            if record is None or record.status != "revoked":
                continue
            if (record.last_error or "").startswith(REVOCATION_REFUSED):
                continue  # a refusal is not an outage: only a logout of that grant asks again
            try:
                revoked = record.tokens is None or self._revoke(p, record.tokens)
            except ProviderError as exc:
                reason = f"{REVOCATION_REFUSED} ({exc.error_code})"
                self.store.mark_revoked(key, reason=reason, now=self.rt.clock())
                log.warning("%s; the grant of %s stays unrevoked there", exc, info.subject)
                continue
            if revoked:
                self.store.delete(key)
                done += 1
        return done

    def tokens(self) -> list[TokenInfo]:
        return self.store.list()

    def close(self) -> None:
        if self._owns_store and self._store is not None:
            self._store.close()


class OAuthCredentials:
    """Per-provider credentials: the principal and the auth flow for a session."""

    def __init__(self, service: OAuthService, provider: ProviderConfig) -> None:
        self.service = service
        self.provider = provider

    def subject(self, session: SessionView) -> str:
        if self.provider.integration == "system":
            return SYSTEM_SUBJECT
        return session.require_user(self.provider.name)

    def principal(self, session: SessionView) -> str:
        if self.provider.integration == "system":
            return "system"
        user = session.require_user(self.provider.name)  # a handed-in token's rows are its own:
        return session.handed_principal(self.provider.name, user) or f"user:{user}"

    def token(self, session: SessionView, subject: str) -> str:
        svc = self.service
        key = svc.key(self.provider, subject)
        try:
            return svc.manager.access_token(key, svc.refresher(self.provider))
        except ConsentRequired:
            return self._new_grant(session, subject)

    def _new_grant(self, session: SessionView, subject: str) -> str:
        svc = self.service
        key = svc.key(self.provider, subject)
        with svc.grant_lock(key):
            try:  # another thread may have obtained the grant while this one waited
                return svc.manager.access_token(key, svc.refresher(self.provider))
            except ConsentRequired:
                return self._obtain_grant(session, subject)

    def _obtain_grant(self, session: SessionView, subject: str) -> str:
        svc = self.service
        # a grant awaiting revocation is revoked before a new one replaces it
        svc.retry_revocations(self.provider)
        if subject == SYSTEM_SUBJECT and self.provider.system_grant != "client_credentials":
            raise ConsentRequired(
                f"provider {self.provider.name} uses system integration and has no token yet: an "
                f"administrator must run `remotetables login {self.provider.name} --system`",
                provider=self.provider.name,
            )
        waited = time.perf_counter()
        try:
            tokens = svc.obtain_and_store(
                self.provider, subject, session.consent, web_session=session.web_session
            )
        except AuthError as exc:  # ConsentRequired, ConsentDenied (device) ...: say whose
            if exc.user is None and subject != SYSTEM_SUBJECT:
                exc.user = subject
            raise
        finally:
            # time spent with the user (consent) is not the statement's own time
            session.stats.paused += time.perf_counter() - waited
        return tokens.access_token

    def on_unauthorized(self, session: SessionView, subject: str, failed: str) -> str | None:
        svc = self.service
        key = svc.key(self.provider, subject)
        try:
            return svc.manager.refresh_if_current(key, failed, svc.refresher(self.provider))
        except ConsentRequired:
            return self._new_grant(session, subject)

    def auth(self, session: SessionView, ctx: RequestContext) -> httpx2.Auth | None:
        subject = self.subject(session)
        origins = self.service.rt.allowed_origins(self.provider.name)
        handed = session.handed_token(self.provider.name, subject)
        if handed is not None and subject != SYSTEM_SUBJECT:
            # the application's own token for this user: no store, no refresh, no consent
            return BearerAuth(
                lambda: handed,
                None,
                origins,
                self.provider.name,
                unauthorized_hint=(
                    f"the access token the application handed in for user {subject} was "
                    "refused; remotetables never refreshes it: the application must obtain a new one"
                ),
            )
        # the subject is fixed here, once per statement: set_user() acts on the next one
        return BearerAuth(
            lambda: self.token(session, subject),
            lambda failed: self.on_unauthorized(session, subject, failed),
            origins,
            self.provider.name,
        )

    def __repr__(self) -> str:
        return f"OAuthCredentials(provider={self.provider.name!r}, integration={self.provider.integration!r})"


def complete_consent(
    target: Any, callback_url: str, *, web_session: str | None = None, user: str | None = None
) -> tuple[str, str]:
    """Finish a consent that ``consent="raise"`` started; returns ``(provider, user)``.

    ``target`` is a connection (its session user, if set, must be the user the consent was
    started for) or a :class:`~remotetables.session.Runtime`. ``callback_url`` is the full
    URL the browser was redirected to. The tokens are stored; the next query runs.
    """
    session = getattr(target, "session", None)
    runtime = getattr(target, "runtime", None) if session is not None else target
    if runtime is None or not hasattr(runtime, "oauth_service"):
        raise TypeError("complete_consent() needs a remotetables connection or Runtime")
    if user is None and session is not None:
        user = session.user
    if web_session is None and session is not None:
        web_session = session.web_session
    service: OAuthService = runtime.oauth_service()
    return service.complete(callback_url, web_session=web_session, user=user)
