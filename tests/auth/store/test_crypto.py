"""TokenCipher (AES-256-GCM with AAD) and key loading."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from remotetables.auth.store.crypto import TokenCipher, key_id_for
from remotetables.auth.store.keys import (
    KEYRING_SERVICE,
    KEYRING_USERNAME,
    is_real_keyring,
    load_key,
)
from remotetables.errors import CorruptTokenError, TokenStoreError, UnknownKeyError

AAD = ("github", "cli-client", "alice", "refresh_token")


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher.from_key(os.urandom(32))


def test_round_trip_and_layout(cipher: TokenCipher) -> None:
    blob = cipher.encrypt("gho_secret-value", aad=AAD)
    assert cipher.decrypt(blob, aad=AAD) == "gho_secret-value"
    key_id = cipher.current_key_id.encode()
    assert blob[:1] == b"\x01"
    assert blob[1] == len(key_id)
    assert blob[2 : 2 + len(key_id)] == key_id
    assert len(blob) == 2 + len(key_id) + 12 + len("gho_secret-value") + 16
    assert b"gho_secret" not in blob
    # a fresh nonce each time
    assert cipher.encrypt("x", aad=AAD) != cipher.encrypt("x", aad=AAD)


@pytest.mark.parametrize(
    "other",
    [
        ("github", "cli-client", "bob", "refresh_token"),  # another user's row
        ("github", "cli-client", "alice", "access_token"),  # another column
        ("gitlab", "cli-client", "alice", "refresh_token"),  # another provider
        ("github", "other-client", "alice", "refresh_token"),
        ("github|cli-client", "alice", "refresh_token"),  # separators cannot collide
    ],
)
def test_aad_binds_row_and_column(cipher: TokenCipher, other: tuple[str, ...]) -> None:
    blob = cipher.encrypt("rt", aad=AAD)
    with pytest.raises(CorruptTokenError):
        cipher.decrypt(blob, aad=other)


def test_flipped_byte_and_garbage_fail_cleanly(cipher: TokenCipher) -> None:
    blob = bytearray(cipher.encrypt("rt", aad=AAD))
    for i in range(len(blob)):
        damaged = bytearray(blob)
        damaged[i] ^= 0x01
        with pytest.raises(CorruptTokenError):
            cipher.decrypt(bytes(damaged), aad=AAD)
    for junk in (b"", b"\x01", b"\x02abc", bytes(blob[:20])):
        with pytest.raises(CorruptTokenError):
            cipher.decrypt(junk, aad=AAD)


def test_unknown_key_and_rotation() -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    old = TokenCipher.from_key(old_key)
    blob = old.encrypt("rt", aad=AAD)
    with pytest.raises(UnknownKeyError, match="key_file"):
        TokenCipher.from_key(new_key).decrypt(blob, aad=AAD)
    rotated = TokenCipher(
        {key_id_for(old_key): old_key, key_id_for(new_key): new_key}, current=key_id_for(new_key)
    )
    assert rotated.decrypt(blob, aad=AAD) == "rt"
    assert TokenCipher.key_id_of(rotated.encrypt("rt", aad=AAD)) == key_id_for(new_key)


def test_bad_keys_rejected_and_repr_hides_keys() -> None:
    with pytest.raises(TokenStoreError):
        TokenCipher({"k": b"short"}, current="k")
    with pytest.raises(TokenStoreError):
        TokenCipher({"k": bytes(32)}, current="missing")
    key = bytes(range(32))
    assert key.hex() not in repr(TokenCipher({"k": key}, current="k"))


# ----------------------------------------------------------------------------- keys


def _private_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("encode", [lambda k: k, lambda k: base64.b64encode(k) + b"\n"])
def test_key_file_raw_or_base64(tmp_path: Path, encode: object) -> None:
    key = os.urandom(32)
    path = _private_file(tmp_path / "key", encode(key))  # type: ignore[operator]
    assert load_key(key_file=path, default_key_file=tmp_path / "unused") == (key_id_for(key), key)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_key_file_with_loose_mode_refused(tmp_path: Path, mode: int) -> None:
    path = _private_file(tmp_path / "key", os.urandom(32), mode)
    with pytest.raises(TokenStoreError, match=str(path)):
        load_key(key_file=path, default_key_file=tmp_path / "unused")


def test_key_file_owned_by_someone_else_refused(tmp_path: Path) -> None:
    path = _private_file(tmp_path / "key", os.urandom(32))
    os.chown(path, os.getuid() + 4242, -1)  # tests run as root here
    with pytest.raises(TokenStoreError, match="owned by uid"):
        load_key(key_file=path, default_key_file=tmp_path / "unused")


def test_key_file_bad_content_and_missing(tmp_path: Path) -> None:
    path = _private_file(tmp_path / "key", b"not a key")
    with pytest.raises(TokenStoreError, match="32 raw bytes or their base64"):
        load_key(key_file=path, default_key_file=tmp_path / "unused")
    with pytest.raises(TokenStoreError, match="does not exist"):
        load_key(key_file=tmp_path / "nope", default_key_file=tmp_path / "d", create=False)


def test_explicit_key_file_created_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    key_id, key = load_key(key_file=path, default_key_file=tmp_path / "unused")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(key_file=path, default_key_file=tmp_path / "unused") == (key_id, key)


def test_default_key_file_created_private_and_stable(tmp_path: Path) -> None:
    default = tmp_path / "state" / "remotetables" / "token.key"
    first = load_key(key_file=None, use_keyring=False, default_key_file=default)
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert stat.S_IMODE(default.parent.stat().st_mode) == 0o700
    assert load_key(key_file=None, use_keyring=False, default_key_file=default) == first
    assert [p.name for p in default.parent.iterdir()] == ["token.key"]  # no temp files left


def test_default_key_dir_writable_by_others_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(TokenStoreError, match="refusing directory"):
        load_key(key_file=None, use_keyring=False, default_key_file=shared / "token.key")


class FakeKeyring:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password


def test_keyring_generates_once_then_reuses(tmp_path: Path) -> None:
    ring = FakeKeyring()
    default = tmp_path / "k" / "token.key"
    first = load_key(key_file=None, default_key_file=default, keyring_backend=ring)
    assert (KEYRING_SERVICE, KEYRING_USERNAME) in ring.items
    assert not default.exists()
    assert load_key(key_file=None, default_key_file=default, keyring_backend=ring) == first


def test_keyring_does_not_orphan_an_existing_file_key(tmp_path: Path) -> None:
    default = tmp_path / "k" / "token.key"
    from_file = load_key(key_file=None, use_keyring=False, default_key_file=default)
    ring = FakeKeyring()
    assert load_key(key_file=None, default_key_file=default, keyring_backend=ring) == from_file
    assert ring.items == {}


def test_fail_null_and_empty_chainer_keyrings_are_not_real() -> None:
    from keyring.backends import chainer, fail, null

    assert not is_real_keyring(fail.Keyring())
    assert not is_real_keyring(null.Keyring())
    empty_chain = chainer.ChainerBackend()
    assert is_real_keyring(empty_chain) == any(is_real_keyring(b) for b in empty_chain.backends)
    assert is_real_keyring(FakeKeyring())
