"""What the SQL token stores share: encrypted rows bound to their key, the lease check, pending consents."""

from __future__ import annotations

from typing import Any

from remotetables.auth.store.base import (
    SCHEMA_VERSION,
    Account,
    PendingAuth,
    TokenInfo,
    TokenKey,
    TokenRecord,
    TokenSet,
    _describe,
    state_hash,
)
from remotetables.auth.store.crypto import TokenCipher
from remotetables.errors import (
    CorruptTokenError,
    KeyMismatchError,
    LeaseLostError,
    TokenStoreError,
    UnknownKeyError,
)

# a backend appends ", <lease_until compared with the store's clock now>" (lease_live)
_COLUMNS = (
    "access_token, refresh_token, token_type, granted_scope, expires_at, refresh_expires_at, "
    "version, status, lease_owner, lease_until, last_error, updated_at, account, "
    "refreshing_since IS NOT NULL"
)
# what list() selects: no token material (the account is decrypted for display)
_INFO_COLUMNS = (
    "provider, client_id, subject, status, expires_at, granted_scope,"
    " refresh_token IS NOT NULL, updated_at, last_error, account"
)
# what the refresh commit reads under its lock
_COMMIT_COLUMNS = "lease_owner, status, refresh_token, refresh_expires_at, granted_scope, version"
FINGERPRINT = "key_fingerprint"


def _pk(key: TokenKey) -> tuple[str, str, str]:
    return (key.provider, key.client_id, key.subject)


