"""Which account a grant belongs to: who signed in at the provider during consent.

Learnt, in this order, from

1. the OpenID Connect ID token of the code exchange, validated with joserfc (authlib's own JOSE
   library, which authlib 1.9 uses in place of its deprecated ``authlib.jose``): signature
   against the provider's JWKS (HS256/384/512: a confidential client's own secret), ``iss``
   (identical to the configured issuer; without one the ID token is not used), ``aud`` (our client id, and
   ``azp`` when there are several audiences), ``exp``, ``iat`` and the transaction's ``nonce``;
2. else the userinfo endpoint (OpenID Connect, ``openid`` scope), with the new access token;
3. else token introspection (RFC 7662) of the new access token, with the client's own
   authentication, where the server allows it (``username``, else ``sub``).

An ID token that fails validation fails the consent: nothing is stored. The account's name is
the configured ``account_claim``, else the first of ``email``, ``preferred_username``,
``username``, ``sub``. :func:`check_account` compares it with the ``account`` template.

Nothing here logs or raises a token: errors name the provider, the user and the claim.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from remotetables.auth.discovery import _clean, call_server, require_secure_url
from remotetables.auth.store import Account, TokenStore
from remotetables.config import ProviderConfig
from remotetables.errors import (
    AccountMismatch,
    ConsentFailed,
    ProviderUnavailable,
    TokenStoreError,
    redact_url,
)

if TYPE_CHECKING:
    from remotetables.auth.tokenendpoint import TokenEndpointClient

__all__ = [
    "ID_TOKEN_ALGORITHMS",
    "AccountResolver",
    "check_account",
    "must_sign_in",
    "nonce_for",
    "signing_in",
]

# asymmetric algorithms, keys from the JWKS (and HS* with a confidential client's own secret)
ID_TOKEN_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
_HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
log = logging.getLogger("remotetables.auth")
NAME_CLAIMS = ("email", "preferred_username", "username", "sub")
_LEEWAY = 120  # seconds of clock skew tolerated on exp / iat


def nonce_for(code_verifier: str) -> str:
    """The OIDC ``nonce`` of a transaction: an HMAC of its (secret, random) PKCE verifier.

    OpenID Connect Core §15.5.2: a hash of a value kept on the client side. Deriving it from
    the verifier keeps it unguessable and single-use, and the pending record needs no field.
    """
    digest = hmac.new(code_verifier.encode(), b"remotetables openid nonce", hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def account_from_claims(
    claims: Mapping[str, Any], *, source: str, claim: str | None, issuer: str | None
) -> Account | None:
    """The account named by ``claim`` (or the first usable of :data:`NAME_CLAIMS`)."""
    names = (claim,) if claim else NAME_CLAIMS
    name = None
    for c in names:
        value = claims.get(c)
        if c == "email" and claims.get("email_verified") is False:
            continue  # an unverified email names nobody
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            name = _clean(str(value))
            break
    sub = claims.get("sub")
    sub_text = (
        _clean(str(sub)) if isinstance(sub, str | int) and not isinstance(sub, bool) else None
    )
    if name is None:
        return None
    return Account(name=name, source=source, subject=sub_text, issuer=issuer)


def check_account(
    account: Account | None,
    *,
    expected: str | None,
    provider: str,
    user: str,
    claim: str | None,
    prompt: str = "auto",
) -> None:
    """Raise :class:`AccountMismatch` when ``expected`` is set and the account is not it.

    The comparison ignores case (emails and most user names are case-insensitive).
    ``prompt`` (the provider's) decides what the message says the next consent does.
    """
    if expected is None:
        return
    then = (
        'the next consent does not ask to sign in (prompt = "never"), so sign out first'
        if prompt == "never"
        else "the next consent asks to sign in (prompt=login)"
    )
    how = (
        f"sign out of {provider} in your browser (or use its 'sign in as someone else'), then "
        f"run the query again or `remotetables login {provider} --user {user}`: {then}"
    )
    if account is None:
        what = f"claim {claim!r}" if claim else "an account name"
        raise AccountMismatch(
            f"{provider}: cannot tell which account signed in for {user} (the provider gave no "
            f"{what}: add the 'openid' scope, or set account_claim), and providers.{provider}."
            f"account expects {expected!r}; the grant was not stored",
            provider=provider,
            user=user,
            expected=expected,
        )
    if account.name.casefold() == expected.casefold():
        return
    raise AccountMismatch(
        f"{provider}: the consent for {user} was given by account {account.name!r}, but "
        f"{user} must sign in as {expected!r} (providers.{provider}.account); the grant was "
        f"not stored. To switch accounts: {how}",
        provider=provider,
        user=user,
        account=account.name,
        expected=expected,
    )


def must_sign_in(store: TokenStore, provider: ProviderConfig, subject: str) -> bool:
    """Whether a consent for ``subject`` asks the server to sign the user in again
    (``prompt=login``): always with ``prompt = "always"``, never with ``"never"``, and by
    default when ``subject`` is not the user who last signed in through this provider's
    consent (recorded in the token store): the browser may still hold that user's session."""
    if provider.prompt != "auto":
        return provider.prompt == "always"
    assert provider.client_id is not None
    last = store.last_signin(provider.token_key_issuer, provider.client_id)
    return last is None or not hmac.compare_digest(last.encode(), subject.encode())


@contextlib.contextmanager
def signing_in(store: TokenStore, provider: ProviderConfig, subject: str) -> Iterator[bool]:
    """Around a consent for ``subject``; yields whether it must ask to sign in again.

    While it runs, nobody is known to be signed in through this provider's consent: someone
    may sign in and then cancel, time out or be refused, or a web app may never finish it,
    and the next consent, whoever it is for, must then ask to sign in again. Only a consent
    that completes records ``subject``.
    """
    sign_in = must_sign_in(store, provider, subject)
    _record_signin(store, provider, None)
    yield sign_in
    _record_signin(store, provider, subject)


def _record_signin(store: TokenStore, provider: ProviderConfig, subject: str | None) -> None:
    """Advisory: a store that cannot record it does not fail the consent (it only means the
    next consent may ask to sign in when it need not, or not when it should: logged)."""
    assert provider.client_id is not None
    try:
        store.set_last_signin(provider.token_key_issuer, provider.client_id, subject)
    except TokenStoreError as exc:
        log.warning("provider %s: could not record who signed in (%s)", provider.name, exc)


class AccountResolver:
    """Finds out who signed in, for one provider's client (keeps its JWKS)."""

    def __init__(self, client: TokenEndpointClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._jwks: KeySet | None = None
        self._openid: dict[str, Any] | None = None

    @property
    def _name(self) -> str:
        return self.client.settings.name

    def _fail(self, user: str, message: str) -> ConsentFailed:
        return ConsentFailed(
            f"{self._name}: {message}; the grant was not stored",
            provider=self._name,
            user=user,
            error_code="invalid_id_token",
        )

    def resolve(
        self,
        doc: Mapping[str, Any],
        access_token: str,
        *,
        user: str,
        nonce: str | None,
        scope: str | None,
    ) -> Account | None:
        """The account behind a token response ``doc``; None when the provider does not say."""
        claim = self.client.settings.account_claim
        id_token = doc.get("id_token")
        signed_sub: object = None  # the validated ID token's sub: userinfo must say the same
        # without a configured issuer an ID token cannot be checked (iss): it is not used
        if id_token is not None and self._issuer() is not None:
            if not isinstance(id_token, str) or not id_token:
                raise self._fail(user, "the token response has an id_token that is not a JWT")
            claims = self.validate_id_token(id_token, user=user, nonce=nonce)
            signed_sub = claims.get("sub")
            found = account_from_claims(
                claims, source="id_token", claim=claim, issuer=self._issuer()
            )
            if found is not None:
                return found
        openid = "openid" in (scope or "").split() or (
            scope is None and "openid" in self.client.settings.scopes
        )
        userinfo = self._endpoint("userinfo_endpoint") if openid else None
        if userinfo is not None:
            info = self._userinfo(userinfo, access_token)
            if info is not None and signed_sub is not None and info.get("sub") != signed_sub:
                # OpenID Connect Core 5.3.2: else the answer may be about someone else
                raise self._fail(
                    user, "the userinfo answer is about another subject than the ID token"
                )
            if info is not None:
                found = account_from_claims(
                    info, source="userinfo", claim=claim, issuer=self._issuer()
                )
                if found is not None:
                    return found
        introspection = self.client.metadata().introspection_endpoint
        if introspection is not None:
            answer = self._introspect(introspection, access_token)
            if answer is not None:
                return account_from_claims(
                    answer, source="introspection", claim=claim, issuer=self._issuer()
                )
        return None

    # ------------------------------------------------------------------ ID token

    def _issuer(self) -> str | None:
        return self.client.metadata().issuer or self.client.settings.issuer

    def validate_id_token(self, id_token: str, *, user: str, nonce: str | None) -> dict[str, Any]:
        """The claims of a valid ID token; :class:`ConsentFailed` otherwise (no token shown)."""
        issuer = self._issuer()
        if issuer is None:
            raise self._fail(user, "an ID token came back but no issuer is configured to check it")
        secret = self.client.settings.client_secret
        if secret is not None and len(secret.encode()) < 14:
            secret = None  # under 112 bits is no signing key (joserfc would warn, rightly)
        # HS*: signed with our client secret (OpenID Connect Core 10.1), confidential clients only
        algorithms = [*ID_TOKEN_ALGORITHMS, *(_HMAC_ALGORITHMS if secret else ())]
        for attempt in (0, 1):  # a key id we do not know: the provider may have rotated keys

            def key_for(obj: Any, refresh: bool = attempt == 1) -> Any:
                if secret and str(obj.headers().get("alg", "")) in _HMAC_ALGORITHMS:
                    return OctKey.import_key(secret)
                return self._keyset(refresh=refresh, user=user)

            try:
                token = jwt.decode(id_token, key_for, algorithms=algorithms)
                break
            except JoseError as exc:
                if attempt == 0 and type(exc).__name__ in ("InvalidKeyIdError", "MissingKeyError"):
                    continue
                raise self._fail(
                    user, f"the ID token does not verify against the provider's keys ({exc.error})"
                ) from None
        else:  # pragma: no cover - the loop always breaks or raises
            raise self._fail(user, "the ID token's signature does not verify")
        client_id = self.client.settings.client_id
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self.client.clock()), leeway=_LEEWAY, **options
        )
        claims = dict(token.claims)
        try:
            registry.validate(claims)
        except JoseError as exc:
            detail = getattr(exc, "claim", None)
            what = f"claim {detail!r}" if detail else "its claims"
            raise self._fail(
                user, f"the ID token is not valid for this client and sign-in ({what}: {exc.error})"
            ) from None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
            raise self._fail(user, "the ID token has several audiences and azp is not this client")
        return claims

    def _keyset(self, *, refresh: bool, user: str) -> KeySet:
        with self._lock:
            if self._jwks is not None and not refresh:
                return self._jwks
        uri = self._endpoint("jwks_uri")
        if uri is None:
            raise self._fail(user, "an ID token came back but the provider publishes no jwks_uri")
        doc = self._get_json(uri, headers={})
        if doc is None:
            raise ProviderUnavailable(
                f"{self._name}: its JWKS at {uri} could not be read", provider=self._name
            )
        try:
            keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
        except (JoseError, KeyError, TypeError, ValueError):
            raise ProviderUnavailable(
                f"{self._name}: its JWKS at {uri} is not a JSON Web Key Set", provider=self._name
            ) from None
        with self._lock:
            self._jwks = keys
        return keys

    # ------------------------------------------------------------------ metadata

    def _endpoint(self, name: str) -> str | None:
        """``jwks_uri`` / ``userinfo_endpoint``: from the metadata in use, else from the
        provider's OpenID configuration (whose issuer must be identical)."""
        value = getattr(self.client.metadata(), name, None)
        if isinstance(value, str):
            return value
        openid = self._openid_configuration()
        value = openid.get(name)
        if not isinstance(value, str):
            return None
        return require_secure_url(value, name, provider=self._name, config=False)

    def _openid_configuration(self) -> dict[str, Any]:
        with self._lock:
            if self._openid is not None:
                return self._openid
        issuer = self.client.settings.issuer
        doc: dict[str, Any] = {}
        if issuer is not None:
            found = self._get_json(
                issuer.rstrip("/") + "/.well-known/openid-configuration", headers={}
            )
            if found is not None and found.get("issuer") == issuer:
                doc = found
        with self._lock:
            self._openid = doc
        return doc

    # ------------------------------------------------------------------ HTTP

    def _get_json(self, url: str, *, headers: dict[str, str]) -> dict[str, Any] | None:
        """A JSON object from the provider (JWKS, userinfo, OpenID configuration), or None.

        Like every OAuth call: under ``oauth_timeout`` and ``max_response_bytes``, redirects not
        followed, JSON nested past 1024 levels not JSON (auth/discovery.py's call_server)."""
        try:
            response = call_server(
                self.client._http,
                self.client.settings,
                "GET",
                url,
                f"GET {redact_url(url)}",
                headers={"Accept": "application/json", **headers},
            )
        except ProviderUnavailable:
            return None
        if response.status_code != 200:
            return None
        doc = response.json()
        return doc if isinstance(doc, dict) else None

    def _userinfo(self, url: str, access_token: str) -> dict[str, Any] | None:
        return self._get_json(url, headers={"Authorization": f"Bearer {access_token}"})

    def _introspect(self, url: str, access_token: str) -> dict[str, Any] | None:
        try:
            response = self.client._post(
                url, {"token": access_token, "token_type_hint": "access_token"}, "introspection"
            )
        except ProviderUnavailable:
            return None
        if response.status_code != 200:
            return None
        doc = response.json()  # orjson: a 200 000-deep answer is not JSON, not a RecursionError
        if not isinstance(doc, dict) or doc.get("active") is not True:
            return None
        return doc
