"""Scoring a user's video: decoding (`aqa_tf.data.video`), the export's signatures for videos of
any size and as JPEG strings, `aqa_tf.export` from weights alone, and `aqa_tf.predict` with its
errors. The model here has random weights (the quickstart network); what a trained model gives
on real-looking dives is tested in tests/train_test.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import run_cli, synthetic_sample


def quickstart_model(*extra_flags, **data_overrides):
    """The quickstart model (random weights, seed 1) and its data config (`data_overrides`:
    fields that are not flags, such as the per-action score deviations)."""
    import dataclasses

    import keras
    from absl import flags
    from aqa_tf import flag_defs
    from aqa_tf.models import aqa_model
    flag_defs.define_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS([sys.argv[0], f"--flagfile={REPO_ROOT}/configs/quickstart.cfg", *extra_flags])
    data_config = dataclasses.replace(flag_defs.data_config_from_flags(), **data_overrides)
    model_config = flag_defs.model_config_from_flags()
    flags.FLAGS.unparse_flags()
    keras.utils.set_random_seed(1)
    return aqa_model.build_aqa_model(model_config, data_config), data_config


def dive_frames(height, width, index=0, split="test"):
    """A synthetic dive rendered at `height` x `width` (`helpers.synthetic_sample`: 720 rows
    and more are a half-size render scaled up), cut at its annotated end frame."""
    sample = synthetic_sample(split, index, 54, height, width)
    return sample.frames[:sample.end_index + 1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The quickstart model's weights exported by `aqa_tf.export` in its own process."""
    folder = tmp_path_factory.mktemp("export")
    model, data_config = quickstart_model()
    weights = str(folder / "random.weights.h5")
    model.save_weights(weights)
    proc = run_cli("aqa_tf.export", "--flagfile=configs/quickstart.cfg",
                   f"--checkpoint={weights}", f"--export_dir={folder}", "--experiment_name=qs",
                   "--export_version=3")
    path = str(folder / "qs" / "3")
    assert f"SavedModel: {path}" in proc.stdout
    return path, model, data_config


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from aqa_tf.data import video
    folder = tmp_path_factory.mktemp("videos")
    paths = {"720p": str(folder / "dive_1280x720.mp4"), "stored": str(folder / "dive_86x64.mp4")}
    video.write_video(paths["720p"], dive_frames(720, 1280), 25)
    video.write_video(paths["stored"], dive_frames(64, 86), 25)
    return paths


def test_read_video_resamples_and_resizes(tmp_path):
    from aqa_tf.data import video
    # Frame k of a 50 frames/s video is a flat grey of value 5 k: which frames a 25 frames/s
    # reading keeps can be read off the pixels.
    frames = np.repeat(np.arange(0, 200, 5, dtype=np.uint8)[:, None, None, None], 3, axis=3)
    frames = np.broadcast_to(frames, (40, 48, 64, 3)).copy()
    path = str(tmp_path / "ramp.mp4")
    video.write_video(path, frames, 50, crf=0)
    native = video.read_video(path)
    assert native.frames.shape == (40, 48, 64, 3) and native.frame_rate == 50
    assert native.source_size == (48, 64)
    np.testing.assert_allclose(native.frames.mean(axis=(1, 2, 3)), np.arange(0, 200, 5), atol=1.5)
    half = video.read_video(path, frame_rate=25, size=(24, 30))
    assert half.frames.shape == (20, 24, 30, 3) and half.frame_rate == 25
    np.testing.assert_allclose(half.times, np.arange(20) / 25)
    np.testing.assert_allclose(half.frames.mean(axis=(1, 2, 3)), np.arange(0, 200, 10), atol=1.5)
    # Up-sampling repeats frames: 50 -> 75 frames/s shows frame k at outputs 1.5 k .. 1.5 k + 1.
    up = video.read_video(path, frame_rate=75)
    assert len(up.frames) == 60
    assert up.index_at(0.5) == 37 and half.index_at(0.5) == 12


