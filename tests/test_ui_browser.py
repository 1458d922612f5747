"""The web UI in a real headless Chromium against real gunicorn with the real model.

Debian's `chromium` (`scripts/install_tools.sh chromium`, which `make test` runs) driven by
Playwright for Python with that browser as its executable; Playwright's own browser downloads
are never used. Each test opens a fresh page (sessionStorage, so the token, is per page) in one
browser with a fresh profile, against one gunicorn whose image repository lives in a temporary
DATA_DIR.

The tests do what a person would: type the token, pick dog.jpg and bus.jpg with the file input,
see the boxes and the table rows, move the score slider, upload to the repository, filter by
`person`, open a photo and delete it. A photo named `<img src=x onerror=alert(1)>.jpg` must show
as text: no element made from it, no dialog, no Content-Security-Policy violation. Each screen's
screenshot is written to build/ui-screenshots/ (git-ignored), or to UI_SCREENSHOT_DIR:
`make ui-screenshots` runs these tests with it set to docs/ui/, the pictures docs/ui.md shows,
so that a test run never changes the checkout.

Waits are for states of the page (an element, a count, a text), never for a time.
"""

from __future__ import annotations

import io
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import (
    BrowserContext,
    FilePayload,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.helpers import REPO_ROOT, shared_image
from tests.live_server import LiveServer, live_gunicorn

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDE = ViewportSize(width=1280, height=800)
NARROW = ViewportSize(width=360, height=740)
SCREENSHOTS = Path(os.environ.get("UI_SCREENSHOT_DIR") or REPO_ROOT / "build" / "ui-screenshots")
TOKEN = f"ui-{secrets.token_hex(8)}"
# A file name that is markup: shown as text, it creates nothing.
HOSTILE_NAME = "<img src=x onerror=alert(1)>.jpg"
# Recorded in the page from its first script on: CSP violations and uncaught errors.
WATCH_SCRIPT = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__violations.push(event.violatedDirective + ' ' + event.blockedURI);
});
"""
# Playwright's waits time out after this many milliseconds (a loaded 2-core machine).
WAIT_MS = 60_000


def save_screenshot(page: Page, name: str, full_page: bool = False) -> Path:
    """The page as a PNG in SCREENSHOTS, in 256 colours (a tenth of the size, text still sharp)."""
    picture = Image.open(io.BytesIO(page.screenshot(full_page=full_page))).convert("RGB")
    path = SCREENSHOTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True
    )
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("ui-gunicorn")
    env = {"DATA_DIR": str(folder / "data")}
    with live_gunicorn(folder, [TOKEN], extra_env=env) as live:
        yield live


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: run scripts/install_tools.sh chromium (as root)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=WIDE,
            accept_downloads=True,
        )
        context.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        context.add_init_script(WATCH_SCRIPT)
        try:
            yield context
        finally:
            context.close()


class Watched:
    """A page with what it did recorded: dialogs opened, uncaught errors."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("() => window.__violations")
        return found

    def assert_clean(self) -> None:
        assert self.dialogs == []
        assert self.errors == []
        assert self.violations() == []


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Watched]:
    opened = browser.new_page()
    opened.set_viewport_size(WIDE)
    try:
        yield Watched(opened)
    finally:
        opened.close()


def open_ui(watched: Watched, server: LiveServer, screen: str = "try") -> Page:
    """The page at #/screen, with the token typed into its prompt."""
    page = watched.page
    page.goto(f"{server.url}ui/#/{screen}")
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    expect(page.locator("#token-dialog")).to_be_hidden()
    return page


def api(
    server: LiveServer, method: str, path: str, token: str = TOKEN, **kwargs: Any
) -> requests.Response:
    """The same call with requests, to compare the page with the API's own answer."""
    url = server.url + path.lstrip("/")
    return requests.request(method, url, headers={"X-Api-Token": token}, timeout=60, **kwargs)


# --- the token ----------------------------------------------------------------------------------


