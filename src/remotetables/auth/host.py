"""What the OAuth layer reads of the layers above it, as protocols of its own level.

The runtime (:class:`remotetables.session.Runtime`) is a :class:`ServiceHost`, a connection's
session (:class:`remotetables.session.Session`) a :class:`SessionView`: the auth layer never
imports them (tests/architecture/test_layers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from remotetables.cache import RowCache
from remotetables.config import Config
from remotetables.http.client import HttpClient

__all__ = ["ServiceHost", "SessionView"]


class ServiceHost(Protocol):
    """What the service needs from the runtime above it (:class:`remotetables.session.Runtime`)."""

    config: Config
    environ: dict[str, str]
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    http: HttpClient
    cache: RowCache

    def allowed_origins(self, provider: str) -> frozenset[str]: ...


class _Stats(Protocol):
    paused: float


class SessionView(Protocol):
    """What the service needs from a connection's session (:class:`remotetables.session.Session`)."""

    @property
    def user(self) -> str | None: ...
    @property
    def consent(self) -> Any: ...
    @property
    def web_session(self) -> str | None: ...
    @property
    def stats(self) -> _Stats: ...

    def require_user(self, provider: str) -> str: ...
    def handed_token(self, provider: str, user: str) -> str | None: ...
    def handed_principal(self, provider: str, user: str) -> str | None: ...
