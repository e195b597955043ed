"""The exploration page of `elmo serve --reference`: its API in-process, and the page in a real Chromium.

The browser test drives the Debian `chromium` (or any Chromium on PATH) through Playwright; it is
skipped, saying why, where Playwright or a Chromium executable is missing. Every request the page
makes must go to the service itself (no CDN).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'elmo-lm[serve]'")
httpx = pytest.importorskip("httpx", reason="the serve extra is not installed: pip install 'elmo-lm[serve]'")

from conftest import PROJECT_ROOT  # noqa: E402
from elmo_lm import Embedder  # noqa: E402
from elmo_lm.serve import Explorer, ServeSettings, create_app  # noqa: E402
from elmo_lm.tasks.folder import save_head  # noqa: E402
from elmo_lm.tasks.heads import HeadConfig, build_head  # noqa: E402

SENSES = ["river"] * 5 + ["money"] * 5 + ["theatre"] * 5 + ["game"] * 5 + ["illumination"] * 5 + ["weight"] * 5


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    lines = (PROJECT_ROOT / "examples/sentences.txt").read_text(encoding="utf-8").splitlines()
    (folder / "reference.tsv").write_text("".join(f"{line}\t{sense}\n" for line, sense in zip(lines, SENSES)),
                                          encoding="utf-8")
    head = build_head(HeadConfig(task="tagger", labels=["NN", "VB"], n_layers=3, elmo_dim=256, encoder="none"))
    with torch.no_grad():
        head.mix.scalar_parameters.copy_(torch.tensor([1.0, 0.0, -1.0]))
    save_head(head, folder / "head")
    return folder


def _post(app, path, body):
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post(path, json=body) if body is not None else await client.get(path)
    return asyncio.run(go())


def test_page_api(reference):
    embedder = Embedder()
    app = create_app(embedder, ServeSettings(), Explorer(embedder, reference / "reference.tsv", reference / "head"))
    try:
        found = _post(app, "/api/neighbors", {"sentence": "The boat was tied to the bank .", "word": "bank", "k": 3,
                                              "same_word": True}).json()
        plot = _post(app, "/api/projection", {"word": "bank", "layer": 2,
                                              "sentence": "The boat was tied to the bank ."}).json()
        head = _post(app, "/api/head", None).json()
        missing = _post(app, "/api/neighbors", {"sentence": "No such word here .", "word": "bank"})
        page = _post(app, "/", None)
    finally:
        app.state.batcher.close()
    assert found["position"] == 6 and [layer["layer"] for layer in found["layers"]] == [0, 1, 2]
    assert all(n["token"] == "bank" for layer in found["layers"] for n in layer["neighbours"])
    assert all(n["label"] in ("river", "money") for layer in found["layers"] for n in layer["neighbours"])
    assert len(plot["points"]) == 10 and {p["label"] for p in plot["points"]} == {"river", "money"}
    assert "query" in plot and 0 < sum(plot["explained"]) <= 1
    weights = head["head"]["layer_weights"]
    assert weights == pytest.approx(torch.softmax(torch.tensor([1.0, 0.0, -1.0]), 0).tolist(), abs=1e-6)
    assert missing.status_code == 422 and "not a token" in missing.json()["error"]["message"]
    assert page.status_code == 200 and "/assets/page.js" in page.text


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium executable on PATH (Debian: apt-get install chromium); the page test needs one")


def test_page_in_a_real_browser(reference):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")
    executable = _chromium()
    process = subprocess.Popen([sys.executable, "-m", "elmo_lm", "serve", "--port", "0", "--threads", "1",
                                "--reference", str(reference / "reference.tsv"), "--head", str(reference / "head")],
                               cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True)
    try:
        url = _wait_for_url(process)
        requested = []
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready=yes]", timeout=30_000)
            assert page.locator("#head rect.weight").count() == 3
            page.fill("#sentence", "The boat was tied to the bank of the river .")
            page.fill("#word", "bank")
            page.fill("#k", "4")
            page.check("#same-word")
            page.click("#submit")
            page.wait_for_selector("#plot circle.point", timeout=60_000)
            rows = page.locator("#neighbours tbody tr")
            assert rows.count() == 3 * 4
            contexts = rows.locator("td.context").all_inner_texts()
            assert all("[bank]" in context for context in contexts)
            scores = [float(s) for s in rows.locator("td.score").all_inner_texts()]
            assert all(a >= b for a, b in zip(scores[4:8], scores[5:8]))  # layer 1, best first
            assert page.locator("#plot circle.point").count() == 10
            labels = {page.locator("#plot circle.point").nth(i).get_attribute("data-label") for i in range(10)}
            assert labels == {"river", "money"}
            assert page.locator("#plot rect.query").count() == 1
            assert "done" in page.inner_text("#status")
            page.fill("#word", "zebra")
            page.click("#submit")
            page.wait_for_selector("#status.error")
            assert "not a token" in page.inner_text("#status")
            browser.close()
        assert requested and all(r.startswith(url) for r in requested), requested
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _wait_for_url(process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if line.startswith("elmo: serving on "):
            url = line.split()[-1]
            for _ in range(200):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        return url
                except httpx.TransportError:
                    time.sleep(0.1)
        if not line and process.poll() is not None:
            break
    raise AssertionError("the server did not start")