class EncryptedRows:
    """What the SQL stores share: encryption bound to the row, decoding, corrupt-row handling,
    the schema version check, the lease check and values of a refresh commit, and the encrypted
    pending consents. Only the SQL statements and how they run are the backends' own.

    A backend provides ``_cipher``, ``_select(key)`` (the ``_COLUMNS`` of a row, or None),
    ``_row_key_id(key)``, ``_mark_corrupt(key, version=, reason=)`` and ``_where`` (a name for
    error messages).
    """

    _cipher: TokenCipher
    # the key fingerprint recorded in the store's metadata, when it is not one of ours
    _foreign_key: str | None = None

    @property
    def _where(self) -> str:  # pragma: no cover - provided by backends
        raise NotImplementedError

    def _select(self, key: TokenKey) -> Any: ...  # pragma: no cover - provided by backends
    def _row_key_id(self, key: TokenKey) -> str | None: ...  # pragma: no cover
    def _mark_corrupt(
        self, key: TokenKey, *, version: int, reason: str
    ) -> None: ...  # pragma: no cover

    def _aad(self, key: TokenKey, column: str) -> tuple[str, ...]:
        return (*_pk(key), column)

    def _enc(self, key: TokenKey, column: str, value: str | None) -> bytes | None:
        return None if value is None else self._cipher.encrypt(value, aad=self._aad(key, column))

    def _put_values(self, key: TokenKey, tokens: TokenSet, now: float) -> tuple[Any, ...]:
        """Parameters of the upsert, in the column order both backends use."""
        self._check_key()
        account = None if tokens.account is None else tokens.account.to_json()
        return (
            *_pk(key),
            self._enc(key, "access_token", tokens.access_token),
            self._enc(key, "refresh_token", tokens.refresh_token),
            tokens.token_type,
            tokens.scope,
            tokens.expires_at,
            tokens.refresh_expires_at,
            self._cipher.current_key_id,
            now,
            self._enc(key, "account", account),
        )

    def _account(self, key: TokenKey, blob: Any) -> Account | None:
        """The stored account of ``key`` (encrypted like the tokens: it is personal data)."""
        if blob is None:
            return None
        return Account.from_json(self._cipher.decrypt(bytes(blob), aad=self._aad(key, "account")))

    def _info(self, row: Any) -> TokenInfo:
        """A ``list()`` row (``_INFO_COLUMNS``) as TokenInfo; an unreadable account shows as '?'."""
        p, c, s, st, e, sc, h, u, r, blob = row
        try:
            account = self._account(TokenKey(p, c, s), blob)
            name = None if account is None else account.name
        except CorruptTokenError:
            name = "?" if blob is not None else None
        return TokenInfo(p, c, s, st, e, sc, bool(h), u, r, name)

    def _judge_key(self, recorded: str | None, row_key_ids: set[str]) -> str | None:
        """The fingerprint to record when the store has none yet (None: nothing to record),
        after noting in ``_foreign_key`` a store written under another key.

        A store without a fingerprint (made before they were recorded) gets ours only if every
        stored row was written by one of our keys (by key id)."""
        if recorded is not None:
            self._foreign_key = None if recorded in self._cipher.fingerprints else recorded
            return None
        if row_key_ids <= self._cipher.key_ids:
            return self._cipher.fingerprint
        self._foreign_key = (
            "unrecorded (its rows were written under key ids "
            + ", ".join(sorted(row_key_ids - self._cipher.key_ids))
            + ")"
        )
        return None

    def _check_key(self) -> None:
        """Before every write: refuse to write under a key other than the store's own."""
        if self._foreign_key is not None:
            raise KeyMismatchError(
                f"token store {self._where} was created with another encryption key "
                f"(key fingerprint {self._foreign_key}); this process has key id "
                f"{self._cipher.current_key_id}: nothing is written with it. Point "
                "settings.key_file (or REMOTETABLES_KEY_FILE) at the key the store was created with"
            )

    def check_key(self) -> str | None:
        """For ``remotetables check``: None if this key is the store's and decrypts a stored
        grant (the first active one, if any), else what is wrong. Reads only."""
        try:
            self._check_key()
        except KeyMismatchError as exc:
            return str(exc).removeprefix(f"token store {self._where} ")
        key = self._first_active()
        if key is None:
            return None
        row = self._select(key)
        if row is None:
            return None
        try:
            self._record(key, row)
        except CorruptTokenError as exc:
            return f"the grant of {_describe(key)} cannot be decrypted with this key: {exc}"
        return None

    def _first_active(self) -> TokenKey | None: ...  # pragma: no cover - provided by backends

    def _check_schema(self, row: Any) -> None:
        """Refuse a store whose stored schema version (``row``, or None) is not this one's."""
        if row is None or str(row[0]) != str(SCHEMA_VERSION):
            raise TokenStoreError(
                f"token store {self._where} has schema version {row and row[0]!r}; "
                f"this version of remotetables reads version {SCHEMA_VERSION}"
            )

    def _refresh_values(
        self,
        key: TokenKey,
        row: Any,
        *,
        owner: str,
        tokens: TokenSet,
        now: float,
        from_version: int | None = None,
    ) -> tuple[Any, ...]:
        """Parameters of the refresh commit's UPDATE, after checking that ``row``
        (``_COMMIT_COLUMNS``) shows ``owner``'s lease, or else the version ``from_version``."""
        self._check_key()
        held = row is not None and row[0] == owner
        unchanged = row is not None and from_version is not None and int(row[5]) == from_version
        if row is None or row[1] != "active" or not (held or unchanged):
            raise LeaseLostError(
                f"token store {self._where}: refresh lease for {_describe(key)} "
                "is not held by this worker"
            )
        rt_blob, rexp, scope = row[2], tokens.refresh_expires_at, tokens.scope or row[4]
        if tokens.refresh_token is not None:
            rt_blob = self._enc(key, "refresh_token", tokens.refresh_token)
        elif rt_blob is not None:  # keep the old RT, re-encrypted under the current key
            aad = self._aad(key, "refresh_token")
            rt_blob = self._cipher.encrypt(self._cipher.decrypt(bytes(rt_blob), aad=aad), aad=aad)
            rexp = row[3]
        return (
            self._enc(key, "access_token", tokens.access_token),
            rt_blob,
            tokens.token_type,
            scope,
            tokens.expires_at,
            rexp,
            self._cipher.current_key_id,
            now,
            *_pk(key),
        )

    def get(self, key: TokenKey) -> TokenRecord | None:
        for _ in range(5):
            row = self._select(key)
            if row is None:
                return None
            try:
                return self._record(key, row)
            except UnknownKeyError as exc:
                if self._row_key_id(key) == exc.key_id:
                    raise  # another key wrote this row: the wrong key is configured; wipe nothing
                self._mark_corrupt(key, version=int(row[6]), reason=str(exc))
            except CorruptTokenError as exc:
                self._mark_corrupt(key, version=int(row[6]), reason=str(exc))
        raise TokenStoreError(f"token store {self._where}: row for {_describe(key)} keeps changing")

    def _record(self, key: TokenKey, row: Any) -> TokenRecord:
        (
            at,
            rt,
            ttype,
            scope,
            exp,
            rexp,
            version,
            status,
            owner,
            until,
            err,
            upd,
            acct,
            busy,
            live,
        ) = row
        tokens = None
        if at is not None:
            tokens = TokenSet(
                access_token=self._cipher.decrypt(bytes(at), aad=self._aad(key, "access_token")),
                refresh_token=None
                if rt is None
                else self._cipher.decrypt(bytes(rt), aad=self._aad(key, "refresh_token")),
                token_type=ttype or "Bearer",
                scope=scope,
                expires_at=exp,
                refresh_expires_at=rexp,
                account=self._account(key, acct),
            )
        return TokenRecord(
            key, tokens, int(version), status, owner, until, err, upd, bool(busy), bool(live)
        )

    def _pending_aad(
        self, provider: str, client_id: str, subject: str, h: bytes
    ) -> tuple[str, ...]:
        return (provider, client_id, subject, "code_verifier", h.hex())

    def _pending_values(self, pending: PendingAuth) -> tuple[Any, ...]:
        """Parameters of the pending-consent INSERT (verifier encrypted), in both backends' order."""
        self._check_key()
        p, h = pending, state_hash(pending.state)
        verifier = self._cipher.encrypt(
            p.code_verifier, aad=self._pending_aad(p.provider, p.client_id, p.subject, h)
        )
        return (h, p.provider, p.client_id, p.subject, p.redirect_uri, verifier, p.issuer,
                p.web_session, p.created_at, p.expires_at)  # fmt: skip

    def _pending_from_row(self, state: str, row: Any, *, now: float) -> PendingAuth | None:
        """The pending consent of ``state`` from its deleted row; None if none, expired or
        undecryptable."""
        if row is None:
            return None
        provider, client_id, subject, redirect_uri, blob, issuer, session, created, expires = row
        if expires <= now:
            return None
        try:
            verifier = self._cipher.decrypt(
                bytes(blob), aad=self._pending_aad(provider, client_id, subject, state_hash(state))
            )
        except CorruptTokenError:
            return None
        return PendingAuth(
            state, provider, client_id, subject, redirect_uri, verifier, issuer, created, expires,
            session,
        )  # fmt: skip
