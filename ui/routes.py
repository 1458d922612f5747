"""The web UI's files, served at /ui/: a fixed list of static files (the page, its style sheet,
its icon and its JavaScript modules) with strict security headers. The only module of the
package that knows Flask; `ROUTES` rows join `serve_http.ROUTES` as public routes (the page
needs no token; every API call it makes does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from flask import Response, request

from errors import NotFound

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
# The only files served under /ui/, by name, each with its type. A name that is not a key here
# (`..`, a path, a file not listed) is a 404: nothing but these names is ever joined to
# STATIC_DIR. tests/test_ui.py checks that this is exactly what static/ holds.
UI_FILES: Final[Mapping[str, str]] = {
    "index.html": "text/html",
    "style.css": "text/css",
    "icon.svg": "image/svg+xml",
    "app.js": "text/javascript",
    "api.js": "text/javascript",
    "dom.js": "text/javascript",
    "boxes.js": "text/javascript",
    "token.js": "text/javascript",
    "tryit.js": "text/javascript",
    "repository.js": "text/javascript",
    "photo.js": "text/javascript",
}
# The page's own files and the API only: no inline script or style, no eval, no plugins, no
# framing; pictures also from blob: URLs (photos the page fetched with the token) and data:.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (ETag): a new release is seen at once.
    "Cache-Control": "no-cache",
}


def ui_view(filename: str = "index.html") -> Response:
    mimetype = UI_FILES.get(filename)
    if mimetype is None:
        raise NotFound(f"no file {filename[:80]!r} in the UI; open /ui/")
    response = Response((STATIC_DIR / filename).read_bytes(), mimetype=mimetype)
    response.headers.update(HEADERS)
    response.add_etag()
    response.make_conditional(request)
    return response


View = Callable[..., Response]
# (rule, endpoint, methods, view); `/ui` (no slash) is redirected here by Flask.
ROUTES: Final[tuple[tuple[str, str, tuple[str, ...], View], ...]] = (
    ("/ui/", "ui", ("GET",), ui_view),
    ("/ui/<filename>", "ui_file", ("GET",), ui_view),
)
