"""The HTML report: files and links on disk, then the real pages in headless Chromium (DevTools protocol)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.report import build_report
from engine.run import main as cli
from schemas import CaptionRow, stable_id
from tests.helpers_audit import LINEAGE, DatasetRows, add_clip, add_object, healthy_dataset, square_masks

LONG_CAPTION = ("The red square glides from the left edge toward the centre, pauses beside the blue square, "
                "then slides away again while the camera holds still " * 3
                + "(source: https://example.org/a/very/long/path/without/any/breaking/opportunity/whatsoever/"
                  "clip-0001-red-square-and-blue-square-sliding-across-a-gradient.mp4)")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1400", "--remote-debugging-port=0", "--remote-allow-origins=*"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A dataset with one flickering, rejected object (so mask_quality warns) and its report."""
    base = tmp_path_factory.mktemp("report")
    data = healthy_dataset(base / "ds", clips=5)
    flicker = square_masks(10, 10, 24, 2, 0)
    flicker[5::2] = square_masks(10, 10, 6, 2, 0)[5::2]
    add_object(data, data.clips[0].clip_id, "flickering blob", flicker, verdict="reject")
    lost = add_clip(data, 9, ["green square"])
    data.tables["clips"][-1] = lost.model_copy(update={"video_path": "videos/gone.mp4"})
    wordy = data.clips[1]  # a manifest-like caption that is long, with an unbroken URL in it
    data.tables["clips"][1] = wordy.model_copy(update={"caption": LONG_CAPTION})
    for kind in ("refined_detailed", "refined_short"):
        data.add("captions", CaptionRow.build(
            LINEAGE, caption_id=stable_id("cap", wordy.clip_id, kind), clip_id=wordy.clip_id,
            object_id=stable_id("obj", wordy.clip_id, "red square", "0"), kind=kind,
            text=f"{kind}: " + LONG_CAPTION, source="refiner"))
    data.write()
    return build_report(data.root, base / "site", clips=20).parent


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value and not value.startswith(("data:", "#", "http")):
                self.refs.append(value.split("#")[0])


def test_site_files_and_links_resolve(site):
    pages = [site / "index.html", site / "gallery.html", *sorted((site / "checks").glob("*.html"))]
    assert len(pages) >= 15
    for page in pages:
        parser = _Refs()
        parser.feed(page.read_text())
        for ref in parser.refs:
            assert (page.parent / ref).resolve().is_file(), f"{page.name} links to missing {ref}"
    index = (site / "index.html").read_text()
    assert 'href="checks/mask_quality.html#examples"' in index  # a warning check links to its example rows
    mask_page = (site / "checks" / "mask_quality.html").read_text()
    assert "flickering blob" in mask_page and "CREATE OR REPLACE TEMP TABLE mask_stats" in mask_page
    assert len(list((site / "plots").glob("*.png"))) == 6


def test_gallery_shows_annotations_and_survives_a_missing_video(site):
    gallery = (site / "gallery.html").read_text()
    assert gallery.count('<article class="card"') == 6
    assert "no preview" in gallery and "gone.mp4" in gallery
    assert gallery.count("&#10003;") == 30  # one marked answer per MCQ (5 clips x 6 categories)
    assert "flickering blob" in gallery and 'class="verdict reject"' in gallery
    previews = sorted((site / "previews").glob("*.webp"))
    assert len(previews) == 5
    with Image.open(previews[0]) as image:
        assert image.n_frames == 12 and image.size == (128, 96)
        image.seek(0)
        frame = np.asarray(image.convert("RGB"))
    # the first object's tint (red, alpha 0.45 over the red square) is visible in the frame
    assert (np.abs(frame.astype(int) - (240, 60, 60)).sum(axis=2) < 60).sum() > 100


def test_gallery_shows_every_caption_of_a_clip_with_its_kind(site):
    gallery = (site / "gallery.html").read_text()
    card = next(c for c in gallery.split('<article class="card"') if "very/long/path" in c)
    kinds = re.findall(r'<li data-kind="(\w+)">', card)
    assert kinds == ["source", "motion", "object_detailed", "object_detailed", "refined_detailed",
                     "refined_short"], kinds  # clip-level first, then each object (blue, red) from raw to refined
    assert card.count("very/long/path") == 3  # the source caption and both refined ones, in full
    assert '<span class="kind" title="written by test">object_detailed &middot; blue square</span>' in card
    assert '<span class="kind" title="written by virtual">source &middot; virtual</span>' in card  # clip level: who wrote it


