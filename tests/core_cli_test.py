"""CoRe from the command line, as a user runs it: `aqa_tf.train --heads=core` trains on exemplar
pairs, evaluates against training exemplars and exports with its bank inside; `aqa_tf.predict
--dive_type` prints the exemplars and their verdicts and plots the dive beside the closest
one; `aqa_tf.batch_predict --labels` gives each video its own dive type. (Learning is shown
by `tests/models/core_learning_test.py`; here one short epoch.)"""

import json
import os

import numpy as np
import pytest

from tests import demo_test
from tests.helpers import run_cli, synthetic_sample, user_error

browser = demo_test.browser  # the fixture: a headless Chromium (skips or fails as there)

# The quickstart's geometry (54 stored frames of 64x86, 3 clips of 16), 24 training dives.
GROUPS = "-30,-3,-3,0,0,3,3,30"


@pytest.fixture(scope="module")
def core_run(tmp_path_factory):
    from aqa_tf.data import synthetic
    data = str(tmp_path_factory.mktemp("core_data"))
    synthetic.write_tfrecords(data, synthetic.SyntheticDataConfig(
        num_train=24, num_test=8, num_frames=54, height=64, width=86), judges=True)
    model_dir = str(tmp_path_factory.mktemp("core_run"))
    proc = run_cli("aqa_tf.train", "--flagfile=configs/quickstart.cfg", f"--data_dir={data}",
                   "--nosynthesize_if_missing", f"--model_dir={model_dir}",
                   f"--export_dir={os.path.join(model_dir, 'export')}", "--heads=core",
                   "--fc_units=0", "--exemplar_match=dive_number", "--core_difficulty",
                   "--voters=4", "--core_tree_depth=3", "--core_hidden=32",
                   f"--core_groups={GROUPS}", "--epochs=1", "--val_fraction=0",
                   "--mixed_precision=none", "--noevaluate_before_training", "--verbose=2",
                   timeout=900)
    return data, model_dir, proc


def test_train_evaluates_against_exemplars_and_exports_the_bank(core_run):
    data, model_dir, proc = core_run
    with open(os.path.join(model_dir, "final_metrics.json")) as f:
        final = json.load(f)
    assert final["metrics"]["num_samples"] == 8
    exports = [os.path.join(root) for root, _, files in os.walk(os.path.join(model_dir, "export"))
               if "saved_model.pb" in files]
    assert len(exports) == 1, exports
    with open(os.path.join(exports[0], "assets.extra", "aqa_tf.json")) as f:
        meta = json.load(f)
    assert meta["exemplar_match"] == "dive_number" and meta["voters"] == 4
    assert meta["core_groups"] == [float(v) for v in GROUPS.split(",")]
    assert len(meta["exemplar_values"]) >= 10  # the training split's dive numbers


def test_predict_prints_the_exemplars_and_plots_the_closest(core_run, tmp_path):
    from aqa_tf.data import video

    data, model_dir, _ = core_run
    export = next(root for root, _, files in os.walk(os.path.join(model_dir, "export"))
                  if "saved_model.pb" in files)
    with open(os.path.join(export, "assets.extra", "aqa_tf.json")) as f:
        dive = json.load(f)["exemplar_values"][0]
    sample = synthetic_sample("test", 0, 54, 64, 86)
    path = str(tmp_path / "dive.mp4")
    video.write_video(path, sample.frames, 25)
    out = str(tmp_path / "out")
    proc = run_cli("aqa_tf.predict", path, f"--model={export}", f"--dive_type={dive.lower()}",
                   f"--difficulty={sample.labels.difficulty}", "--plot", f"--output_dir={out}",
                   f"--output_json={tmp_path / 'results.json'}", "--noprogress")
    print(proc.stdout)
    assert f"group {dive}" in proc.stdout
    with open(tmp_path / "results.json") as f:
        (result,) = json.load(f)
    exemplars = result["exemplars"]
    assert 1 <= len(exemplars) <= 4 and result["exemplar_group"] == dive
    assert abs(result["score"] - sum(e["verdict"] for e in exemplars) / len(exemplars)) < 1e-3
    for e in exemplars:
        assert f"{e['key']}" in proc.stdout
    plot = os.path.join(out, "dive_exemplars.png")
    assert os.path.getsize(plot) > 10_000, os.listdir(out)
    # Without the dive type: one line naming the option, exit status 2.
    proc = run_cli("aqa_tf.predict", path, f"--model={export}",
                   f"--difficulty={sample.labels.difficulty}", "--noprogress", expect=2)
    assert "--dive_type" in user_error(proc)


