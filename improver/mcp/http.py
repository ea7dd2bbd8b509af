"""Serving the MCP server over streamable HTTP, safely (`improver serve --http`).

On loopback the default stands: Host and Origin must be loopback (DNS-rebinding
protection). Any other address exposes the project's traces to the network, so it
needs both a bearer token (``--token`` or ``IMPROVER_MCP_TOKEN``) that every request
must carry, and the Host names clients use to reach it (``--allow-host`` or
``IMPROVER_MCP_ALLOWED_HOSTS``); without them the server refuses to start and says how.
A token given on loopback is enforced there too.
"""
from __future__ import annotations

import hmac
import ipaddress

from improver.errors import ImproverError

TOKEN_ENV = "IMPROVER_MCP_TOKEN"
HOSTS_ENV = "IMPROVER_MCP_ALLOWED_HOSTS"
MIN_TOKEN = 24


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerToken:
    """ASGI middleware: HTTP requests without ``Authorization: Bearer <token>`` get 401."""

    def __init__(self, app, token: str):
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": b"missing or wrong bearer token\n"})
                return
        await self.app(scope, receive, send)


def security(host: str, port: int, token: str | None, allowed_hosts: list[str]):
    """The transport settings for ``host``, or ImproverError saying what a non-loopback bind needs."""
    from mcp.server.transport_security import TransportSecuritySettings

    if token is not None and len(token) < MIN_TOKEN:
        raise ImproverError(f"the bearer token is too short ({len(token)} characters); use at least {MIN_TOKEN}, "
                            "e.g. IMPROVER_MCP_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if is_loopback(host) and not allowed_hosts:
        return TransportSecuritySettings(allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                                         allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
    missing = [what for what, given in (
        (f"a bearer token (--token or {TOKEN_ENV}, e.g. "
         "IMPROVER_MCP_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))'))", token),
        (f"the host names clients use (--allow-host NAME[:PORT], repeatable, or {HOSTS_ENV}=name1,name2)",
         allowed_hosts)) if not given]
    if missing:
        raise ImproverError(f"--http {host}:{port} is reachable from other machines, so the server needs "
                            + " and ".join(missing) + "; or serve on loopback (--http 127.0.0.1:PORT)")
    hosts = [h if ":" in h else f"{h}:{port}" for h in allowed_hosts]
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def serve_http(server, host: str, port: int, token: str | None, allowed_hosts: list[str]) -> None:
    """Run ``server`` (an MCPServer) on streamable HTTP at host:port with the checks above."""
    import anyio
    import uvicorn

    settings = security(host, port, token, allowed_hosts)
    app = server.streamable_http_app(transport_security=settings, host=host)
    if token:
        app = BearerToken(app, token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    anyio.run(uvicorn.Server(config).serve)
