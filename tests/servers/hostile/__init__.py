"""A hostile HTTP server on loopback: an API, a token endpoint, a revocation endpoint and RFC 8414
metadata that misbehave on purpose, one behaviour per URL prefix.

Every URL is ``http://127.0.0.1:PORT/m/<behaviour>/<endpoint>``, where the endpoint is ``api``,
``token``, ``revoke``, ``authorize`` or the metadata document (``/.well-known/
oauth-authorization-server/m/<behaviour>``, RFC 8414's path insertion, and the OpenID form).
``ok`` behaves. The others are in :data:`CATALOG`: each answers whatever endpoint is hit in its
own wrong way (some only make sense for the API and answer normally elsewhere).

It speaks HTTP on a raw socket, so it can do what a framework would not: trickle headers, send
a Content-Length of 2 GB and nothing after it, reset the connection mid-body, promise gzip and
send something else. Slow behaviours stop when the client goes away or the server stops.

The answers follow the public specifications the client relies on: RFC 6749 §5.1/§5.2 token and
error answers, RFC 7009 revocation (200 with an empty body), RFC 8414 metadata, RFC 8288 Link
headers, RFC 9110 Retry-After (delta-seconds or HTTP-date), RFC 9112 message framing.
"""

from tests.servers.hostile.catalog import CATALOG, bomb
from tests.servers.hostile.server import HostileServer
from tests.servers.hostile.wire import ISSUED_ACCESS, ISSUED_REFRESH, Behaviour, Request

__all__ = [
    "CATALOG",
    "ISSUED_ACCESS",
    "ISSUED_REFRESH",
    "Behaviour",
    "HostileServer",
    "Request",
    "bomb",
]