def test_signature_resizes_any_video_as_the_converter_does():
    """`resize_to_stored` (in the graph) against the converter's OpenCV resize."""
    import tensorflow as tf
    from aqa_tf.serving import export_lib
    from aqa_tf.config import DataConfig
    from aqa_tf.data import video
    config = DataConfig(stored_height=64, stored_width=86)
    for height, width in ((720, 1280), (128, 171), (48, 60)):
        frames = dive_frames(height, width)[-4:]
        ours = export_lib.resize_to_stored(tf.constant(frames), config).numpy()
        theirs = np.stack([video.resize_frame(f, 86, 64) for f in frames])
        diff = np.abs(ours.astype(int) - theirs.astype(int))
        print(f"{width}x{height}: mean abs diff {diff.mean():.3f}, max {diff.max()}")
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 8
    stored = dive_frames(64, 86)[-2:]
    np.testing.assert_array_equal(
        export_lib.resize_to_stored(tf.constant(stored), config).numpy(), stored)


def test_export_from_weights_alone_equals_the_keras_model(exported):
    import tensorflow as tf
    from aqa_tf.data import pipeline
    path, model, data_config = exported
    with open(os.path.join(path, "assets.extra", "aqa_tf.json")) as f:
        meta = json.load(f)
    assert (meta["stored_height"], meta["stored_width"], meta["frame_rate"]) == (64, 86, 25.0)
    assert meta["jpeg_quality"] == 90
    assert meta["window_length"] == 48 and meta["num_clips"] == 3
    assert meta["clip_frames"][1] == list(range(16, 32))
    assert meta["class_names"]["position"] == ["free", "tuck", "pike"]
    assert meta["clip_contribution"] == "clip_scores"
    assert meta["signatures"] == ["serving_default", "serving_jpeg", "metadata"]
    assert os.path.exists(os.path.join(path, "assets.extra", "flags.txt"))
    # The `metadata` signature serves the same text (for clients of a model server).
    served = tf.saved_model.load(path).signatures["metadata"](batch=tf.zeros([2], tf.int32))
    assert served["json"].shape == [2] and json.loads(served["json"][1].numpy()) == meta

    video = np.random.default_rng(0).integers(0, 256, (2, 50, 64, 86, 3), dtype=np.uint8)
    script = (
        "import numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({path!r})\n"
        f"v = np.load({path + '/../video.npy'!r})\n"
        "out = m.signatures['serving_default'](video=tf.constant(v), difficulty=tf.zeros([2]))\n"
        f"np.savez({path + '/../served.npz'!r}, **{{k: t.numpy() for k, t in out.items()}})\n")
    np.save(path + "/../video.npy", video)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    served = np.load(path + "/../served.npz")
    window = tf.constant(video[:, -48:])
    expected = model({"video": pipeline.preprocess_video_batch(window, data_config)},
                     training=False)
    assert set(served.files) == {"score", "clip_scores"} | {
        f"{n}_probabilities" for n in meta["class_names"]}
    np.testing.assert_allclose(served["score"], np.asarray(expected["score"]), atol=1e-4)
    for name in meta["class_names"]:
        np.testing.assert_allclose(served[f"{name}_probabilities"],
                                   tf.nn.softmax(expected[name]).numpy(), atol=1e-4)
    assert served["clip_scores"].shape == (2, 3)


def test_jpeg_and_any_size_signatures_agree_with_the_stored_size_one(exported):
    import tensorflow as tf
    from aqa_tf.data import features, video
    path = exported[0]
    signatures = tf.saved_model.load(path).signatures
    big = dive_frames(720, 1280, index=3)
    stored = np.stack([video.resize_frame(f, 86, 64) for f in big])
    zero = tf.zeros([1])
    at_stored = signatures["serving_default"](video=tf.constant(stored[None]), difficulty=zero)
    at_720p = signatures["serving_default"](video=tf.constant(big[None]), difficulty=zero)
    # JPEG strings against the same images decoded, as uint8.
    jpegs = [features.encode_jpeg(f, 90) for f in stored]
    decoded = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])
    as_uint8 = signatures["serving_default"](video=tf.constant(decoded[None]), difficulty=zero)
    as_jpeg = signatures["serving_jpeg"](frames=tf.constant([jpegs]), difficulty=zero)
    np.testing.assert_allclose(as_jpeg["score"], as_uint8["score"], atol=1e-4)
    for name, out in (("1280x720 uint8", at_720p), ("JPEG strings", as_jpeg)):
        diff = abs(float(out["score"][0]) - float(at_stored["score"][0]))
        print(f"{name}: score {float(out['score'][0]):.4f} vs {float(at_stored['score'][0]):.4f}")
        assert diff < 0.05, name
        np.testing.assert_allclose(out["position_probabilities"],
                                   at_stored["position_probabilities"], atol=0.01)


