"""Tested as a learner uses it: JupyterLab in a real (headless) Chromium runs the notebooks and the sliders respond.

For each notebook below: start JupyterLab on localhost (fast mode, offline), open the notebook, run all cells from
the Run menu's command, wait until every code cell has executed without an error, then move the margin slider with
the keyboard the way a learner would, and assert that the rendered output changed (the figure image and the
category counts). Screenshots go to ``TRIPLET_BROWSER_ARTIFACTS`` (default ``.ci/artifacts/browser``).

Needs Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright`` Python package (no browser
download: it drives the system Chromium). Without a browser the tests are skipped, except where
``TRIPLET_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing Chromium): there a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TRIPLET_CHROMIUM", shutil.which("chromium") or shutil.which("chromium-browser") or "")
ARTIFACTS = Path(os.environ.get("TRIPLET_BROWSER_ARTIFACTS", ROOT / ".ci" / "artifacts" / "browser"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

# (notebook, slider description) — the slider a learner moves in each notebook
NOTEBOOKS = [("01_triplet_loss", "margin"), ("03_batch_all", "margin")]

pytestmark = pytest.mark.browser


def _have_browser() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not CHROMIUM or not Path(CHROMIUM).exists():
        return "no chromium executable (apt-get install chromium)"
    return None


missing = _have_browser()
if missing and os.environ.get("TRIPLET_REQUIRE_BROWSER") != "1":
    pytest.skip(f"browser test needs a browser: {missing}", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on localhost serving a copy of notebooks/ (nothing in the repository is modified)."""
    assert missing is None, f"TRIPLET_REQUIRE_BROWSER=1 but {missing}"
    workdir = tmp_path_factory.mktemp("lab")
    for source in (ROOT / "notebooks").iterdir():
        if source.suffix == ".ipynb" or source.name.startswith("_") and source.suffix == ".py":
            shutil.copy(source, workdir / source.name)
    # JupyterLab settings for a test browser: every cell in the page (no windowing, so all outputs are in the
    # DOM) and no news pop-up over the notebook.
    settings = workdir / "lab-settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir()
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    port, token = _free_port(), "triplet-browser-test"
    env = {**os.environ, "TRIPLET_FAST": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "JUPYTER_PLATFORM_DIRS": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(workdir / "lab-settings")}
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, as for a learner
    log = open(workdir / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={workdir}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.disable_check_xsrf=True", *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                raise RuntimeError((workdir / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.5)
    else:
        server.kill()
        raise RuntimeError("JupyterLab did not start within 90 s")
    yield url, token, workdir
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


# Everything is read from the notebook the test opened (the current widget), never from another open tab.
CELL_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const root = panel && panel.content ? panel.content.node : document.createElement('div');
  const cells = [...root.querySelectorAll('.jp-CodeCell')];
  const prompts = cells.map(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '');
  const errors = [...root.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(e => e.textContent).filter(t => /Error|Traceback/.test(t));
  const first = cells.length ? cells[0].querySelector('.jp-OutputArea') : null;
  return {n: cells.length, pending: prompts.filter(p => p.includes('*') || p.trim() === '[ ]:').length,
          done: prompts.filter(p => /\\[\\d+\\]/.test(p)).length, errors: errors.slice(0, 3),
          outputs: root.querySelectorAll('.jp-OutputArea-output').length,
          setup: first ? first.textContent : ''};
}"""


def _run_all_and_wait(page, timeout_s: float) -> dict:
    page.wait_for_function("() => window.jupyterapp && document.querySelectorAll('.jp-Notebook .jp-CodeCell').length",
                           timeout=120_000)
    page.wait_for_function(  # the kernel has started
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }", timeout=120_000)
    # Clear the committed outputs first: every prompt reads [ ] until its cell has really run again.
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    deadline = time.time() + 60
    while page.evaluate(CELL_STATE_JS)["outputs"] and time.time() < deadline:
        time.sleep(0.5)
    state = page.evaluate(CELL_STATE_JS)
    assert state["outputs"] == 0 and state["done"] == 0, f"the committed outputs were not cleared: {state}"
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.time() + timeout_s
    state = {}
    while time.time() < deadline:
        state = page.evaluate(CELL_STATE_JS)
        if state["errors"]:
            break
        if state["n"] and state["pending"] == 0 and state["done"] == state["n"]:
            break
        time.sleep(2)
    return state


def _slider(page, description: str):
    """The first slider whose label reads ``description``, and the widget box it sits in."""
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")  # the open tab only
    sliders = notebook.locator(".widget-slider", has=page.locator(".widget-label", has_text=description))
    slider = sliders.first
    slider.wait_for(timeout=60_000)  # widget views render asynchronously after the outputs arrive
    box = slider.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' widget-vbox ')][1]")
    return slider, box


def _rendered(box) -> tuple[str, str]:
    """(text of the summary, the image data shown in the live output) of one widget box."""
    text = box.locator(".widget-html").first.inner_text()
    images = box.locator(".widget-output img")
    src = images.first.get_attribute("src") if images.count() else ""
    return text, src or ""


@pytest.mark.parametrize("notebook, description", NOTEBOOKS)
def test_run_all_then_move_the_margin_slider(notebook, description, jupyterlab, browser):
    url, token, workdir = jupyterlab
    if not (workdir / f"{notebook}.ipynb").exists():
        pytest.fail(f"notebooks/{notebook}.ipynb is missing")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # A workspace of its own, reset: this notebook is the only one open (no tab left over from another test).
        page.goto(f"{url}/lab/workspaces/{notebook}/tree/{notebook}.ipynb?token={token}&reset",
                  wait_until="domcontentloaded")
        state = _run_all_and_wait(page, timeout_s=900)
        page.screenshot(path=str(ARTIFACTS / f"{notebook}_after_run_all.png"))
        assert not state["errors"], f"{notebook}: a cell raised: {state['errors']}"
        assert state["n"] > 0 and state["done"] == state["n"], f"{notebook}: not every cell ran: {state}"
        assert "mode: FAST" in state["setup"], f"{notebook}: the setup cell did not run again here: {state['setup']}"

        slider, box = _slider(page, description)
        slider.scroll_into_view_if_needed()
        before = _rendered(box)
        readout_before = slider.locator(".widget-readout").inner_text()
        handle = slider.locator(".noUi-handle, .ui-slider-handle").first
        handle.click()
        for _ in range(8):  # a learner nudging the slider with the arrow keys
            handle.press("ArrowRight")
        # Redrawing takes the kernel a moment: wait until this widget's summary AND its live figure have changed.
        box.element_handle().wait_for_element_state("visible")
        page.wait_for_function(
            """([el, text, src]) => {
                 const h = el.querySelector('.widget-html'); const i = el.querySelector('.widget-output img');
                 return h && i && h.innerText !== text && i.getAttribute('src') !== src;
               }""",
            arg=[box.element_handle(), *before], timeout=120_000,
        )
        # Each arrow press queues one redraw; wait until the last one has landed (nothing changes for 3 s).
        after, deadline = _rendered(box), time.time() + 120
        while time.time() < deadline:
            time.sleep(3)
            now = _rendered(box)
            if now == after:
                break
            after = now
        box.screenshot(path=str(ARTIFACTS / f"{notebook}_slider_moved.png"))
        assert slider.locator(".widget-readout").inner_text() != readout_before, "the slider did not move"
        assert after[1] and after[1] != before[1], "the figure did not change"
        assert after[0] != before[0], "the counts / summary did not change"
    finally:
        page.close()
