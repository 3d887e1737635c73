"""report.html renders in a real browser: headless Chromium draws it, and every picture in it loads.

Skipped (with the reason) where no Chromium or Chrome binary is installed; the project never depends on one.
"""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from beam_jobs.cli import main
from tests.fixtures import make_folder

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Appended to a copy of the page: once everything has loaded, lists each <img> with its load state.
PROBE = """<script>window.addEventListener("load", () => { const p = document.createElement("pre"); p.id = "probe";
p.textContent = JSON.stringify([...document.images].map(i => [i.getAttribute("src"), i.complete, i.naturalWidth]));
document.body.appendChild(p); });</script>"""


def _browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip(f"no headless browser to render report.html (looked for {', '.join(BROWSERS)})")
    return found


def _chrome(browser: str, profile, *args: str) -> str:
    flags = ["--headless", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={profile}", *(["--no-sandbox"] if os.geteuid() == 0 else [])]  # fmt: skip
    done = subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _images(browser: str, profile, report) -> list[list]:
    """Loads a copy of the report beside it (same relative paths) and returns [src, complete, naturalWidth]s."""
    probe = report.with_name("probe.html")
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chrome(browser, profile, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(found.group(1))


def _colourful_share(png) -> float:
    """Share of pixels that are clearly coloured (the charts and photos; text and page are grey or white)."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 40).mean())


def test_report_renders_in_headless_chromium_with_every_picture(tmp_path):
    browser = _browser()
    out = tmp_path / "out"
    source = make_folder(tmp_path / "src", size=(96, 128))
    assert main(["run", "--source", str(source), "--output", str(out), "--copies", "3", "--no-progress"]) == 0
    report, profile = out / "report.html", tmp_path / "profile"
    tags = re.findall(r"<img src='([^']+)'|<img src=\"([^\"]+)\"", report.read_text())
    assert len(tags) == 1 + 3  # the class chart and one sample sheet per class

    images = _images(browser, profile, report)
    assert sorted(src for src, _, _ in images) == sorted(a or b for a, b in tags)
    assert all(complete and width > 0 for _, complete, width in images), images

    shot = tmp_path / "report.png"
    _chrome(browser, profile, f"--screenshot={shot}", "--window-size=1400,2000", report.as_uri())
    page = Image.open(shot)
    assert page.size == (1400, 2000)
    assert np.asarray(page.convert("L")).std() > 20  # not a blank page
    drawn = _colourful_share(shot)
    assert drawn > 0.02, drawn

    # The checks can fail: with one picture gone, the browser reports it unloaded and draws less colour.
    (out / "report" / "samples_001.png").unlink()
    broken = {src: width for src, _, width in _images(browser, profile, report)}
    assert broken["report/samples_001.png"] == 0 and broken["report/samples_000.png"] > 0
    _chrome(browser, profile, f"--screenshot={shot}", "--window-size=1400,2000", report.as_uri())
    assert _colourful_share(shot) < drawn
