"""remotetables: query remote HTTP APIs from SQLite, each user with their own OAuth 2.0 token."""

from __future__ import annotations

from remotetables.errors import *  # noqa: F403
from remotetables.errors import __all__ as _errors_all

__version__ = "0.1.0"
__all__ = [*_errors_all, "__version__"]
