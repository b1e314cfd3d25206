"""The guard every request to the dashboard passes, in front of the application (an ASGI middleware).

The dashboard shows what a person said to their assistant and can delete it, so it trusts nothing but the
browser of the person who started it:

- **Host.** Only `127.0.0.1:PORT` and `localhost:PORT` are served (400 otherwise). A DNS-rebinding page
  (evil.example resolving to 127.0.0.1) reaches the port, but its requests carry its own Host name.
- **Token.** `serve` prints a URL with a random per-launch token (`secrets.token_urlsafe`). The token is
  accepted once, on a GET (a HEAD, as a link preview sends, does not spend it): that request gets a
  session cookie (HttpOnly, SameSite=Strict, named after the port, since cookies do not tell ports apart)
  and a redirect to the same page without the token, so the token leaves the address bar and the history.
  Any later use of the token, and every request without the cookie, is 403.
- **CSRF.** Every request other than GET or HEAD must be a POST carrying the per-launch CSRF token, which
  the page embeds, in the `X-CSRF-Token` header (403 otherwise). A request whose Origin header is not the
  dashboard's own is refused too. No CORS header is ever sent, so no other origin can read a response.
- **Headers** on every response, refusals included: `Cache-Control: no-store` (a forgotten text must not stay
  in the browser's cache), a Content-Security-Policy that allows only the dashboard's own scripts, styles
  and images (no inline script, no framing, no form posts elsewhere), no Referer, no MIME sniffing.
"""

from __future__ import annotations

import secrets
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlencode

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"cache-control", b"no-store, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD")


def same(a: str | None, b: str) -> bool:
    """Constant-time equality of a received secret with the expected one (None never matches)."""
    return a is not None and secrets.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode())


class Secrets:
    """The per-launch secrets: the one-time URL token, the session cookie's value, the CSRF token."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(32)
        self.session = secrets.token_urlsafe(32)
        self.csrf = secrets.token_urlsafe(32)
        self.token_used = False


class Guard:
    """ASGI middleware enforcing the rules above for an app served on 127.0.0.1:`port`."""

    def __init__(self, app, port: int, keys: Secrets) -> None:
        self.app = app
        self.keys = keys
        self.hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        self.origins = {f"http://{h}" for h in self.hosts}
        self.cookie = f"af_dashboard_{port}"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets here
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        if headers.get("host") not in self.hosts:
            await self._refuse(send, 400, "This dashboard answers only at 127.0.0.1 or localhost on its own port "
                                          "(the Host header was not one of them).")
            return
        if "origin" in headers and headers["origin"] not in self.origins:
            await self._refuse(send, 403, "Requests from another site are refused.")
            return
        if not same(self._cookie(headers), self.keys.session):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            token = (query.get("token") or [None])[0]
            if method == "GET" and not self.keys.token_used and same(token, self.keys.token):
                self.keys.token_used = True
                await self._enter(scope, send, query)
                return
            await self._refuse(send, 403, "Open the dashboard with the link `assistant-forget serve` printed; the "
                                          "link works once, in one browser (restart the server for a new link).")
            return
        if method not in SAFE_METHODS:
            if method != "POST":
                await self._refuse(send, 405, "Only GET and POST are served.")
                return
            if not same(headers.get(CSRF_HEADER), self.keys.csrf):
                await self._refuse(send, 403, "A change needs the page's CSRF token; reload the dashboard and try "
                                              "again.")
                return
        await self.app(scope, receive, self._with_headers(send))

    def _cookie(self, headers: dict[str, str]) -> str | None:
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(self.cookie)
        return morsel.value if morsel is not None else None

    async def _enter(self, scope, send, query: dict) -> None:
        """The token's one use: set the session cookie and redirect to the same URL without the token."""
        rest = {k: v for k, v in query.items() if k != "token"}
        location = scope.get("path", "/") + (("?" + urlencode(rest, doseq=True)) if rest else "")
        cookie = f"{self.cookie}={self.keys.session}; HttpOnly; SameSite=Strict; Path=/"
        await send({"type": "http.response.start", "status": 303,
                    "headers": HEADERS + [(b"location", location.encode()), (b"set-cookie", cookie.encode()),
                                          (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _refuse(send, status: int, message: str) -> None:
        body = (message + "\n").encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": HEADERS + [(b"content-type", b"text/plain; charset=utf-8"),
                                          (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _with_headers(send):
        async def wrapped(message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in HEADERS}
                message = {**message, "headers": [(k, v) for k, v in message.get("headers", [])
                                                  if k.lower() not in names] + HEADERS}
            await send(message)
        return wrapped
