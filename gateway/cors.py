"""Cross-origin calls from the portal's pages: the graph editor's "Try it" panel calls the
gateway from the browser, whose page is on the portal's origin.

The origins allowed are GATEWAY_CORS_ORIGINS (comma-separated), else the portal's own
(PORTAL_URL); set GATEWAY_CORS_ORIGINS to an empty string to answer no browser. A preflight
(OPTIONS) is answered without authentication: it tells the browser which methods and
headers the real request may use, never whether a key or a model exists. A real answer
carries Access-Control-Allow-Origin only for an allowed Origin.

On the hot path a request from an SDK or curl (no Origin) costs a look over the few
headers the server keeps; one with an Origin, a dict lookup of prebuilt headers."""
import os

METHODS = b"POST, GET"
# What the gateway reads of a request (gateway/server.py KEPT), less Origin itself.
HEADERS = b"authorization, content-type, inference-header-content-length"
EXPOSED = b"x-request-id, retry-after, x-quota-warning"
MAX_AGE_S = b"600"


def allowed_origins(configured: str | None, portal_url: str | None) -> frozenset[bytes]:
    """`configured` (GATEWAY_CORS_ORIGINS) when it is set, even empty; else the portal's origin."""
    text = configured if configured is not None else (portal_url or "")
    return frozenset(origin.strip().rstrip("/").encode() for origin in text.split(",") if origin.strip())


def answer_headers(origins: frozenset[bytes]) -> dict[bytes, list]:
    """Origin -> the headers that let a page on it read an answer."""
    return {origin: [(b"access-control-allow-origin", origin), (b"access-control-expose-headers", EXPOSED),
                     (b"vary", b"Origin")] for origin in origins}


def preflight_headers(origins: frozenset[bytes]) -> dict[bytes, list]:
    """Origin -> the headers of the answer to its preflight."""
    return {origin: [(b"access-control-allow-origin", origin), (b"access-control-allow-methods", METHODS),
                     (b"access-control-allow-headers", HEADERS), (b"access-control-max-age", MAX_AGE_S),
                     (b"vary", b"Origin")] for origin in origins}


ORIGINS = allowed_origins(os.environ.get("GATEWAY_CORS_ORIGINS"), os.environ.get("PORTAL_URL"))
ANSWER = answer_headers(ORIGINS)
PREFLIGHT = preflight_headers(ORIGINS)


def request_origin(headers) -> bytes | None:
    for name, value in headers:
        if name == b"origin":
            return value
    return None


def for_answer(headers) -> list | None:
    """The CORS headers to add to an answer, or None (no Origin, or not an allowed one)."""
    origin = request_origin(headers)
    return None if origin is None else ANSWER.get(origin)


def for_preflight(headers) -> list | None:
    """The headers of a preflight's answer, or None when its origin is not allowed."""
    origin = request_origin(headers)
    return None if origin is None else PREFLIGHT.get(origin)
