"""Who may ask the server anything, checked before a route runs or a body is read (an ASGI middleware,
so the checks are the plugin's own whatever FastAPI and uvicorn do):

- the Host header names a host the server is for (loopback, ``--host``, ``--allow-host``): a web page
  that points a name of its own at 127.0.0.1 (DNS rebinding) is refused, as Jupyter refuses it;
- a POST comes from the page itself: its Origin (or, without one, its Referer) is this server's origin
  as the Host header gives it, and it is ``Content-Type: application/json`` (a cross-site form or a
  ``fetch`` of a Blob is neither);
- with a token (a server on a non-loopback ``--host``): ``?token=`` in the URL, which sets a cookie the
  page's next requests carry, or the cookie, or an ``X-Explore-Token`` header;
- a body over ``MAX_BODY_BYTES``: 413, from its Content-Length before a byte is read, or while a chunked
  body is counted.

A refusal answers ``{"error": message}`` and logs one line. Every answer carries ``X-Explore-Server``,
an id drawn at start, by which a page left open sees that the server was restarted.
"""
import hashlib
import hmac
import json
import logging
import secrets
from typing import Iterable, Optional
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

#: the largest request body: the page's largest request (100 sentences of 1,000 characters) is 100 kB
MAX_BODY_BYTES = 1_000_000
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def host_name(authority: str) -> str:
    """The host of a Host header or an origin's authority, lower-cased, without port or IPv6 brackets."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


class Guard:
    """The ASGI app ``app`` behind the checks above; ``hosts``: the names it answers to besides loopback."""

    def __init__(self, app, hosts: Iterable[str] = (), token: Optional[str] = None):
        self.app = app
        self.hosts = {host_name(h) for h in (*LOOPBACK, *hosts) if h}
        self.token = token
        # cookies are shared by every port of a host: named after the token, two servers keep theirs apart
        self.cookie = "explore_token_" + hashlib.sha256(token.encode()).hexdigest()[:12] if token else None
        self.server_id = secrets.token_hex(8)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.refusal(scope, headers)
        if refusal:
            status, message = refusal
            client = (scope.get("client") or ("?",))[0]
            logger.warning(f"refused {scope['method']} {scope['path']} from {client} (Host {headers.get('host')!r}, "
                           f"Origin {headers.get('origin')!r}): {status} {message}")
            return await respond(send, status, message, self.server_id)
        set_cookie = self.token and self._query_token(scope) and self.cookie
        if scope["method"] == "POST":
            body = await read_body(receive, send, self.server_id)
            if body is None:
                return
            receive = replay(body, receive)

        async def send_marked(message):
            if message["type"] == "http.response.start":
                extra = [(b"x-explore-server", self.server_id.encode())]
                if scope["path"].startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                if set_cookie:
                    extra.append((b"set-cookie", f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict".encode()))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_marked)

    def refusal(self, scope, headers):
        """(status, message) of a request refused, or None."""
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            return 403, (f"this server does not answer for the host {host!r}: start fairseq-wae-explore with "
                         "--allow-host NAME to open it under that name")
        if self.token and not self._has_token(scope, headers):
            return 403, "no valid token: open the URL with ?token= that fairseq-wae-explore printed at its start"
        if scope["method"] not in ("GET", "HEAD", "POST"):
            return 405, f"{scope['method']} is not answered here"
        if scope["method"] != "POST":
            return None
        origin = headers.get("origin") or _origin_of(headers.get("referer", ""))
        if not origin or urlsplit(origin).scheme not in ("http", "https") or urlsplit(origin).netloc.lower() != host.lower():
            return 403, f"a POST is answered for this server's own page only, not for the origin {origin!r}"
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return 415, "send the page's fields as JSON (Content-Type: application/json)"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return 413, f"the request body is over {MAX_BODY_BYTES:,} bytes"
        return None

    def _query_token(self, scope) -> bool:
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def _has_token(self, scope, headers) -> bool:
        cookies = dict(part.strip().split("=", 1) for part in headers.get("cookie", "").split(";") if "=" in part)
        given = headers.get("x-explore-token") or cookies.get(self.cookie, "")
        return self._query_token(scope) or (bool(given) and hmac.compare_digest(given.encode(), self.token.encode()))


def _origin_of(url: str) -> Optional[str]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


async def read_body(receive, send, server_id: str) -> Optional[bytes]:
    """The request body, counted as it comes (a chunked body has no Content-Length): None when it went over
    ``MAX_BODY_BYTES``, after answering 413."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            logger.warning(f"refused a request body over {MAX_BODY_BYTES:,} bytes (413)")
            await respond(send, 413, f"the request body is over {MAX_BODY_BYTES:,} bytes", server_id)
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def replay(body: bytes, receive):
    """``receive`` for the app: the body read already, then what the connection says (its disconnect)."""
    sent = False

    async def replayed():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def respond(send, status: int, message: str, server_id: str):
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"x-explore-server", server_id.encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