def test_tf_serving_clients_send_the_dive_type_and_get_the_exemplars(core_run, tmp_path):
    """The export behind TF Serving (the project's stand-ins of its gRPC and REST APIs): both
    clients send the dive number and read back the exemplars (JPEG frames base64-encoded over
    REST, as TF Serving does for `*_bytes` outputs) as `aqa_tf.predict` finds them."""
    from aqa_tf.data import video
    from aqa_tf.serving import client as serving_client
    from aqa_tf.serving import predict_lib
    from tests.tf_serving_standin import TFServingStandin

    _, model_dir, _ = core_run
    export = next(root for root, _, files in os.walk(os.path.join(model_dir, "export"))
                  if "saved_model.pb" in files)
    dive = serving_client.read_metadata(export)["exemplar_values"][1]
    sample = synthetic_sample("test", 1, 54, 64, 86)
    path = str(tmp_path / "dive.mp4")
    video.write_video(path, sample.frames, 25)
    difficulty = sample.labels.difficulty
    reference = predict_lib.score_dive(predict_lib.Scorer.from_saved_model(export), path,
                                       difficulty=difficulty, progress=False, dive_type=dive)
    with TFServingStandin({"core": {1: export}}) as servers:
        for connection in (serving_client.connect(server=servers.grpc_address,
                                                  model_name="core"),
                           serving_client.connect(rest=servers.rest_url, model_name="core")):
            scorer = serving_client.serving_scorer(connection)
            result = predict_lib.score_dive(scorer, path, difficulty=difficulty,
                                            progress=False, dive_type=dive)
            assert abs(result["score"] - reference["score"]) < 1e-4, connection.protocol
            assert [e["key"] for e in result["exemplars"]] == [
                e["key"] for e in reference["exemplars"]]
            np.testing.assert_allclose([e["verdict"] for e in result["exemplars"]],
                                       [e["verdict"] for e in reference["exemplars"]], atol=1e-4)
            assert result["exemplar_thumbnails"] == reference["exemplar_thumbnails"]
            assert result["exemplar_thumbnails"][0][:2] == b"\xff\xd8"  # a JPEG
            connection.close()


@pytest.fixture(scope="module")
def labelled_dives(core_run, tmp_path_factory):
    """Two test dives as videos, a `--labels` file giving each its own dive type and
    difficulty, and `predict_lib.score_dive`'s result for each (the reference)."""
    from aqa_tf.data import video
    from aqa_tf.serving import predict_lib
    _, model_dir, _ = core_run
    export = next(root for root, _, files in os.walk(os.path.join(model_dir, "export"))
                  if "saved_model.pb" in files)
    with open(os.path.join(export, "assets.extra", "aqa_tf.json")) as f:
        dives = json.load(f)["exemplar_values"][2:4]
    folder = tmp_path_factory.mktemp("labelled")
    scorer = predict_lib.Scorer.from_saved_model(export)
    rows, expected = ["video,dive_type,difficulty"], {}
    for i, dive in enumerate(dives):
        sample = synthetic_sample("test", 2 + i, 54, 64, 86)
        path = str(folder / f"dive_{i}.mp4")
        video.write_video(path, sample.frames, 25)
        rows.append(f"dive_{i}.mp4,{dive},{sample.labels.difficulty}")
        expected[path] = predict_lib.score_dive(scorer, path, progress=False, dive_type=dive,
                                                difficulty=sample.labels.difficulty)
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return export, str(folder / "labels.csv"), expected


