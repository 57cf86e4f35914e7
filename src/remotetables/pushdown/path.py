"""Path parameters: ``https://api.github.com/repos/{owner}/{repo}/issues``.

Each value fills its placeholder as one percent-encoded path segment: a ``/``, ``?``, ``#``,
``%`` or a ``.``/``..`` segment in a value never changes the path the request goes to.

>>> fill_path("https://h/repos/{owner}/{repo}/issues", {"owner": "a/b", "repo": ".."})
'https://h/repos/a%2Fb/%2E%2E/issues'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

__all__ = ["encode_segment", "fill_path", "placeholders"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(url: str) -> list[str]:
    """The column names a table URL's path holds, in order."""
    return _PLACEHOLDER.findall(url)


def encode_segment(value: str) -> str:
    """``value`` as one path segment: every reserved character percent-encoded, and a segment
    of dots (which URL normalisation would remove or climb with) written as ``%2E``."""
    text = quote(value, safe="")
    if text and set(text) == {"."}:
        text = "%2E" * len(text)
    return text


def fill_path(url: str, values: Mapping[str, str]) -> str:
    """``url`` with each ``{name}`` replaced by its value (names as the config spells them)."""
    lowered = {k.lower(): v for k, v in values.items()}
    return _PLACEHOLDER.sub(lambda m: encode_segment(lowered[m.group(1).lower()]), url)
