"""Where the token-encryption key comes from. The key never lives in the token database.

Order, first found wins (there is never a plaintext-token fallback):

1. ``key_file`` given explicitly: 32 raw bytes or their base64. It must be owned by the
   current uid with no group/other permission bits (like ssh). Created if missing and
   ``create`` is true.
2. The OS keyring (``keyring`` package), only when a real backend is available: not the
   fail/null backends, not a chainer with nothing to chain, not the plaintext backends
   of ``keyrings.alt``. If the keyring holds no key yet but ``default_key_file`` already
   exists, that file is used (switching keys would orphan every stored token).
3. ``default_key_file``: created on first use (0600, in a 0700 directory), atomically, so
   two processes starting at once agree on one key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import stat
from pathlib import Path
from typing import Protocol

from remotetables.auth.store.crypto import key_id_for
from remotetables.errors import TokenStoreError

__all__ = [
    "KEYRING_SERVICE",
    "KEYRING_USERNAME",
    "KeyringBackend",
    "check_private",
    "ensure_private_dir",
    "find_keyring",
    "is_real_keyring",
    "load_key",
]

KEYRING_SERVICE = "remotetables"
KEYRING_USERNAME = "token-encryption-key"
_KEY_LEN = 32


class KeyringBackend(Protocol):
    """The two methods of a ``keyring`` backend that we use."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...


def load_key(
    *,
    key_file: Path | None,
    use_keyring: bool = True,
    default_key_file: Path,
    create: bool = True,
    keyring_backend: KeyringBackend | None = None,
) -> tuple[str, bytes]:
    """Return ``(key_id, key)`` from the first available source (see the module doc).

    ``keyring_backend`` overrides keyring discovery (tests, or an application's own store).
    Raises :class:`TokenStoreError` naming the file or source on any problem.
    """
    if key_file is not None:
        key = _load_or_create_file(Path(key_file), create=create)
        return key_id_for(key), key
    backend = keyring_backend
    if use_keyring and backend is None:
        backend = find_keyring()
    if use_keyring and backend is not None:
        from_ring = _from_keyring(backend, default_key_file, create=create)
        if from_ring is not None:
            return key_id_for(from_ring), from_ring
    key = _load_or_create_file(Path(default_key_file), create=create, private_dir=True)
    return key_id_for(key), key


def find_keyring() -> KeyringBackend | None:
    """The active ``keyring`` backend if it is a real one, else ``None``."""
    try:
        import keyring
    except ImportError:  # pragma: no cover - keyring is a dependency
        return None
    try:
        backend: KeyringBackend = keyring.get_keyring()
    except Exception:
        return None
    return backend if is_real_keyring(backend) else None


def is_real_keyring(backend: object) -> bool:
    """Whether ``backend`` really stores secrets somewhere protected."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, (fail.Keyring, null.Keyring)):
        return False
    if type(backend).__module__.startswith("keyrings.alt"):
        return False  # plaintext or password-prompting file backends
    if isinstance(backend, chainer.ChainerBackend):
        return any(is_real_keyring(b) for b in backend.backends)
    priority = getattr(backend, "priority", 1)
    return not (isinstance(priority, (int, float)) and priority <= 0)


def _from_keyring(backend: KeyringBackend, default_key_file: Path, *, create: bool) -> bytes | None:
    try:
        stored = backend.get_password(KEYRING_SERVICE, KEYRING_USERNAME)
    except Exception as exc:
        raise TokenStoreError(
            f"cannot read the token key from the OS keyring ({type(exc).__name__}); "
            "pass an explicit key file or disable the keyring"
        ) from exc
    if stored is not None:
        try:
            return _decode_key(stored.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise TokenStoreError(
                f"the OS keyring entry {KEYRING_SERVICE}/{KEYRING_USERNAME} is not a 32-byte key"
            ) from None
    if Path(default_key_file).exists() or not create:
        return None  # keep using the existing file key; never orphan stored tokens
    key = os.urandom(_KEY_LEN)
    try:
        backend.set_password(KEYRING_SERVICE, KEYRING_USERNAME, base64.b64encode(key).decode())
    except Exception as exc:
        raise TokenStoreError(
            f"cannot store a new token key in the OS keyring ({type(exc).__name__})"
        ) from exc
    return key


def _decode_key(data: bytes) -> bytes:
    if len(data) == _KEY_LEN:
        return data
    text = data.strip()
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(key) == _KEY_LEN:
            return key
    raise ValueError("not a 32-byte key")


def check_private(path: Path, st: os.stat_result, *, what: str = "file") -> None:
    """Refuse ``path`` unless owned by the current uid with no group/other bits."""
    if st.st_uid != os.getuid():
        raise TokenStoreError(
            f"refusing {what} {path}: owned by uid {st.st_uid}, not by the current uid {os.getuid()}"
        )
    if st.st_mode & 0o077:
        raise TokenStoreError(
            f"refusing {what} {path}: mode {stat.S_IMODE(st.st_mode):04o} allows group/other "
            f"access; run chmod 600 {path}"
        )


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` with mode 0700 if missing; refuse one others can write to."""
    if not directory.exists():
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise TokenStoreError(f"cannot create directory {directory}: {exc.strerror}") from exc
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise TokenStoreError(f"refusing {directory}: not a directory")
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise TokenStoreError(
            f"refusing directory {directory}: it must be owned by uid {os.getuid()} and "
            f"not writable by group/other (mode {stat.S_IMODE(st.st_mode):04o})"
        )


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise TokenStoreError(f"cannot open key file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenStoreError(f"refusing key file {path}: not a regular file")
        check_private(path, st, what="key file")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        return _decode_key(data)
    except ValueError:
        raise TokenStoreError(
            f"key file {path} must hold 32 raw bytes or their base64 ({len(data)} bytes found)"
        ) from None


def _load_or_create_file(path: Path, *, create: bool, private_dir: bool = False) -> bytes:
    if path.exists():
        return _read_key_file(path)
    if not create:
        raise TokenStoreError(f"key file {path} does not exist")
    if private_dir or not path.parent.exists():
        ensure_private_dir(path.parent)  # a directory we create is private (0700)
    elif not path.parent.is_dir():
        raise TokenStoreError(f"cannot create key file {path}: {path.parent} is not a directory")
    key = os.urandom(_KEY_LEN)
    # Write a private temp file, then link it into place: the key file appears whole
    # or not at all, and exactly one of several racing processes wins.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise TokenStoreError(f"cannot create key file {path}: {exc.strerror}") from exc
    try:
        try:
            os.write(fd, base64.b64encode(key) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its key
        except OSError as exc:
            raise TokenStoreError(f"cannot create key file {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return _read_key_file(path)
