"""authlib's server-side grants and endpoints, plugged into the demo's in-memory models.

Authorization code with PKCE (S256 only) and one-time codes, refresh with rotation and reuse
detection, client credentials, the device grant (RFC 8628), revocation (RFC 7009) and
introspection (RFC 7662). :class:`~remotetables.demo.authserver.DemoAuthServer` registers them;
each reaches the :class:`Store` through its authorization server.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant

from remotetables.demo.authserver.models import AuthCode, DeviceCredential, Store, TokenRef

__all__ = [
    "ClientCredentialsGrant",
    "CodeGrant",
    "DeviceEndpoint",
    "DeviceGrant",
    "Introspection",
    "RefreshGrant",
    "Revocation",
    "S256Challenge",
]

_ALL_AUTH = ["client_secret_basic", "client_secret_post", "none"]


def _store(grant: Any) -> Store:
    store: Store = grant.server.store
    return store


class S256Challenge(CodeChallenge):  # type: ignore[misc]
    """PKCE required on every authorization request, and only S256."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _ALL_AUTH

    def save_authorization_code(self, code: str, req: Any) -> None:
        store = _store(self)
        data = req.payload.data
        store.codes[code] = AuthCode(
            code=code,
            client_id=req.client.get_client_id(),
            redirect_uri=req.payload.redirect_uri,
            scope=req.scope or "",
            user=req.user,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            expires_at=store.clock() + store.code_ttl,
        )

    def query_authorization_code(self, code: str, client: Any) -> AuthCode | None:
        store = _store(self)
        rec = store.codes.get(code)
        if rec is None or rec.client_id != client.get_client_id():
            return None
        if rec.used:
            # RFC 6749 4.1.2: a code used twice revokes what it granted.
            if rec.family is not None:
                rec.family.revoked = True
            raise InvalidGrantError("authorization code already used; its grant is revoked")
        if store.clock() >= rec.expires_at:
            return None
        return rec

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        authorization_code.used = True  # kept, so that a replay can be detected

    def authenticate_user(self, authorization_code: AuthCode) -> str | None:
        return authorization_code.user if authorization_code.user in _store(self).users else None

    def create_token_response(self) -> Any:
        result = super().create_token_response()
        _store(self).stats.incr("code_exchanges")
        return result


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _ALL_AUTH

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRef | None:
        store = _store(self)
        rec = store.by_refresh.get(refresh_token)
        if rec is None:
            return None
        if rec.refresh_state == "rotated" and store.reuse_detection:
            # Every replay of a rotated token counts; the first one revokes the family.
            rec.family.revoked = True
            store.stats.incr("refresh_reuse_detected")
            raise InvalidGrantError("refresh token reuse detected; the grant is revoked")
        if rec.family.revoked or rec.refresh_state != "active":
            return None
        ref = TokenRef(store, rec, "refresh_token")
        return None if ref.is_expired() else ref

    def authenticate_user(self, refresh_token: TokenRef) -> str | None:
        return refresh_token.rec.user

    def issue_token(self, user: str, refresh_token: TokenRef) -> Any:
        scope = self.request.payload.scope or refresh_token.get_scope()
        return self.generate_token(
            user=user, scope=scope, include_refresh_token=_store(self).rotate_refresh_tokens
        )

    def revoke_old_credential(self, refresh_token: TokenRef) -> None:
        if _store(self).rotate_refresh_tokens:
            refresh_token.rec.refresh_state = "rotated"

    def create_token_response(self) -> Any:
        result = super().create_token_response()
        _store(self).stats.incr("refreshes")
        return result


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012


class DeviceEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = _ALL_AUTH

    def get_verification_uri(self) -> str:
        return _store(self).issuer + "/device"

    def save_device_credential(self, client_id: str, scope: str | None, data: Any) -> None:
        store = _store(self)
        client = store.clients[client_id]
        cred = DeviceCredential(
            clock=store.clock,
            client_id=client_id,
            scope=client.get_allowed_scope(scope),
            expires_at=store.clock() + data["expires_in"],
            **data,
        )
        store.devices[data["device_code"]] = cred
        store.user_codes[data["user_code"]] = cred


class DeviceGrant(DeviceCodeGrant):  # type: ignore[misc]
    def query_device_credential(self, device_code: str) -> DeviceCredential | None:
        return _store(self).devices.get(device_code)

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        return _store(self).device_grants.get(user_code)

    def should_slow_down(self, credential: DeviceCredential) -> bool:
        store = _store(self)
        now, last = store.clock(), credential.get("last_poll")
        credential["last_poll"] = now
        return last is not None and now - last < credential["interval"]

    def create_token_response(self) -> Any:
        result = super().create_token_response()
        store = _store(self)
        cred = self.request.credential
        store.devices.pop(cred["device_code"], None)  # one token per device code
        store.user_codes.pop(cred["user_code"], None)
        store.device_grants.pop(cred["user_code"], None)
        return result


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = _ALL_AUTH

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRef | None:
        return _store(self).find(token_string, token_type_hint)

    def revoke_token(self, token: TokenRef, req: Any) -> None:
        if token.kind == "refresh_token":
            token.rec.family.revoked = True  # RFC 7009 2.1: the whole grant goes
        else:
            token.rec.access_revoked = True
        _store(self).stats.incr("revocations")


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = _ALL_AUTH

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRef | None:
        return _store(self).find(token_string, token_type_hint)

    def check_permission(self, token: TokenRef, client: Any, req: Any) -> bool:
        # Confidential clients (resource servers) see every token; public ones their own.
        return bool(client.is_confidential or token.check_client(client))

    def introspect_token(self, token: TokenRef) -> dict[str, Any]:
        rec = token.rec
        return {
            "active": True,
            "client_id": rec.client_id,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            "username": rec.user,
            "sub": rec.user or rec.client_id,
            "scope": rec.scope,
            "iss": _store(self).issuer,
            "exp": None if (exp := token.expires_at()) is None else int(exp),
            "iat": int(rec.issued_at),
        }