def _check_batch_scores(output, expected):
    with open(os.path.join(output, "results.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert [e["video"] for e in lines] == sorted(expected)
    for entry in lines:
        reference = expected[entry["video"]]
        assert entry["score"] == pytest.approx(reference["score"], abs=1e-4)
        assert entry["exemplar_group"] == reference["exemplar_group"]
        assert [e["key"] for e in entry["exemplars"]] == [
            e["key"] for e in reference["exemplars"]]
        np.testing.assert_allclose([e["verdict"] for e in entry["exemplars"]],
                                   [e["verdict"] for e in reference["exemplars"]], atol=1e-4)


def test_batch_scoring_takes_each_videos_dive_type_from_labels(labelled_dives, tmp_path):
    """`aqa_tf.batch_predict --labels` (`--runner=local`): each video compared with the
    exemplars of its own dive type and scaled by its own difficulty, as `aqa_tf.predict
    --dive_type --difficulty` scores it; without the labels, one line naming the dive type."""
    export, labels, expected = labelled_dives
    inputs = ",".join(sorted(expected))
    output = str(tmp_path / "local")
    run_cli("aqa_tf.batch_predict", f"--model={export}", f"--inputs={inputs}",
            f"--labels={labels}", f"--output={output}", "--runner=local")
    _check_batch_scores(output, expected)
    proc = run_cli("aqa_tf.batch_predict", f"--model={export}", f"--inputs={inputs}",
                   "--difficulty=3", f"--output={tmp_path / 'x'}", "--runner=local", expect=2)
    assert "dive type" in user_error(proc)


def test_beam_batch_scoring_takes_each_videos_dive_type(labelled_dives, tmp_path):
    """The same on the DirectRunner (where Apache Beam is installed)."""
    pytest.importorskip("apache_beam", reason="Apache Beam is optional: "
                        "pip install -r requirements-beam.txt")
    export, labels, expected = labelled_dives
    output = str(tmp_path / "beam")
    run_cli("aqa_tf.batch_predict", f"--model={export}", f"--inputs={','.join(sorted(expected))}",
            f"--labels={labels}", f"--output={output}", "--runner=DirectRunner",
            "--num_workers=2")
    _check_batch_scores(output, expected)


def test_tflite_holds_the_bank_and_scores_as_the_saved_model(core_run, tmp_path):
    """TFLite's builtin ops compare no strings, so its flatbuffer takes the bank's row as an
    input (`exemplar_row`) and holds the bank's numbers; the metadata holds each row's dive
    number and exemplars, which the TFLite scorer looks the dive type up in."""
    from aqa_tf.serving import predict_lib, tflite_lib
    from tests.train_test import keras_model_of_run

    _, model_dir, _ = core_run
    export = next(root for root, _, files in os.walk(os.path.join(model_dir, "export"))
                  if "saved_model.pb" in files)
    model, data_config = keras_model_of_run(model_dir)
    path = str(tmp_path / "core.tflite")
    with open(path, "wb") as f:
        f.write(tflite_lib.convert(model, data_config))
    lite = tflite_lib.scorer(path)
    saved = predict_lib.Scorer.from_saved_model(export)
    bank = lite.meta["exemplar_bank"]
    assert bank["values"][-1] == "*" and bank["values"][:-1] == saved.meta["exemplar_values"]
    sample = synthetic_sample("test", 2, 54, 64, 86)
    window = saved.model_frames(sample.frames[-data_config.window_length:])[None]
    for dive in (bank["values"][0], bank["values"][3], "999Z"):  # the last: not in the bank
        a = lite.score(window, [sample.labels.difficulty], dive_number=[dive])
        b = saved.score(window, [sample.labels.difficulty], dive_number=[dive])
        assert abs(float(a["score"][0]) - float(b["score"][0])) < 1e-3, dive
        assert list(a["exemplar_keys"][0]) == list(b["exemplar_keys"][0])
        assert a["exemplar_group"][0] == b["exemplar_group"][0]


def test_demo_page_asks_for_the_dive_type_and_shows_the_exemplars(core_run, browser, tmp_path):
    """`aqa_tf.demo` on the CoRe export, in a real browser (`tests/demo_test.py`'s Chromium):
    a person types the dive type and the difficulty, drops the dive, and sees predict's score,
    the exemplars with their verdicts and the plot of the closest one."""
    from aqa_tf.data import video
    from aqa_tf.serving import predict_lib
    from tests.demo_test import _text, _upload, _wait_for_status

    _, model_dir, _ = core_run
    export = next(root for root, _, files in os.walk(os.path.join(model_dir, "export"))
                  if "saved_model.pb" in files)
    sample = synthetic_sample("test", 3, 54, 64, 86)
    path = str(tmp_path / "dive_c.mp4")
    video.write_video(path, sample.frames, 25)
    difficulty = sample.labels.difficulty
    scorer = predict_lib.Scorer.from_saved_model(export)
    dive = scorer.meta["exemplar_values"][2]
    expected = predict_lib.score_dive(scorer, path, difficulty=difficulty, progress=False,
                                      dive_type=dive)
    with demo_test.running_demo(export, "--examples=0") as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1200})
        page.goto(url)
        page.locator("#difficulty input").fill(f"{difficulty}")
        field = page.locator("#dive_type input")
        field.fill(dive)
        field.press("Enter")
        _upload(page, path)
        _wait_for_status(page, "dive_c.mp4: window")
        assert _text(page, "score") == f"{expected['score']:.2f}"
        shown = page.locator("#exemplars").inner_text()
        assert f"of type {dive}" in shown
        for exemplar in expected["exemplars"]:
            assert exemplar["key"] in shown and f"{exemplar['verdict']:.2f}" in shown
        page.wait_for_function("() => { const i = document.querySelector('#exemplars_plot img');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=60000)
        if demo_test.SCREENSHOT:
            page.screenshot(path=demo_test.SCREENSHOT.replace(".png", "_core.png"),
                            full_page=True)
        page.close()
