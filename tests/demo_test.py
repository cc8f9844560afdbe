"""`python -m aqa_tf.demo`, used as a person uses it: a real headless Chromium (Debian's
`chromium`, driven by Playwright) opens the page, uploads synthetic dives and a bad file, and
reads what the page shows; the scores must be `aqa_tf.predict`'s for the same files.

Outside CI, without Chromium, Gradio or Playwright, the tests skip saying what to install;
under `CI=true` they fail instead (`.ci/run` installs them). The model is the quickstart
network with random weights and the USDL score head (`--heads=usdl,dive`), exported by
`aqa_tf.export`: the page's fullest case (the score with its 90% interval, the predicted
distribution under the clips, the sub-actions); the trained quickstart export is built on the
other xdist worker.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers import REPO_ROOT, free_port, run_cli
from tests.predict_test import dive_frames, quickstart_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or ""
# As the machines' notes start Chromium as root without network (no sandbox, no background
# connections that the closed network refuses).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Where the test leaves its screenshot (docs/images/demo.png is a copy of one).
SCREENSHOT = os.environ.get("AQA_TF_DEMO_SCREENSHOT", "")


def _missing() -> str:
    try:
        import gradio  # noqa: F401
        import playwright  # noqa: F401
    except ImportError:
        return "Gradio or Playwright missing: pip install -r requirements-demo.txt"
    if not CHROMIUM:
        return ("no Chromium: sudo apt-get install chromium (Playwright drives it; no browser "
                "download needed)")
    return ""


@pytest.fixture(scope="module")
def browser():
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two synthetic test dives (171x128, 25 frames/s), a text file named `.mp4`, and a
    'broadcast' of both dives one after the other."""
    import numpy as np
    from aqa_tf.data import video
    folder = tmp_path_factory.mktemp("demo_videos")
    paths = {name: str(folder / f"{name}.mp4") for name in ("dive_a", "dive_b", "broadcast")}
    a, b = dive_frames(128, 171, index=0), dive_frames(128, 171, index=3)
    video.write_video(paths["dive_a"], a, 25)
    video.write_video(paths["dive_b"], b, 25)
    video.write_video(paths["broadcast"], np.concatenate([a, b]), 25)
    paths["bad"] = str(folder / "notes.mp4")
    with open(paths["bad"], "w") as f:
        f.write("not a video\n")
    return paths


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The export the page serves: $AQA_TF_DEMO_MODEL (e.g. a trained quickstart export, for
    the docs' screenshot), else the random-weight quickstart with the USDL head, exported by
    `aqa_tf.export`."""
    if os.environ.get("AQA_TF_DEMO_MODEL"):
        return os.environ["AQA_TF_DEMO_MODEL"]
    folder = tmp_path_factory.mktemp("export")
    network, _ = quickstart_model("--heads=usdl,dive")
    weights = str(folder / "random.weights.h5")
    network.save_weights(weights)
    run_cli("aqa_tf.export", "--flagfile=configs/quickstart.cfg", "--heads=usdl,dive",
            f"--checkpoint={weights}", f"--export_dir={folder}", "--experiment_name=usdl")
    return str(folder / "usdl" / "1")


def _shown_score(entry: dict) -> str:
    """The score as the page shows it: `aqa_tf.predict`'s, 2 decimals, with its 90% interval
    where the model predicts a distribution."""
    if "score_interval" not in entry:
        return f"{entry['score']:.2f}"
    low, high = entry["score_interval"]
    return f"{entry['score']:.2f}  ({low:.2f} to {high:.2f})"


@pytest.fixture(scope="module")
def predicted(model, videos, tmp_path_factory):
    """What `aqa_tf.predict` prints and writes for the dives and the bad file: {name: its
    JSON entry, with `plot_size`: width and height of its clip plot}, and the bad file's error
    line."""
    folder = tmp_path_factory.mktemp("predict")
    out = str(folder / "results.json")
    proc = run_cli("aqa_tf.predict", videos["dive_a"], videos["dive_b"], videos["bad"],
                   f"--model={model}", f"--output_json={out}", "--noprogress", "--plot",
                   f"--output_dir={folder}", expect=2)
    with open(out) as f:
        entries = {os.path.basename(e["video"])[:-4]: e for e in json.load(f)}
    from PIL import Image
    for name, entry in entries.items():
        if "score" not in entry:  # the bad file's entry (its error)
            continue
        with Image.open(folder / f"{name}_clips.png") as plot:
            entry["plot_size"] = list(plot.size)
    line = next(line for line in proc.stderr.splitlines() if line.startswith("error: ")
                and videos["bad"] in line)
    return entries, line.replace(videos["bad"], os.path.basename(videos["bad"]))


@contextlib.contextmanager
def running_demo(model: str, *args: str):
    """`python -m aqa_tf.demo --model=<model> ARGS`, started as a user starts it, on a free
    port; yields its URL once it answers, and stops it after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aqa_tf.demo", f"--model={model}",
                             f"--port={port}", *args], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the demo did not start:\n{proc.stdout.read()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page_url(model):
    """The demo of `model`, with two example dives."""
    with running_demo(model, "--examples=2") as url:
        yield url


def _text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def _upload(page, path: str):
    """Drops `path` on the score tab's upload (clearing the previous file first)."""
    clear = page.locator('#dive_video button[aria-label="Clear"]')
    if clear.count():
        clear.click()
    page.locator("#dive_video input[type=file]").set_input_files(path)


def _wait_for_status(page, name: str, timeout_s: float = 180):
    """Waits until the status names the file `name` (a result or its error)."""
    page.wait_for_function(
        "name => { const t = document.querySelector('#status textarea');"
        " return t && t.value.includes(name); }", arg=name, timeout=timeout_s * 1000)


def _shown_sub_actions(page, heads) -> dict:
    return {head: page.locator(f"#head_{head} [data-testid=label-output-value]").inner_text()
            for head in heads}


def test_a_person_scores_dives_on_the_page(browser, page_url, videos, predicted):
    entries, bad_line = predicted
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(page_url)
    # A dive: the score as predict prints it, the predicted sub-actions, the clip plot.
    started = time.perf_counter()
    _upload(page, videos["dive_a"])
    _wait_for_status(page, "dive_a.mp4: window")
    seconds = time.perf_counter() - started
    expected = entries["dive_a"]
    assert _text(page, "score") == _shown_score(expected)
    if not os.environ.get("AQA_TF_DEMO_MODEL"):
        assert " to " in _text(page, "score")  # the USDL head's interval
    heads = list(expected["sub_actions"])
    assert _shown_sub_actions(page, heads) == {
        head: ranked[0][0] for head, ranked in expected["sub_actions"].items()}
    page.wait_for_function("() => { const i = document.querySelector('#clip_plot img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=60000)
    # The clip plot is predict's (`--plot`): with a distribution head, the distribution panel
    # under the clips makes it taller than the clips alone.
    shown = page.evaluate("() => { const i = document.querySelector('#clip_plot img');"
                          " return [i.naturalWidth, i.naturalHeight]; }")
    assert shown == expected["plot_size"]
    print(f"dive scored on the page in {seconds:.1f} s: {_text(page, 'score')}")
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    # A text file named .mp4: predict's one line, and the page goes on working.
    _upload(page, videos["bad"])
    _wait_for_status(page, "notes.mp4")
    assert _text(page, "status") == bad_line
    assert _text(page, "score") == ""
    _upload(page, videos["dive_b"])
    _wait_for_status(page, "dive_b.mp4: window")
    assert _text(page, "score") == _shown_score(entries["dive_b"])
    # The model card says what the page runs.
    page.get_by_role("button", name="The model").click()
    assert "frames/s" in page.locator("#model_card").inner_text()
    page.close()


def test_two_people_at_once_each_get_their_own_score(browser, page_url, videos, predicted):
    entries, _ = predicted
    pages = [browser.new_context().new_page() for _ in range(2)]
    for page in pages:
        page.goto(page_url)
    for page, name in zip(pages, ("dive_a", "dive_b")):
        _upload(page, videos[name])  # both queued before either is done
    for page, name in zip(pages, ("dive_a", "dive_b")):
        _wait_for_status(page, f"{name}.mp4: window")
        assert _text(page, "score") == _shown_score(entries[name]), name
    for page in pages:
        page.context.close()


def test_scan_finds_both_dives_of_a_broadcast(browser, page_url, videos):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(page_url)
    page.get_by_role("tab", name="Scan a long video").click()
    page.locator("#scan_video input[type=file]").set_input_files(videos["broadcast"])
    page.locator("#scan_button").click()
    page.wait_for_function(
        "() => { const t = document.querySelector('#scan_status textarea');"
        " return t && t.value.includes('windows'); }", timeout=180000)
    windows = int(_text(page, "scan_status").split(": ")[1].split()[0])
    assert windows >= 4
    assert "Best window" in page.locator("#best_window").inner_text()
    page.wait_for_function("() => { const i = document.querySelector('#timeline img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=60000)
    assert page.locator("#windows").get_by_text("end_time").count() >= 1
    page.close()