def test_predict_scores_a_video_file(exported, videos, tmp_path):
    import tensorflow as tf
    from aqa_tf.data import video
    path = exported[0]
    out_json = str(tmp_path / "results.json")
    proc = run_cli("aqa_tf.predict", videos["720p"], videos["stored"], f"--model={path}",
                   "--plot", f"--output_dir={tmp_path}", f"--output_json={out_json}",
                   "--noprogress")
    print(proc.stdout)
    for line in ("score", "position", "armstand", "rotation_type", "somersaults", "twists",
                 "clip scores", "plot"):
        assert f"\n  {line} " in proc.stdout, line
    with open(out_json) as f:
        results = json.load(f)
    assert [r["video"] for r in results] == [videos["720p"], videos["stored"]]
    assert results[0]["source_size"] == [720, 1280] and results[0]["frame_rate"] == 25
    assert len(results[0]["clip_scores"]) == 3
    assert os.path.getsize(tmp_path / "dive_1280x720_clips.png") > 20_000
    # The printed score is the signature's on the last 48 frames resized and JPEG-encoded as
    # the converter stores them (quality 90: the model's stored_jpeg_quality).
    from aqa_tf.data import features
    frames = video.read_video(videos["720p"], size=(64, 86)).frames[-48:]
    expected = tf.saved_model.load(path).signatures["serving_jpeg"](
        frames=tf.constant([[features.encode_jpeg(f, 90) for f in frames]]),
        difficulty=tf.zeros([1]))
    assert abs(results[0]["score"] - float(expected["score"][0])) < 1e-4
    # --end_frame picks an earlier window: a different score.
    proc = run_cli("aqa_tf.predict", videos["720p"], f"--model={path}", "--end_frame=30",
                   f"--output_json={out_json}", "--noprogress")
    assert "fewer than the model's 48-frame window" in proc.stderr
    with open(out_json) as f:
        early = json.load(f)[0]
    assert early["window_end_time"] == pytest.approx(29 / 25)


def test_predict_from_flags_and_weights_equals_the_export(exported, videos, tmp_path):
    path = exported[0]
    results = {}
    for name, source in (("export", [f"--model={path}"]),
                         ("weights", ["--flagfile=configs/quickstart.cfg",
                                      f"--checkpoint={os.path.dirname(os.path.dirname(path))}"
                                      "/random.weights.h5"])):
        out = str(tmp_path / f"{name}.json")
        proc = run_cli("aqa_tf.predict", videos["stored"], *source, f"--output_json={out}",
                       "--noprogress")
        with open(out) as f:
            results[name] = json.load(f)[0]
    assert "random.weights.h5 (keras_model)" in proc.stdout
    assert abs(results["export"]["score"] - results["weights"]["score"]) < 1e-4
    for head, ranked in results["export"]["sub_actions"].items():
        other = results["weights"]["sub_actions"][head]
        assert [label for label, _ in ranked] == [label for label, _ in other], head
        np.testing.assert_allclose([p for _, p in ranked], [p for _, p in other], atol=1e-5)


