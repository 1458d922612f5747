"""The web UI's files as the service serves them (Flask test client), and the rules its sources
keep: no HTML built from strings, no inline script or style, only modules of its own.

The page's behaviour in a real browser is tests/test_ui_browser.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.helpers import AUTH, REPO_ROOT
from ui import routes as ui_routes

UI_DIR = REPO_ROOT / "ui" / "static"
SCRIPTS = sorted(name for name, kind in ui_routes.UI_FILES.items() if kind == "text/javascript")
# What each header must say on every UI file.
REQUIRED_CSP = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "frame-ancestors 'none'",
    "object-src 'none'",
    "base-uri 'none'",
)


def test_ui_files_are_exactly_the_files_in_ui() -> None:
    # A file added to ui/static/ but not to the list is never served; one listed but missing
    # is a 500.
    on_disk = sorted(p.name for p in UI_DIR.iterdir() if p.is_file())
    assert sorted(ui_routes.UI_FILES) == on_disk


@pytest.mark.parametrize(
    ("path", "file", "mimetype"),
    [
        pytest.param("/ui/", "index.html", "text/html", id="page"),
        *(
            pytest.param(f"/ui/{name}", name, kind, id=name)
            for name, kind in ui_routes.UI_FILES.items()
        ),
    ],
)
def test_each_file_is_served_without_a_token_with_its_type_and_headers(
    client: FlaskClient, path: str, file: str, mimetype: str
) -> None:
    response = client.get(path)  # no token: the page is public
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.data == (UI_DIR / file).read_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = response.headers["Content-Security-Policy"]
    for directive in REQUIRED_CSP:
        assert directive in policy, directive
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_etag_gives_304(client: FlaskClient) -> None:
    first = client.get("/ui/app.js")
    etag = first.headers["ETag"]
    again = client.get("/ui/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""


def test_ui_without_slash_redirects_to_the_page(client: FlaskClient) -> None:
    response = client.get("/ui")
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/ui/")


@pytest.mark.parametrize(
    "path",
    [
        # Out of ui/ to the service's code: the name is no key of the list.
        pytest.param("/ui/..%2Fserve_http.py", id="encoded-slash"),
        pytest.param("/ui/%2e%2e%2fserve_http.py", id="encoded-dots"),
        pytest.param("/ui/..", id="dots"),
        pytest.param("/ui/../serve_http.py", id="dots-then-file"),
        pytest.param("/ui/..\\serve_http.py", id="backslash"),
        pytest.param("/ui/%2Fetc%2Fpasswd", id="absolute"),
        pytest.param("/ui/sub/app.js", id="sub-folder"),
        # In ui/'s folder but not the UI's: the list is the only way in.
        pytest.param("/ui/.gitignore", id="hidden"),
        pytest.param("/ui/missing.js", id="unknown"),
        pytest.param("/ui/INDEX.HTML", id="other-case"),
    ],
)
def test_anything_else_is_a_json_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["error"]["reason"] == "not_found"
    assert b"import " not in response.data  # nothing of a Python file


def test_the_api_still_needs_the_token(client: FlaskClient) -> None:
    # The page is public; what it shows is not.
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers=AUTH).status_code == 200


# --- the sources --------------------------------------------------------------------------------

# Ways to turn a string into markup or code; user data (file names, labels, EXIF) only ever
# becomes text nodes (ui/static/dom.js).
FORBIDDEN_SINKS = (
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "eval(",
    "new Function",
    "setAttribute('on",
    'setAttribute("on',
    "srcdoc",
    "javascript:",
)


@pytest.mark.parametrize("name", SCRIPTS, ids=str)
def test_scripts_build_no_html_from_strings(name: str) -> None:
    source = (UI_DIR / name).read_text(encoding="utf-8")
    found = [sink for sink in FORBIDDEN_SINKS if sink in source]
    assert found == [], f"{name} uses {found}"


@pytest.mark.parametrize("name", SCRIPTS, ids=str)
def test_scripts_import_only_modules_of_the_ui(name: str) -> None:
    # No CDN, no bare package names (there is no build step to resolve them).
    source = (UI_DIR / name).read_text(encoding="utf-8")
    imported = re.findall(r"^import .*? from '([^']+)';", source, flags=re.MULTILINE | re.DOTALL)
    assert all(
        target.startswith("./") and target[2:] in ui_routes.UI_FILES for target in imported
    ), imported
    assert "http://" not in source
    assert "https://" not in source


class _PageParts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.script_sources: list[str] = []
        self.styles = 0
        self.handlers: list[str] = []
        self.style_attributes = 0
        self.references: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        self.style_attributes += "style" in values
        for name in ("src", "href"):
            value = values.get(name)
            if value is not None and tag != "a":
                self.references.append(value)
        if tag == "script":
            self._in_script = True
            if values.get("src"):
                self.script_sources.append(values["src"] or "")
        if tag == "style":
            self.styles += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


def test_page_has_no_inline_script_style_or_handler() -> None:
    parts = _PageParts()
    parts.feed((UI_DIR / "index.html").read_text(encoding="utf-8"))
    assert parts.script_sources == ["app.js"]
    assert parts.inline_scripts == 0
    assert parts.styles == 0
    assert parts.style_attributes == 0
    assert parts.handlers == []
    # Every file the page loads is one the service serves.
    assert all(reference in ui_routes.UI_FILES for reference in parts.references), parts.references


def test_docs_show_a_screenshot_of_each_screen() -> None:
    text = (REPO_ROOT / "docs" / "ui.md").read_text(encoding="utf-8")
    shown = re.findall(r"!\[[^\]]*\]\((ui/[^)]+\.png)\)", text)
    assert shown, "docs/ui.md shows no screenshot"
    for relative in shown:
        assert Path(REPO_ROOT / "docs" / relative).is_file(), relative
