"""The sidecar's HTTP API: a small asyncio + httptools server and the routes over a PKGManager."""

from evaluator_sidecar.sidecar.http.api import ROUTES, SidecarAPI, error_body
from evaluator_sidecar.sidecar.http.protocol import HTTPServer, Request, Response

__all__ = ["ROUTES", "HTTPServer", "Request", "Response", "SidecarAPI", "error_body", "serve_api"]


async def serve_api(api: SidecarAPI, host: str, port: int, max_body_bytes: int) -> HTTPServer:
    """Start serving ``api``; returns the server (``server.close()`` stops it)."""
    server = HTTPServer(api, max_body_bytes=max_body_bytes, error_body=error_body)
    server.port = await server.start(host, port)
    return server