def test_token_is_asked_for_and_a_wrong_one_shows_the_apis_message(
    page: Watched, server: LiveServer
) -> None:
    browser_page = page.page
    browser_page.goto(f"{server.url}ui/")
    dialog = browser_page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    expect(browser_page.locator("#token-input")).to_be_focused()
    browser_page.fill("#token-input", "not-the-token")
    browser_page.keyboard.press("Enter")
    expected = api(server, "GET", "/v1/models", token="not-the-token")
    assert expected.status_code == 401
    message = expected.json()["error"]["message"]
    expect(browser_page.locator("#token-error")).to_have_text(message)
    save_screenshot(browser_page, "token.png")
    browser_page.fill("#token-input", TOKEN)
    browser_page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(browser_page.locator("#token-status")).to_have_text("Token set")
    # Kept for this tab: a reload asks no more.
    browser_page.reload()
    expect(browser_page.locator("#try-model option")).not_to_have_count(0)
    expect(dialog).to_be_hidden()
    # A token the service no longer takes: the first call's 401 brings the prompt back, with
    # the API's message.
    browser_page.evaluate("() => sessionStorage.setItem('detection-service-token', 'revoked')")
    browser_page.reload()
    expect(dialog).to_be_visible()
    expect(browser_page.locator("#token-error")).to_have_text(message)
    browser_page.fill("#token-input", TOKEN)
    browser_page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    # Forgotten: asked again.
    browser_page.click("#token-forget")
    expect(dialog).to_be_visible()
    page.assert_clean()


# --- try it -------------------------------------------------------------------------------------


def test_try_it_draws_boxes_lists_them_and_the_score_slider_removes_them(
    page: Watched, server: LiveServer
) -> None:
    browser_page = open_ui(page, server)
    dog, bus = shared_image("dog.jpg"), shared_image("bus.jpg")
    browser_page.set_input_files("#try-files", [str(dog), str(bus)])
    dog_card = browser_page.locator("article.result[data-file='dog.jpg']")
    bus_card = browser_page.locator("article.result[data-file='bus.jpg']")
    for card, expected in ((dog_card, {"dog", "bicycle", "car"}), (bus_card, {"bus", "person"})):
        rows = card.locator("table.detections tbody tr[data-label]")
        expect(rows.first).to_be_visible()
        found = set(rows.evaluate_all("rows => rows.map(row => row.dataset.label)"))
        assert expected <= found, found
        # One drawn box per row, each inside the picture.
        boxes = card.locator(".stage .box")
        expect(boxes).to_have_count(rows.count())
        picture = card.locator(".stage img").bounding_box()
        assert picture is not None
        for index in range(boxes.count()):
            box = boxes.nth(index).bounding_box()
            assert box is not None
            assert box["width"] > 4
            assert box["height"] > 4
            assert picture["x"] - 1 <= box["x"] <= picture["x"] + picture["width"]
            assert picture["y"] - 1 <= box["y"] <= picture["y"] + picture["height"]
        expect(card.locator(".timings dt")).not_to_have_count(0)
    dog_boxes = dog_card.locator(".box")
    assert set(dog_boxes.evaluate_all("b => b.map(x => x.dataset.label)")) >= {"dog", "bicycle"}
    save_screenshot(browser_page, "try.png")

    # The request as curl names the files and the settings.
    browser_page.click("summary")
    browser_page.click("#copy-curl")
    curl = browser_page.locator("#copy-text").text_content() or ""
    assert "/v1/detect" in curl
    assert "image=@dog.jpg" in curl
    assert "image=@bus.jpg" in curl
    assert "score_th=" in curl
    assert TOKEN not in curl

    # The score slider, by keyboard, to its top (1.00): every box goes.
    slider = browser_page.locator("#score_th")
    slider.focus()
    browser_page.keyboard.press("End")
    expect(browser_page.locator("#score_th-value")).to_have_text("1.00")
    expect(browser_page.locator(".result .box")).to_have_count(0)
    expect(dog_card.locator("tr.none")).to_have_count(1)
    # Down again: the boxes come back.
    browser_page.keyboard.press("Home")
    expect(dog_card.locator(".box").first).to_be_visible()

    # On a phone's width nothing is wider than the screen.
    browser_page.set_viewport_size(NARROW)
    browser_page.keyboard.press("End")
    expect(browser_page.locator(".result .box")).to_have_count(0)
    browser_page.click("#try-defaults")
    expect(browser_page.locator("#score_th-value")).to_have_text("0.30")
    expect(dog_card.locator(".box").first).to_be_visible()
    width = browser_page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= NARROW["width"]
    dog_card.scroll_into_view_if_needed()
    save_screenshot(browser_page, "try-narrow.png")
    page.assert_clean()


