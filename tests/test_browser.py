"""Notebook 1 in a real browser: Voilà serves it on 127.0.0.1, Playwright drives Debian's
headless Chromium (launched by path, no browser download): upload, Denoise, results."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("HISTDENOISE_ARTIFACTS", REPO / "artifacts"))
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-first-run",
    "--mute-audio",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium here: the browser test needs Debian's (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def voila(tmp_path):
    """Voilà serving a copy of notebook 1 from a scratch folder; yields its URL."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "notebooks" / "01_denoise.ipynb", work)
    port = free_port()
    env = {**os.environ, "HISTDENOISE_HOME": str(tmp_path / "cache")}
    env.pop("HISTDENOISE_REGISTRY", None)
    with open(tmp_path / "voila.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", "01_denoise.ipynb", "--no-browser",
             f"--port={port}", "--Voila.ip=127.0.0.1"],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(url, timeout=5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        tail = (tmp_path / "voila.log").read_text()[-2000:]
                        raise RuntimeError(f"Voilà did not start:\n{tail}") from None
                    time.sleep(0.5)
            yield url, work
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_upload_denoise_and_see_results_in_chromium(tmp_path, request):
    browser_path = chromium()  # skips, saying why, before Voilà starts
    from playwright.sync_api import expect, sync_playwright

    url, work = request.getfixturevalue("voila")
    t = np.arange(2 * 44100) / 44100
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)
    upload = tmp_path / "side A (take 2).wav"
    sf.write(upload, np.stack([tone, 0.8 * tone], axis=1), 44100, subtype="PCM_16")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=180_000)
            button = page.get_by_role("button", name="Denoise")
            expect(button).to_be_visible(timeout=180_000)
            with page.expect_file_chooser() as chooser:
                page.get_by_role("button", name="Upload").click()
            chooser.value.set_files(str(upload))
            expect(page.get_by_text("Upload (1)")).to_be_visible(timeout=30_000)
            button.click()
            expect(page.get_by_text("Done: 1 file(s)")).to_be_visible(timeout=240_000)
            expect(page.locator("audio")).to_have_count(3)
            images = page.locator(".widget-image, img")
            expect(images.first).to_be_visible()
            assert page.locator("img").count() >= 1
            expect(page.get_by_text("side A (take 2).wav").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "browser_notebook1.png"), full_page=True)
        finally:
            browser.close()
    out = work / "denoised" / "side A (take 2)_denoised.wav"
    assert sf.info(str(out)).frames == 2 * 44100 and sf.info(str(out)).channels == 2
