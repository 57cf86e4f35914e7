"""AES-256-GCM encryption of token material, bound to its row and column.

Blob layout (version 1)::

    b"\\x01" | len(key_id) (1 byte) | key_id (ascii) | nonce (12) | ciphertext || tag (16)

The associated data binds each ciphertext to where it belongs: the caller passes
``(provider, client_id, subject, column)`` and the cipher appends the key id. Parts are
length-prefixed, so no separator inside a part can make two different tuples collide.
Alice's refresh token copied into Bob's row therefore fails to decrypt.

>>> cipher = TokenCipher({"k1": bytes(32)}, current="k1")
>>> blob = cipher.encrypt("secret", aad=("gh", "cli", "alice", "refresh_token"))
>>> cipher.decrypt(blob, aad=("gh", "cli", "alice", "refresh_token"))
'secret'
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from remotetables.errors import CorruptTokenError, TokenStoreError, UnknownKeyError

__all__ = ["BLOB_VERSION", "TokenCipher", "key_fingerprint", "key_id_for"]

BLOB_VERSION = b"\x01"
_NONCE_LEN = 12
_TAG_LEN = 16
_KEY_LEN = 32


def key_id_for(key: bytes) -> str:
    """Return the key id of ``key``: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


def key_fingerprint(key: bytes) -> str:
    """A keyed hash that identifies ``key`` without revealing it (HMAC-SHA256 of a fixed
    label under the key): a store records it to refuse writes under another key."""
    return hmac.new(key, b"remotetables token store key v1", hashlib.sha256).hexdigest()[:32]


def _encode_aad(parts: Sequence[str], key_id: str) -> bytes:
    out = bytearray(b"remotetables-token-v1")
    for part in (*parts, key_id):
        raw = part.encode("utf-8")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


class TokenCipher:
    """Encrypts and decrypts token strings with a keyring of AES-256-GCM keys.

    ``keys`` maps key ids to 32-byte keys; new blobs use ``current``. Old keys stay
    usable for decryption, which is how key rotation works.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise TokenStoreError(f"current key id {current!r} is not among the keys")
        self._aeads: dict[str, AESGCM] = {}
        self._fingerprints: dict[str, str] = {}
        for key_id, key in keys.items():
            raw_id = key_id.encode("ascii", errors="strict") if key_id.isascii() else b""
            if not raw_id or len(raw_id) > 255:
                raise TokenStoreError(f"key id {key_id!r} must be 1-255 ASCII characters")
            if len(key) != _KEY_LEN:
                raise TokenStoreError(f"key {key_id!r} must be {_KEY_LEN} bytes, not {len(key)}")
            self._aeads[key_id] = AESGCM(bytes(key))
            self._fingerprints[key_id] = key_fingerprint(bytes(key))
        self._current = current

    @classmethod
    def from_key(cls, key: bytes) -> TokenCipher:
        """A cipher with the single key ``key`` (its id derived by :func:`key_id_for`)."""
        key_id = key_id_for(key)
        return cls({key_id: key}, current=key_id)

    @property
    def current_key_id(self) -> str:
        """The key id used for new encryptions."""
        return self._current

    @property
    def fingerprint(self) -> str:
        """The :func:`key_fingerprint` of the current key."""
        return self._fingerprints[self._current]

    @property
    def fingerprints(self) -> frozenset[str]:
        """The fingerprints of every key this cipher holds."""
        return frozenset(self._fingerprints.values())

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id this cipher can decrypt."""
        return frozenset(self._aeads)

    def __repr__(self) -> str:
        return f"TokenCipher(key_ids={sorted(self._aeads)!r}, current={self._current!r})"

    def encrypt(self, plaintext: str, *, aad: Sequence[str]) -> bytes:
        """Encrypt ``plaintext`` bound to ``aad`` with the current key."""
        key_id = self._current
        raw_id = key_id.encode("ascii")
        nonce = os.urandom(_NONCE_LEN)
        sealed = self._aeads[key_id].encrypt(
            nonce, plaintext.encode("utf-8"), _encode_aad(aad, key_id)
        )
        return BLOB_VERSION + bytes([len(raw_id)]) + raw_id + nonce + sealed

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        """The key id recorded in ``blob``; raises :class:`CorruptTokenError` if malformed."""
        return _split(blob)[0]

    def decrypt(self, blob: bytes, *, aad: Sequence[str]) -> str:
        """Decrypt ``blob``; raise :class:`CorruptTokenError` if it fails for any reason."""
        key_id, nonce, sealed = _split(blob)
        aead = self._aeads.get(key_id)
        if aead is None:
            known = ", ".join(repr(k) for k in sorted(self._aeads))
            raise UnknownKeyError(
                f"stored tokens were encrypted with key id {key_id!r}, but the key in use is {known}: "
                "point settings.key_file (or REMOTETABLES_KEY_FILE) at the key that wrote them; "
                "the stored tokens are left untouched",
                key_id=key_id,
            )
        try:
            plain = aead.decrypt(nonce, sealed, _encode_aad(aad, key_id))
        except InvalidTag:
            raise CorruptTokenError(
                "token ciphertext failed authentication (tampered or moved)"
            ) from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptTokenError("token plaintext is not UTF-8") from None


def _split(blob: bytes) -> tuple[str, bytes, bytes]:
    data = bytes(blob)
    if len(data) < 2 or data[:1] != BLOB_VERSION:
        raise CorruptTokenError("token blob has an unknown format version")
    id_len = data[1]
    start = 2 + id_len
    if id_len == 0 or len(data) < start + _NONCE_LEN + _TAG_LEN:
        raise CorruptTokenError("token blob is truncated")
    try:
        key_id = data[2:start].decode("ascii")
    except UnicodeDecodeError:
        raise CorruptTokenError("token blob has a malformed key id") from None
    return key_id, data[start : start + _NONCE_LEN], data[start + _NONCE_LEN :]