def test_scan_writes_a_timeline(exported, tmp_path):
    from aqa_tf.data import video
    broadcast = np.concatenate([np.full((20, 64, 86, 3), 40, np.uint8), dive_frames(64, 86, 1),
                                np.full((20, 64, 86, 3), 40, np.uint8), dive_frames(64, 86, 2)])
    path = str(tmp_path / "broadcast.mp4")
    video.write_video(path, broadcast, 25)
    proc = run_cli("aqa_tf.predict", path, f"--model={exported[0]}", "--scan",
                   "--scan_stride=4", f"--output_dir={tmp_path}", "--noprogress")
    import csv
    with open(tmp_path / "broadcast_timeline.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(range(47, len(broadcast), 4))
    assert float(rows[1]["end_time"]) - float(rows[0]["end_time"]) == pytest.approx(4 / 25)
    assert {"start_time", "end_time", "score", "position", "twists_probability"} <= set(rows[0])
    assert os.path.getsize(tmp_path / "broadcast_timeline.png") > 20_000
    assert f"{len(rows)} windows; best" in proc.stdout


def _zero_frame_video(path):
    import av
    container = av.open(path, "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()


def _truncated(source, path):
    with open(source, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])


def test_bad_inputs_give_one_clear_line(exported, videos, tmp_path):
    import av
    import tensorflow as tf
    from aqa_tf.data import video
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    _zero_frame_video(str(tmp_path / "empty.mp4"))
    _truncated(videos["stored"], str(tmp_path / "truncated.mp4"))
    # With the index in front (as streaming sites write them) a truncated file still opens.
    frames = dive_frames(64, 86)
    with av.open(str(tmp_path / "faststart.mp4"), "w", options={"movflags": "faststart"}) as c:
        stream = c.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 86, 64, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    _truncated(str(tmp_path / "faststart.mp4"), str(tmp_path / "truncated_faststart.mp4"))
    no_signature = tmp_path / "other_model"

    class Other(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def double(self, x):
            return 2 * x

    module = Other()
    tf.saved_model.save(module, str(no_signature), signatures={"double": module.double})
    model = f"--model={exported[0]}"
    cases = {
        str(tmp_path / "missing.mp4"): ([model], "no such file"),
        str(text): ([model], "cannot be opened as a video"),
        str(tmp_path / "truncated.mp4"): ([model], "it is truncated"),
        str(tmp_path / "truncated_faststart.mp4"): ([model], "truncated or corrupt, only"),
        str(tmp_path / "empty.mp4"): ([model], "has no video stream"),
        videos["stored"]: ([f"--model={no_signature}"], "no serving_default signature"),
    }
    for path, (args, problem) in cases.items():
        proc = run_cli("aqa_tf.predict", path, *args, "--noprogress", expect=2)
        last = proc.stderr.strip().splitlines()[-1]
        print(last)
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert last.startswith("error: ") and problem in last, last
        if "signature" in problem:
            assert str(no_signature) in last
            continue
        assert path in last
        if os.path.exists(path):
            with pytest.raises(video.VideoError, match=problem):
                video.read_video(path)


def test_one_bad_video_among_many_loses_nothing(exported, videos, tmp_path):
    """Issue 24, case 1: an unreadable video in the middle of a list is reported and recorded;
    the videos after it are scored; --output_json holds every video's result or error; the exit
    status says that one failed. Before, the run ended at the bad file without a JSON."""
    import shutil
    empty = str(tmp_path / "empty.mp4")
    _zero_frame_video(empty)
    last = str(tmp_path / "ten.mp4")
    shutil.copy(videos["stored"], last)
    out_json = str(tmp_path / "out" / "results.json")  # its folder is made
    proc = run_cli("aqa_tf.predict", videos["stored"], empty, last, f"--model={exported[0]}",
                   f"--output_json={out_json}", f"--output_dir={tmp_path}", "--noprogress",
                   expect=2)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and empty in errors[0] and "has no video stream" in errors[0], errors
    assert errors[1] == (f"error: 1 of 3 videos failed ({empty}); the others' results are "
                         "kept"), errors
    with open(out_json) as f:
        results = json.load(f)
    assert [r["video"] for r in results] == [videos["stored"], empty, last]
    assert "score" in results[0] and results[2]["score"] == pytest.approx(results[0]["score"])
    assert "has no video stream" in results[1]["error"] and "score" not in results[1]
    assert not os.path.exists(out_json + ".partial")
    # An --output_json that cannot be written is refused before any video is scored.
    proc = run_cli("aqa_tf.predict", videos["stored"], f"--model={exported[0]}",
                   f"--output_json={tmp_path}", "--noprogress", expect=2)
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --output_json={tmp_path} is a folder: give a file name")
    assert "score" not in proc.stdout


PEAK_RSS = r"""
import resource, sys
import numpy as np
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
kib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
small = serve(video=tf.zeros([1, 2, 64, 86, 3], tf.uint8), difficulty=tf.zeros([1]))
before = kib()
big = serve(video=tf.constant(np.full([1, 1, 4000, 4000, 3], 128, np.uint8)),
            difficulty=tf.zeros([1]))
print(before, kib(), float(big["score"][0]))
"""


def test_a_short_video_of_large_frames_is_resized_before_it_is_padded(exported):
    """Issue 24, case 5: serving_default repeated a short video's first frame at full size
    before resizing (one 4000x4000 frame: 0.8 -> 5.4 GB). Now the peak grows by the frame and
    its resize, not by the window length times the frame; the score equals that of the frame
    resized first."""
    import tensorflow as tf
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, exported[0]], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after, score = proc.stdout.split()
    grown_mb = (int(after) - int(before)) / 1024
    print(f"peak RSS {int(before) / 1024:.0f} -> {int(after) / 1024:.0f} MB")
    # The frame is 46 MB as uint8, 183 MB as float32; 48 repeats of it would be 2.2 / 8.8 GB.
    assert grown_mb < 1200, grown_mb
    serve = tf.saved_model.load(exported[0]).signatures["serving_default"]
    resized = tf.image.resize(tf.fill([1, 4000, 4000, 3], 128.0), [64, 86], method="area")
    alone = serve(video=tf.cast(tf.round(resized), tf.uint8)[None], difficulty=tf.zeros([1]))
    assert float(score) == pytest.approx(float(alone["score"][0]), abs=1e-4)


def test_a_truncated_matroska_video_is_refused(tmp_path):
    """Issue 24, case 3: Matroska gives no frame count, so a truncated MKV was scored on the
    frames that survived (3.2 s announced, 1.6 s decoded, exit 0). The decoded span is now
    compared with the container's duration."""
    from aqa_tf.data import video
    path, cut = str(tmp_path / "dive.mkv"), str(tmp_path / "truncated.mkv")
    video.write_video(path, dive_frames(48, 64), 25)
    assert len(video.read_video(path).frames) > 30  # whole: read as before
    _truncated(path, cut)
    with pytest.raises(video.VideoError, match=r"truncated.mkv: truncated or corrupt, only "
                       r"[0-9.]+ s of the [0-9.]+ s its container announces"):
        video.read_video(cut)


def test_a_checkpoint_of_another_model_names_what_differs(exported, videos, tmp_path):
    """Issue 24, case 6: before, export / evaluate / predict with a --width_multiplier or
    --backbone other than the checkpoint's run ended in a Keras traceback of weight arrays."""
    import shutil
    from tests.helpers import user_error
    weights = os.path.join(os.path.dirname(os.path.dirname(exported[0])), "random.weights.h5")
    wider = ["--flagfile=configs/quickstart.cfg", "--width_multiplier=0.25"]
    proc = run_cli("aqa_tf.export", *wider, f"--checkpoint={weights}",
                   f"--export_dir={tmp_path}", expect=2)
    user_error(proc, f"checkpoint {weights} is not of the model these options build",
               "conv1/kernel", "has no counterpart")
    # Beside its run's flags.txt the checkpoint says which option differs.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(weights, run_dir / "best.weights.h5")
    shutil.copy(os.path.join(REPO_ROOT, "configs", "quickstart.cfg"), run_dir / "flags.txt")
    for module, args in (("aqa_tf.predict", [videos["stored"], "--noprogress"]),
                         ("aqa_tf.evaluate", [f"--data_dir={tmp_path}/none"])):
        proc = run_cli(module, *args, *wider, f"--checkpoint={run_dir / 'best.weights.h5'}",
                       expect=2)
        user_error(proc, "--width_multiplier=0.25 (the run's: 0.125) (its run's flags.txt)")


def test_no_frames_no_video_and_grey_frames(exported):
    """Issue 24, case 8: a window of 0 frames, a batch of 0 windows, an empty JPEG list and a
    1-channel video failed inside the graph (`indices[2,10] = 42 is not in [0, 0)`). Now the
    Scorer refuses them in one line before the model runs, the signatures themselves (as a TF
    Serving client that calls them directly meets them) assert with a message that names the
    input, and grey frames score as the same frames in RGB."""
    import tensorflow as tf
    from aqa_tf.config import ConfigError
    from aqa_tf.serving import export_lib
    from aqa_tf.serving.scorer import Scorer
    scorer = Scorer.from_saved_model(exported[0])
    for windows, problem in [
            (np.empty([1, 0], object), r"window of shape \[1, 0\]: no frames"),
            (np.empty([1, 0, 64, 86, 3], np.uint8), "no frames"),
            (np.empty([0, 4, 64, 86, 3], np.uint8), "a batch of 0 windows"),
            (np.zeros([1, 4, 64, 86, 3], np.float32), "dtype float32; frames are uint8"),
            (np.zeros([1, 4, 64, 86, 4], np.uint8), r"\(RGB\) or .* \(grey\)")]:
        with pytest.raises(ConfigError, match=problem):
            scorer.score(windows)
    grey = dive_frames(64, 86)[-6:, :, :, 1]
    rgb = scorer.score(np.repeat(grey[None, ..., None], 3, axis=-1))["score"]
    for shape in ([1, 6, 64, 86], [1, 6, 64, 86, 1]):
        np.testing.assert_allclose(scorer.score(grey.reshape(shape))["score"], rgb, rtol=1e-6)
    signatures = tf.saved_model.load(exported[0]).signatures
    for name, inputs, message in [
            ("serving_default", {"video": tf.zeros([1, 0, 64, 86, 3], tf.uint8)},
             export_lib.NO_FRAMES.format("video")),
            ("serving_default", {"video": tf.zeros([0, 4, 64, 86, 3], tf.uint8)},
             export_lib.NO_VIDEO.format("video")),
            ("serving_jpeg", {"frames": tf.zeros([1, 0], tf.string)},
             export_lib.NO_FRAMES.format("frames"))]:
        batch = inputs[next(iter(inputs))].shape[0]
        with pytest.raises(tf.errors.InvalidArgumentError) as caught:
            signatures[name](difficulty=tf.zeros([batch]), **inputs)
        assert message in caught.value.message, caught.value.message


def test_a_score_far_outside_the_training_range_is_flagged(exported, videos, tmp_path):
    """Issue 24, case 8: a noise video scored 161 points (training scores 20-100) with no
    warning. An export records its training split's score range; predict warns about a
    score more than 10 % of that range outside it, on stderr and in the JSON, and exits 0."""
    import shutil
    from aqa_tf.serving import predict_lib
    meta = {"training_score_range": [20.0, 100.0]}
    assert predict_lib.outside_training_range(105.0, meta) == ""
    assert predict_lib.outside_training_range(161.0, meta).startswith(
        "score 161 is far outside the training scores (20 to 100)")
    assert predict_lib.outside_training_range(161.0, {}) == ""  # older exports: no range
    # An export whose training scores lay far above this random model's score.
    path = str(tmp_path / "export")
    shutil.copytree(exported[0], path)
    meta_path = os.path.join(path, "assets.extra", "aqa_tf.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["training_score_range"] = [1000.0, 1100.0]
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    out_json = str(tmp_path / "out.json")
    proc = run_cli("aqa_tf.predict", videos["stored"], f"--model={path}",
                   f"--output_json={out_json}", f"--output_dir={tmp_path}", "--noprogress")
    warning = [line for line in proc.stderr.splitlines() if "far outside" in line]
    assert len(warning) == 1 and warning[0].startswith(f"warning: {videos['stored']}: score ")
    assert "training scores (1000 to 1100)" in warning[0], warning
    with open(out_json) as f:
        assert "far outside" in json.load(f)[0]["warning"]