def test_an_image_the_api_refuses_shows_the_apis_message(page: Watched, server: LiveServer) -> None:
    browser_page = open_ui(page, server)
    junk = b"\xff\xd8\xff\xe0 this is no JPEG"
    expected = api(server, "POST", "/v1/detect", files={"image": ("broken.jpg", junk)})
    body = expected.json()
    message = (body.get("error") or body["responses"][0]["error"])["message"]
    broken = FilePayload(name="broken.jpg", mimeType="image/jpeg", buffer=junk)
    browser_page.set_input_files("#try-files", [broken])
    card = browser_page.locator("article.result[data-file='broken.jpg']")
    expect(card.locator(".error")).to_have_text(message)
    page.assert_clean()


def test_keyboard_reaches_the_screens_with_a_visible_focus(
    page: Watched, server: LiveServer
) -> None:
    browser_page = open_ui(page, server)
    browser_page.keyboard.press("Tab")
    expect(browser_page.locator(".skip")).to_be_focused()
    browser_page.keyboard.press("Tab")
    expect(browser_page.locator("nav a[data-screen='try']")).to_be_focused()
    browser_page.keyboard.press("Tab")
    repository = browser_page.locator("nav a[data-screen='repository']")
    expect(repository).to_be_focused()
    outline = repository.evaluate("link => getComputedStyle(link).outlineStyle")
    assert outline == "solid"
    browser_page.keyboard.press("Enter")
    expect(browser_page.locator("#screen-repository")).to_be_visible()
    expect(repository).to_have_attribute("aria-current", "page")
    # Every control of the page has a name a screen reader says.
    unnamed = browser_page.evaluate(
        """() => [...document.querySelectorAll('input, select, button')]
            .filter((node) => !node.closest('[hidden]'))
            .filter((node) => !(node.labels && node.labels.length)
                && !node.getAttribute('aria-label') && !node.textContent.trim())
            .map((node) => node.id || node.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []
    page.assert_clean()


# --- the repository -----------------------------------------------------------------------------


def as_payload(path: Path) -> FilePayload:
    return FilePayload(name=path.name, mimeType="image/jpeg", buffer=path.read_bytes())


def labels_in_grid(page: Page) -> list[str]:
    names: list[str] = page.locator("#repo-grid .card-name").all_text_contents()
    return names


def test_repository_upload_filter_open_and_delete(page: Watched, server: LiveServer) -> None:
    browser_page = open_ui(page, server, "repository")
    dog, bus = shared_image("dog.jpg"), shared_image("bus.jpg")
    coco = sorted((dog.parent / "coco").glob("*.jpg"))
    if not coco:
        pytest.skip(f"{dog.parent / 'coco'} holds no photo")
    hostile = FilePayload(name=HOSTILE_NAME, mimeType="image/jpeg", buffer=coco[0].read_bytes())
    bmp = FilePayload(name="drawing.bmp", mimeType="image/bmp", buffer=b"BM" + bytes(60))
    refused = api(server, "POST", "/v1/images", files={"image": ("drawing.bmp", bmp["buffer"])})
    assert refused.status_code >= 400
    # Playwright takes either paths or payloads at once: the photos as payloads too.
    photos = [as_payload(dog), as_payload(bus), hostile, bmp]
    browser_page.set_input_files("#repo-files", photos)
    rows = browser_page.locator("#repo-uploads .upload-row")
    expect(rows).to_have_count(4)
    expect(browser_page.locator("#repo-uploads .upload-row.stored")).to_have_count(3)
    failed = browser_page.locator("#repo-uploads .upload-row.failed")
    expect(failed.locator(".upload-state")).to_have_text(refused.json()["error"]["message"])
    # The same file again is marked as a duplicate.
    browser_page.set_input_files("#repo-files", [str(dog)])
    expect(browser_page.locator("#repo-uploads .upload-row.duplicate")).to_have_count(1)
    expect(browser_page.locator("#repo-grid li")).to_have_count(3)
    grid_names = labels_in_grid(browser_page)
    assert sorted(grid_names) == sorted(["dog.jpg", "bus.jpg", HOSTILE_NAME])
    # Newest first: the list answers in the grid's order.
    listed = [image["originalName"] for image in api(server, "GET", "/v1/images").json()["images"]]
    assert grid_names == listed

    # The hostile name is text in the upload list and the grid, and made no element.
    assert browser_page.locator("img[src='x']").count() == 0
    assert browser_page.locator("[onerror]").count() == 0
    expect(browser_page.locator("#repo-grid .card-name", has_text=HOSTILE_NAME)).to_have_count(1)
    expect(browser_page.locator(".upload-name", has_text=HOSTILE_NAME)).to_have_count(1)
    expect(browser_page.locator("#repo-grid img.thumb[src^='blob:']")).to_have_count(3)
    save_screenshot(browser_page, "repository.png", full_page=True)

    # Filter by person: the grid shows what the API finds for label=person, bus.jpg among them.
    person = browser_page.locator("#repo-labels button[data-label='person']")
    person.click()
    expect(person).to_have_attribute("aria-pressed", "true")
    wanted = api(server, "GET", "/v1/images", params={"label": "person"}).json()["images"]
    expect(browser_page.locator("#repo-grid li")).to_have_count(len(wanted))
    assert sorted(labels_in_grid(browser_page)) == sorted(i["originalName"] for i in wanted)
    assert "bus.jpg" in labels_in_grid(browser_page)
    assert "dog.jpg" not in labels_in_grid(browser_page)

    # Open bus.jpg: its stored boxes over it, its details, its detection table.
    browser_page.locator("#repo-grid a.card", has_text="bus.jpg").click()
    expect(browser_page.locator("#screen-photo")).to_be_visible()
    expect(browser_page.locator("#photo-title")).to_have_text("bus.jpg")
    bus_id = browser_page.url.rsplit("/", 1)[1]
    stored = api(server, "GET", f"/v1/images/{bus_id}/detections").json()["runs"][0]
    count = len(stored["localizedObjectAnnotations"])
    assert count > 0
    expect(browser_page.locator("#photo-stage .box")).to_have_count(count)
    expect(browser_page.locator("#photo-detections tbody tr[data-label='bus']")).to_have_count(1)
    expect(browser_page.locator("#photo-facts dt", has_text="Size")).to_have_count(1)
    save_screenshot(browser_page, "photo.png")

    # Detect again (the default model): the same boxes come back, and it says so.
    browser_page.click("#photo-redetect button[type='submit']")
    expect(browser_page.locator("#photo-status")).to_have_text(re.compile("^Detected again with"))
    expect(browser_page.locator("#photo-stage .box")).to_have_count(count)
    # Download: the original's bytes under its original name.
    with browser_page.expect_download() as download_info:
        browser_page.click("#photo-download")
    download = download_info.value
    assert download.suggested_filename == "bus.jpg"
    assert Path(download.path()).read_bytes() == bus.read_bytes()

    # Delete it, after the confirmation: back on the grid without it, and the API says 404.
    browser_page.click("#photo-delete")
    confirm = browser_page.locator("#confirm-dialog")
    expect(confirm).to_be_visible()
    expect(browser_page.locator("#confirm-no")).to_be_focused()
    save_screenshot(browser_page, "delete.png")
    browser_page.click("#confirm-yes")
    expect(browser_page.locator("#screen-repository")).to_be_visible()
    expect(browser_page.locator("#repo-notice")).to_have_text("Deleted “bus.jpg”.")
    expect(browser_page.locator("#repo-grid .card-name", has_text="bus.jpg")).to_have_count(0)
    assert api(server, "GET", f"/v1/images/{bus_id}/details").status_code == 404

    # The hostile photo opens as text too.
    browser_page.locator("#repo-labels button[data-label='person']").click()
    browser_page.locator("#repo-grid a.card", has_text=HOSTILE_NAME).click()
    expect(browser_page.locator("#photo-title")).to_have_text(HOSTILE_NAME)
    assert browser_page.locator("img[src='x']").count() == 0
    page.assert_clean()
