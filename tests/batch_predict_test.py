"""Batch scoring as an Apache Beam pipeline (`aqa_tf.batch_predict`, issue 29): six synthetic
videos, one of them corrupt, scored on the DirectRunner (2 worker processes, RunInference with
the project's SavedModel handler on the export's `serving_jpeg` signature): five scores equal to
`aqa_tf.predict`'s for the same files (within 1e-4 points, same top sub-actions), one error line
naming the corrupt file, exit status 2, the results in the order of the inputs and the summary
table. `--runner=local` (no Beam) gives the same lines. With `--scan`, each video's timeline
equals `aqa_tf.predict --scan`'s, row by row. Apache Beam is optional (requirements-beam.txt):
without it the Beam runs skip; the local runner runs everywhere."""

import csv
import json
import os

import numpy as np
import pytest

from aqa_tf.data import video as video_lib
from tests.helpers import run_cli, user_error
from tests.predict_test import dive_frames, quickstart_model

CORRUPT = "04_broken.mp4"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """The quickstart model (random weights) exported in-process (score and dive heads)."""
    from aqa_tf.serving import export_lib
    model, data_config = quickstart_model()
    folder = tmp_path_factory.mktemp("saved_models")
    return export_lib.export_saved_model(model, data_config, str(folder / "quickstart" / "1"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Five synthetic test dives at 25 and 30 frames/s, sizes 86x64 to 320x180, and one file
    that is not a video."""
    folder = tmp_path_factory.mktemp("videos")
    for i, (height, width, rate) in enumerate(((64, 86, 25), (64, 86, 30), (180, 320, 25),
                                               (96, 128, 30), (72, 96, 25))):
        name = f"{i if i < 4 else 5:02d}_dive.mp4"
        video_lib.write_video(str(folder / name), dive_frames(height, width, index=i), rate)
    with open(folder / CORRUPT, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42 not really a video" * 40)
    return folder


@pytest.fixture(scope="module")
def broadcasts(tmp_path_factory):
    """Two 'broadcasts' of two test dives each, one after the other (about 90 frames, at 25 and
    30 frames/s), and a file that is not a video."""
    folder = tmp_path_factory.mktemp("broadcasts")
    for i, rate in enumerate((25, 30)):
        frames = np.concatenate([dive_frames(64, 86, index=2 * i + j) for j in (0, 1)])
        video_lib.write_video(str(folder / f"{i:02d}_broadcast.mp4"), frames, rate)
    with open(folder / CORRUPT, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42 not really a video" * 40)
    return folder


@pytest.fixture(scope="module")
def scanned(export, broadcasts, tmp_path_factory):
    """`aqa_tf.predict --scan` on the two broadcasts: video -> its timeline rows."""
    good = sorted(str(p) for p in broadcasts.glob("*_broadcast.mp4"))
    folder = tmp_path_factory.mktemp("predict_scan")
    run_cli("aqa_tf.predict", *good, f"--model={export}", "--scan", "--scan_stride=8",
            f"--output_dir={folder}", f"--output_json={folder / 'scan.json'}", "--noprogress")
    with open(folder / "scan.json") as f:
        return {e["video"]: e["timeline"] for e in json.load(f)}


def _check_scan(output, scanned, broadcasts):
    lines = _lines(output)
    assert [os.path.basename(e["video"]) for e in lines] == sorted(os.listdir(broadcasts))
    errors = [e for e in lines if "error" in e]
    assert len(errors) == 1 and CORRUPT in errors[0]["error"], errors
    for entry in (e for e in lines if "error" not in e):
        expected = scanned[entry["video"]]
        assert len(entry["timeline"]) == len(expected) >= 5, entry["video"]
        for row, want in zip(entry["timeline"], expected):
            assert sorted(row) == sorted(want)
            for key, value in want.items():
                if isinstance(value, float):
                    assert row[key] == pytest.approx(value, abs=1e-4), (entry["video"], key)
                else:
                    assert row[key] == value, (entry["video"], key)
    with open(os.path.join(output, "summary.csv"), newline="") as f:
        rows = {r["video"]: r for r in csv.DictReader(f)}
    for video, timeline in scanned.items():  # the summary names each scan's best window
        best = max(timeline, key=lambda row: row["score"])
        assert float(rows[video]["score"]) == pytest.approx(best["score"], abs=1e-4)
        assert float(rows[video]["window_end_time"]) == pytest.approx(best["end_time"],
                                                                      abs=1e-4)


def _lines(output):
    with open(os.path.join(output, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def predicted(export, videos, tmp_path_factory):
    """`aqa_tf.predict` on the five good files (once for both tests): video -> its entry."""
    good = sorted(str(p) for p in videos.glob("*_dive.mp4"))
    out = str(tmp_path_factory.mktemp("predict") / "predict.json")
    run_cli("aqa_tf.predict", *good, f"--model={export}", f"--output_json={out}",
            "--noprogress", "--noplot")
    with open(out) as f:
        return {e["video"]: e for e in json.load(f)}


def _check(lines, predicted, videos):
    names = sorted(os.listdir(videos))
    assert [os.path.basename(e["video"]) for e in lines] == names  # the inputs' order
    errors = [e for e in lines if "error" in e]
    assert len(errors) == 1 and CORRUPT in errors[0]["error"], errors
    assert os.path.basename(errors[0]["video"]) == CORRUPT
    scored = [e for e in lines if "error" not in e]
    assert len(scored) == 5
    for entry in scored:
        expected = predicted[entry["video"]]
        assert entry["score"] == pytest.approx(expected["score"], abs=1e-4), entry["video"]
        assert {h: r[0][0] for h, r in entry["sub_actions"].items()} == {
            h: r[0][0] for h, r in expected["sub_actions"].items()}
        for key in ("window_start_time", "window_end_time", "source_size",
                    "source_frame_rate", "frame_rate"):
            assert entry[key] == pytest.approx(expected[key]), (entry["video"], key)
        contributions = [k for k in ("clip_scores", "clip_weights") if k in expected]
        assert contributions
        for key in contributions:
            assert entry[key] == pytest.approx(expected[key], abs=1e-4), (entry["video"], key)
    return scored


def test_beam_scores_as_predict_does_and_reports_the_corrupt_file(export, videos, predicted,
                                                                  tmp_path):
    pytest.importorskip("apache_beam", reason="Apache Beam is optional: "
                        "pip install -r requirements-beam.txt")
    output = str(tmp_path / "beam")
    proc = run_cli("aqa_tf.batch_predict", f"--model={export}", f"--inputs={videos}/*.mp4",
                   f"--output={output}", "--runner=DirectRunner", "--num_workers=2",
                   "--inference_batch_size=4", expect=2)
    assert f"{CORRUPT}" in proc.stderr.splitlines()[-1]
    assert "1 of 6 videos failed" in proc.stderr
    scored = _check(_lines(output), predicted, videos)
    with open(os.path.join(output, "summary.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [os.path.basename(r["video"]) for r in rows] == sorted(os.listdir(videos))
    assert {r["video"]: float(r["score"]) for r in rows if r["score"]} == pytest.approx(
        {e["video"]: e["score"] for e in scored}, abs=1e-4)
    for entry in scored:  # the printed table
        assert f"{entry['score']:8.2f}" in proc.stdout

    # The same without Beam (this process, one video after the other).
    local = str(tmp_path / "local")
    run_cli("aqa_tf.batch_predict", f"--model={export}", f"--inputs={videos}/*.mp4",
            f"--output={local}", "--runner=local", expect=2)
    _check(_lines(local), predicted, videos)


def test_beam_scan_gives_the_timelines_of_predict(export, broadcasts, scanned, tmp_path):
    """`--scan` on the DirectRunner: every window of every video scored by RunInference (in
    batches that mix videos), the rows grouped back by video: each timeline equals `aqa_tf.predict
    --scan`'s, and the corrupt file is an error line."""
    pytest.importorskip("apache_beam", reason="Apache Beam is optional: "
                        "pip install -r requirements-beam.txt")
    output = str(tmp_path / "beam_scan")
    run_cli("aqa_tf.batch_predict", f"--model={export}", f"--inputs={broadcasts}/*.mp4",
            f"--output={output}", "--runner=DirectRunner", "--num_workers=2", "--scan",
            "--scan_stride=8", "--inference_batch_size=4", expect=2)
    _check_scan(output, scanned, broadcasts)


def test_local_scan_gives_the_timelines_of_predict(export, broadcasts, scanned, tmp_path):
    """Runs everywhere: `--scan --runner=local` writes `aqa_tf.predict --scan`'s timelines;
    `--scan` with `--end_time` is one line, exit status 2."""
    output = str(tmp_path / "local_scan")
    proc = run_cli("aqa_tf.batch_predict", f"--model={export}", f"--inputs={broadcasts}/*.mp4",
                   f"--output={output}", "--runner=local", "--scan", "--scan_stride=8",
                   expect=2)
    assert "best of the scan" in proc.stdout
    _check_scan(output, scanned, broadcasts)
    user_error(run_cli("aqa_tf.batch_predict", f"--model={export}",
                       f"--inputs={broadcasts}/*.mp4", f"--output={tmp_path / 'x'}",
                       "--runner=local", "--scan", "--end_time=1", expect=2),
               "--end_time", "scan")


def test_local_runner_and_mistakes(export, videos, predicted, tmp_path):
    """Runs everywhere: `--runner=local` scores as `aqa_tf.predict`; a user's mistakes are one
    line, exit status 2, before any video is read."""
    output = str(tmp_path / "local")
    run_cli("aqa_tf.batch_predict", f"--model={export}",
            f"--inputs={videos}/0[0-3]_dive.mp4,{videos}/{CORRUPT},{videos}/05_dive.mp4",
            f"--output={output}", "--runner=local", expect=2)
    _check(_lines(output), predicted, videos)
    common = [f"--output={tmp_path / 'x'}", "--runner=local"]
    user_error(run_cli("aqa_tf.batch_predict", f"--model={export}",
                       f"--inputs={videos}/*.avi", *common, expect=2), "--inputs", "*.avi")
    user_error(run_cli("aqa_tf.batch_predict", f"--model={tmp_path}/nothing",
                       f"--inputs={videos}/*.mp4", *common, expect=2), "--model", "nothing")
    user_error(run_cli("aqa_tf.batch_predict", f"--model={export}", f"--inputs={videos}/*.mp4",
                       *common, "--inference_batch_size=0", expect=2),
               "inference_batch_size")
    assert not os.path.exists(tmp_path / "x")


@pytest.fixture(scope="module")
def difficulty_export(tmp_path_factory):
    """The quickstart model with `--multiply_difficulty` (score = difficulty x execution),
    random weights, exported in-process."""
    from aqa_tf.serving import export_lib
    model, data_config = quickstart_model("--multiply_difficulty")
    folder = tmp_path_factory.mktemp("difficulty_model")
    return export_lib.export_saved_model(model, data_config, str(folder / "dd" / "1"))


@pytest.fixture(scope="module")
def labelled(difficulty_export, videos, tmp_path_factory):
    """A `--labels` file giving two videos their own difficulty (one by its path, one by its
    file name) and the corrupt file one; `aqa_tf.predict --difficulty` on each good video."""
    folder = tmp_path_factory.mktemp("labels")
    chosen = {str(videos / "00_dive.mp4"): 2.0, "02_dive.mp4": 3.5, CORRUPT: 3.0}
    path = folder / "labels.csv"
    path.write_text("video,difficulty\n" + "".join(f"{v},{d}\n" for v, d in chosen.items()))
    expected = {}
    for name, difficulty in list(chosen.items())[:2]:
        video = str(videos / os.path.basename(name))
        out = folder / f"{os.path.basename(name)}.json"
        run_cli("aqa_tf.predict", video, f"--model={difficulty_export}",
                f"--difficulty={difficulty}", f"--output_json={out}", "--noprogress",
                "--noplot")
        with open(out) as f:
            expected[video] = json.load(f)[0]["score"]
    inputs = [str(videos / n) for n in ("00_dive.mp4", "02_dive.mp4", CORRUPT)]
    return str(path), inputs, expected


def _labelled_scores(output):
    lines = _lines(output)
    assert [os.path.basename(e["video"]) for e in lines] == ["00_dive.mp4", "02_dive.mp4",
                                                             CORRUPT]
    assert "error" in lines[2]
    return {e["video"]: e["score"] for e in lines[:2]}


def _refused_labels(model, inputs, folder, text, *words):
    """`--labels` holding `text` is refused before any video is read: one line naming `words`,
    exit status 2, no `<folder>/x` output."""
    bad = folder / "bad.csv"
    bad.write_text(text)
    user_error(run_cli("aqa_tf.batch_predict", f"--model={model}", f"--inputs={','.join(inputs)}",
                       f"--labels={bad}", f"--output={folder / 'x'}", "--runner=local",
                       expect=2), *words)


def test_labels_give_each_video_its_difficulty(difficulty_export, labelled, videos, tmp_path):
    """Runs everywhere: `--labels` gives each video its own degree of difficulty
    (`--runner=local`): each score equals `aqa_tf.predict --difficulty=<its own>`'s. A video
    the model cannot score without a label, a bad value, an unknown column or a row naming no
    input: one line each, exit status 2, before any video is read."""
    labels, inputs, expected = labelled
    output = str(tmp_path / "local")
    run_cli("aqa_tf.batch_predict", f"--model={difficulty_export}",
            f"--inputs={','.join(inputs)}", f"--labels={labels}", f"--output={output}",
            "--runner=local", expect=2)
    assert _labelled_scores(output) == pytest.approx(expected, abs=1e-4)

    def refused(text, *words):
        _refused_labels(difficulty_export, inputs, tmp_path, text, *words)

    refused("video,difficulty\n00_dive.mp4,2.0\n", "difficulty", "02_dive.mp4")
    refused("video,difficulty\n00_dive.mp4,hard\n", "line 2", "hard")
    refused("video,dd\n00_dive.mp4,2\n", "unknown column", "dd")
    refused("video,difficulty\n09_dive.mp4,2\n", "line 2", "09_dive.mp4")
    assert not os.path.exists(tmp_path / "x")


def test_beam_labels_give_each_video_its_difficulty(difficulty_export, labelled, tmp_path):
    """The same labels on the DirectRunner: the scores of `aqa_tf.predict --difficulty`."""
    pytest.importorskip("apache_beam", reason="Apache Beam is optional: "
                        "pip install -r requirements-beam.txt")
    labels, inputs, expected = labelled
    output = str(tmp_path / "beam")
    run_cli("aqa_tf.batch_predict", f"--model={difficulty_export}",
            f"--inputs={','.join(inputs)}", f"--labels={labels}", f"--output={output}",
            "--runner=DirectRunner", "--num_workers=2", expect=2)
    assert _labelled_scores(output) == pytest.approx(expected, abs=1e-4)


# Paper 003's per-action scales (index 0 unused: actions are 1-based), far apart so that a
# video scored as the wrong action is far from its own score.
ACTION_STD = (1.0, 2.0, 5.0, 9.0, 14.0, 20.0, 27.0)


@pytest.fixture(scope="module")
def action_export(tmp_path_factory):
    """The quickstart model with AQA-7's per-action score normalisation (paper 003: each
    action's score is the regressor's output times that action's deviation), random weights,
    exported in-process: it needs each video's action."""
    from aqa_tf.serving import export_lib
    model, data_config = quickstart_model("--score_normalization=per_action",
                                          action_score_std=ACTION_STD)
    folder = tmp_path_factory.mktemp("action_model")
    return export_lib.export_saved_model(model, data_config, str(folder / "aqa7" / "1"))


def test_labels_give_each_video_its_action(action_export, videos, tmp_path):
    """Runs everywhere: the `action` column gives each video the action a multi-action model
    scores it as. Each score equals `aqa_tf.predict --action=<its own>`'s within 1e-4 and is
    far from the score as the other video's action. A video without an action, or an action
    the model does not know: one line naming it, exit status 2."""
    chosen = {"00_dive.mp4": "gym_vault", "02_dive.mp4": "sync_diving_10m", CORRUPT: "diving"}
    labels = tmp_path / "actions.csv"
    labels.write_text("video,action\n" + "".join(f"{v},{a}\n" for v, a in chosen.items()))
    inputs = [str(videos / name) for name in chosen]
    predicted = {}
    for name in list(chosen)[:2]:
        for action in ("gym_vault", "sync_diving_10m"):
            out = tmp_path / f"{name}.{action}.json"
            run_cli("aqa_tf.predict", str(videos / name), f"--model={action_export}",
                    f"--action={action}", f"--output_json={out}", "--noprogress", "--noplot")
            with open(out) as f:
                predicted[name, action] = json.load(f)[0]["score"]
    output = str(tmp_path / "local")
    run_cli("aqa_tf.batch_predict", f"--model={action_export}", f"--inputs={','.join(inputs)}",
            f"--labels={labels}", f"--output={output}", "--runner=local", expect=2)
    scores = _labelled_scores(output)
    print(f"batch: {scores}; predict --action: {predicted}")
    for name, action in list(chosen.items())[:2]:
        other = next(a for a in ("gym_vault", "sync_diving_10m") if a != action)
        assert scores[str(videos / name)] == pytest.approx(predicted[name, action], abs=1e-4)
        assert abs(scores[str(videos / name)] - predicted[name, other]) > 0.1

    def refused(text, *words):
        _refused_labels(action_export, inputs, tmp_path, text, *words)

    refused("video,action\n00_dive.mp4,diving\n02_dive.mp4,diving\n", "action", CORRUPT)
    refused("video,action\n00_dive.mp4,hurdles\n02_dive.mp4,diving\n" f"{CORRUPT},diving\n",
            "hurdles", "00_dive.mp4")
    assert not os.path.exists(tmp_path / "x")