def test_plots_count_in_whole_numbers_and_keep_caption_kinds_apart(site, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engine.audit import AuditDatabase
    from engine.report import plots

    db = AuditDatabase(site.parent / "ds")
    try:
        panels = {name: (panel, panel.query(db)) for name, _, panel in plots._PANELS}
    finally:
        db.close()
    panel, records = panels["questions_per_video"]
    assert all(float(r["bin"]).is_integer() and float(r["width"]).is_integer() for r in records)
    for name, (panel, records) in panels.items():
        fig, ax = plt.subplots()
        panel.draw(ax, records)
        plots._whole_numbers(ax, panel.integer_axes)
        fig.canvas.draw()
        for axis in panel.integer_axes:
            ticks = getattr(ax, f"get_{axis}ticks")()
            assert all(float(t).is_integer() for t in ticks), (name, axis, ticks)
        if name == "caption_lengths":  # one row per kind: four kinds of equal length are four rows
            labels = [t.get_text().split(" (")[0] for t in ax.get_yticklabels()]
            assert labels == ["motion", "object_detailed", "refined_detailed", "refined_short"]
            rows = {round(y) for c in ax.collections for y in c.get_offsets()[:, 1]}
            assert rows == {1, 2, 3, 4}
        plt.close(fig)


def test_report_of_a_partial_dataset(tmp_path, capsys):
    data = DatasetRows(tmp_path / "ds")
    add_clip(data, 0, [])
    data.tables = {"clips": data.tables["clips"]}
    data.write()
    assert cli(["report", "--dataset", str(data.root), "--to", str(tmp_path / "site")]) == 0
    assert "report written:" in capsys.readouterr().out
    index = (tmp_path / "site" / "index.html").read_text()
    assert "no data" in index and "n/a" in index


# ----- a real browser -----
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, capture_output=True,
                       timeout=900)
        found = shutil.which("chromium")
        if found:
            return found
    pytest.skip("chromium is not installed and `apt-get install chromium` was not possible here (needs root and apt)")


class Browser:
    """Headless Chromium driven over the DevTools protocol; collects console errors and failed loads."""

    def __init__(self, profile: Path):
        import websocket

        self.process = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._port(profile)
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def _port(self, profile: Path) -> int:
        marker = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def problems(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.loadingFailed":
                found.append(f"load failed: {params.get('errorText')}")
        return found

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    pytest.importorskip("websocket", reason="websocket-client is in the dev extra")
    chromium()
    instance = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield instance
    instance.close()


_BROKEN_IMAGES = "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"


def test_pages_load_in_chromium_without_errors(site, browser):
    for page in ["index.html", "gallery.html", "checks/mask_quality.html", "checks/blind_filter.html"]:
        browser.open((site / page).as_uri())
        assert browser.problems() == [], page
        assert browser.evaluate(_BROKEN_IMAGES) == [], page
        assert browser.evaluate("document.styleSheets.length") == 1, page
    browser.open((site / "index.html").as_uri())
    assert browser.evaluate("document.images.length") == 6
    assert browser.evaluate("document.querySelectorAll('tr.warn').length") >= 1


def test_overview_screenshot_is_not_blank(site, browser, tmp_path):
    browser.open((site / "index.html").as_uri())
    png = browser.screenshot()
    (site / "overview.png").write_bytes(png)  # kept beside the site for a look
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert pixels.shape[1] == 1280
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # text, status badges, plots


# Elements whose box leaves their card (or plot frame), and how far the page scrolls sideways.
_OVERFLOW = """(() => {
  const out = [];
  for (const box of document.querySelectorAll('.card, .plots figure, .count')) {
    const outer = box.getBoundingClientRect();
    for (const el of box.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.left < outer.left - 1 || r.right > outer.right + 1)
        out.push(`${el.tagName}.${el.className} ${Math.round(r.left)}-${Math.round(r.right)} outside `
                 + `${Math.round(outer.left)}-${Math.round(outer.right)}`);
    }
  }
  return {outside: out, sideways: document.documentElement.scrollWidth - window.innerWidth,
          boxes: document.querySelectorAll('.card, .plots figure').length};
})()"""


@pytest.mark.parametrize("page, boxes", [("index.html", 6), ("gallery.html", 6)])
def test_screenshots_show_nothing_outside_its_card(site, browser, page, boxes):
    browser.open((site / page).as_uri())
    png = browser.screenshot()
    (site / page.replace(".html", ".png")).write_bytes(png)  # kept beside the site for a look
    found = browser.evaluate(_OVERFLOW)
    assert found["boxes"] == boxes
    assert found["outside"] == [], found["outside"][:5]
    assert found["sideways"] <= 0
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert pixels.shape[1] == 1280 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200


def test_gallery_filters_in_the_browser(site, browser):
    browser.open((site / "gallery.html").as_uri())
    visible = "document.querySelectorAll('.card:not([hidden])').length"
    assert browser.evaluate(visible) == 6
    choose = ("(() => {{ const s = document.querySelector('select[name={0}]'); s.value = {1!r}; "
              "s.dispatchEvent(new Event('change', {{bubbles: true}})); }})()")
    browser.evaluate(choose.format("labels", "flickering blob"))
    assert browser.evaluate(visible) == 1
    browser.evaluate(choose.format("labels", ""))
    browser.evaluate(choose.format("verdicts", "accept"))
    assert browser.evaluate(visible) == 6  # the missing-video clip has accepted objects too
    browser.evaluate(choose.format("categories", "RC"))
    assert browser.evaluate(visible) == 5
    assert browser.evaluate("document.getElementById('shown').textContent") == "5 of 6 clips"
    assert browser.problems() == []
