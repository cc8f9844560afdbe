"""A TSA model (`--heads=tsa`) end to end on synthetic dives with steps: the pipeline gives the
transitions of the query and the exemplar within the model's frames, the model trains on pairs
(the annotated transitions cut the steps until `--tsa_label_fraction` of the epochs, then the
predicted ones), its evaluation reports AIoU beside Spearman, its export carries the bank of
exemplar step maps and scores as the evaluation does, and `aqa_tf.predict` prints the steps
and writes the step plot. (Learning is shown by `tests/models/tsa_learning_test.py`.)"""

import dataclasses
import json
import os

import numpy as np
import pytest

from aqa_tf.config import DataConfig, ModelConfig, TrainConfig
from tests.helpers import run_cli

FRAMES = 24  # the model's frames: 6 clips of 8 frames, 4 apart (the transitions count these)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from aqa_tf.data import synthetic
    folder = str(tmp_path_factory.mktemp("tsa_records"))
    synthetic.write_tfrecords(folder, synthetic.SyntheticDataConfig(
        num_train=16, num_test=6, num_frames=28, height=48, width=64, steps=True,
        dive_types=3), judges=True)
    return folder


def _data_config(records, **options):
    return DataConfig(data_dir=records, train_split="train", test_split="test",
                      stored_height=48, stored_width=64, sample_length=FRAMES,
                      num_frames=FRAMES, clip_length=8, clip_starts=(0, 4, 8, 12, 16),
                      crop_size=32, batch_size=4, val_fraction=0.0, temporal_jitter=1,
                      **options)


def _model(data, **options):
    import keras

    from aqa_tf.models import aqa_model
    keras.utils.set_random_seed(0)
    config = ModelConfig(backbone="i3d", width_multiplier=0.125, aggregation="average",
                         fc_units=0, dropout=0.0, heads=("tsa",), tsa_heads=2, tsa_layers=1,
                         **options)
    return aqa_model.build_aqa_model(config, data)


def test_window_transitions_are_the_first_frames_of_the_later_steps(records):
    """The transitions of a record within a window are the first frames of its second and last
    steps among the model's frames (the FineDiving authors' `transits + 1`), from the stored
    per-frame labels; the synthetic dives' stored transitions are the last frames of the first
    two steps (FineDiving's `steps_transit_frames`)."""
    import tensorflow as tf

    from aqa_tf import tasks
    from aqa_tf.data import features, pipeline
    from aqa_tf.data.shards import shard_patterns

    data = _data_config(records)
    files = tf.io.gfile.glob(shard_patterns(records, "train")[0])
    checked = 0
    for serialized in tf.data.TFRecordDataset(files).take(6):
        record = features.parse_sequence_example(serialized)
        labels = record[features.FRAME_STEP_LABELS].numpy()
        stored = record[features.STEP_TRANSITIONS].numpy()
        np.testing.assert_array_equal(np.flatnonzero(np.diff(labels)), stored)
        end = int(record[features.END_INDEX].numpy())
        window = np.maximum(end - FRAMES + 1 + np.arange(FRAMES), 0)
        in_window = labels[window]
        first = [int(np.argmax(in_window == step)) for step in (1, 2)]
        got = pipeline.window_transitions(record, tf.constant(end, tf.int64), data).numpy()
        np.testing.assert_array_equal(got, first)
        checked += 1
    assert checked == 6
    # In the evaluation batches they are the query's target.
    inputs, targets = next(iter(pipeline.build_dataset(data, "test", training=False,
                                                       include_steps=True)))
    assert targets[tasks.STEP_TRANSITIONS].shape == (4, 2)
    assert np.all(targets[tasks.STEP_TRANSITIONS].numpy() > 0)


def test_tsa_trains_on_pairs_and_switches_to_its_own_transitions(records):
    import keras

    from aqa_tf.data import pipeline
    from aqa_tf.models.heads import core, tsa
    from aqa_tf.training import evaluation, train_lib

    data = _data_config(records)
    model = _model(data, exemplar_match="dive_number", voters=3, tsa_label_fraction=0.5)
    head = model.heads["tsa"]
    inference = model.inference_model()
    assert set(inference.input) == {"video", core.EXEMPLAR_FEATURES, core.EXEMPLAR_TARGETS}
    assert set(inference.output) == {"score", core.VOTER_SCORES, tsa.VOTER_STEP_CONTRIBUTIONS,
                                     "step_transitions", tsa.STEP_CONTRIBUTIONS}
    losses, weights = model.loss_dicts(TrainConfig())
    # Eagerly: four steps are checked here, and tracing TSA's training step as a graph costs
    # more than they do (CI time); the graph path trains in tests/models/tsa_learning_test.py.
    model.compile(keras.optimizers.Adam(1e-3), loss=losses, loss_weights=weights,
                  run_eagerly=True)
    pairs = pipeline.build_dataset(data, "train", training=True,
                                   exemplar_pairs=("dive_number", False), include_steps=True)
    inputs, targets = next(iter(pairs))
    np.testing.assert_array_equal(inputs[tsa.QUERY_TRANSITIONS], targets["step_transitions"])
    np.testing.assert_array_equal(inputs[tsa.EXEMPLAR_TRANSITIONS],
                                  targets[tsa.EXEMPLAR_TRANSITIONS])
    np.testing.assert_allclose(targets["relative_score"],
                               inputs["query_target"] - inputs["exemplar_target"], rtol=1e-6)
    # The annotated transitions cut the steps for the first half of 4 epochs (epochs 0-2: the
    # authors' `epoch / max_epoch <= prob_tas_threshold`), then the predicted ones.
    callbacks = head.callbacks(TrainConfig(epochs=4))
    switches = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: switches.append(
        float(head.query_cut.use_labels.numpy())))
    before = [np.array(w) for w in model.trainable_weights]
    # One batch an epoch: what is checked is the schedule and that the pairs train the model.
    history = model.fit(train_lib.select_model_io(pairs, model).take(1), epochs=4, verbose=0,
                        callbacks=callbacks + [record])
    assert switches == [1.0, 1.0, 1.0, 0.0]
    assert all(np.isfinite(v).all() for v in history.history.values())
    assert sum(not np.allclose(b, np.asarray(w))
               for b, w in zip(before, model.trainable_weights)) > len(before) // 2

    evaluator = evaluation.Evaluator(model, data, (0.0, 100.0))
    predictions = evaluator.predict("test")
    out = predictions.outputs
    votes = out[core.VOTER_SCORES]
    assert votes.shape == (6, 3)
    np.testing.assert_allclose(out["score"], votes.mean(-1), rtol=1e-5)
    # The voters are training dives of the query's dive number, never the query.
    (bank,) = evaluator.predictor.extra_inputs
    for key in predictions.keys:
        assert key not in bank.index.keys
    shares = out[tsa.STEP_CONTRIBUTIONS]
    assert shares.shape == (6, 3)
    transitions = out["step_transitions"]
    assert transitions.shape == (6, 2)
    assert np.all((transitions >= 1) & (transitions <= FRAMES - 1))
    metrics = evaluation.evaluate_predictions(model, predictions, evaluator.context("test"))
    assert {"spearman", "aiou@0.5", "aiou@0.75"} <= set(metrics)
    from aqa_tf.metrics.procedure import aiou
    expected = aiou(predictions.targets["step_transitions"], transitions)
    assert metrics["aiou@0.5"] == pytest.approx(expected[0.5])


def test_export_scores_with_its_bank_and_predict_shows_the_steps(records, tmp_path):
    """With as many voters as training dives of a type, the export's bank and the evaluation use the
    same exemplars: each test window's exported score, transitions and step shares equal the
    evaluation's, and the TFLite flatbuffer's (`tflite_lib.convert`: builtin ops, the bank
    inside, the dive type's row looked up in its metadata) equal the SavedModel's.
    `aqa_tf.predict --dive_type --plot` prints the steps with their frames and times and writes
    the step plot. (Weights are untrained: the check is about the bank, the lookup and the
    outputs.)"""
    from aqa_tf.data import pipeline, video
    from aqa_tf.models.heads import tsa
    from aqa_tf.serving import export_lib
    from aqa_tf.serving.scorer import Scorer
    from aqa_tf.training import evaluation
    from tests.helpers import synthetic_sample

    # Evaluation batches of one: a batch's queries share the smallest voter count among them.
    data = dataclasses.replace(_data_config(records), batch_size=1)
    model = _model(data, exemplar_match="dive_number", voters=16)
    # PSNet's last layer drawn wider (sd 3): untrained, its transition probabilities are nearly
    # flat, and float round-off, which differs between TensorFlow and TFLite, then decides
    # where they peak (one window of six moved by two frames in a trial).
    last = max((layer for layer in model._flatten_layers() if layer.name.startswith(
        "tas_dense")), key=lambda layer: int(layer.name[len("tas_dense"):]))
    last.kernel.assign(np.random.default_rng(0).normal(0, 3, last.kernel.shape))
    predictions = evaluation.Evaluator(model, data, (0.0, 100.0)).predict("test")
    by_key = {k: i for i, k in enumerate(predictions.keys)}
    path = export_lib.export_saved_model(model, data, str(tmp_path / "tsa" / "1"))
    scorer = Scorer.from_saved_model(path)
    assert scorer.meta["step_names"] == ["take-off", "flight", "entry"]
    assert scorer.meta["step_frames"] == list(range(FRAMES))
    gaps = []
    for window in pipeline.serving_windows(data, "test").as_numpy_iterator():
        out = scorer.score(np.asarray([window["frames"]], object), [window["difficulty"]],
                           dive_number=[window["dive_number"].decode()])
        i = by_key[window["sample_key"].decode()]
        gaps.append(abs(float(out["score"][0]) - predictions.outputs["score"][i]))
        np.testing.assert_array_equal(out["step_transitions"][0],
                                      predictions.outputs["step_transitions"][i])
        np.testing.assert_allclose(out[tsa.STEP_CONTRIBUTIONS][0],
                                   predictions.outputs[tsa.STEP_CONTRIBUTIONS][i], atol=1e-3)
    print(f"export vs evaluation: largest gap {max(gaps):.2e} points")
    assert max(gaps) <= 0.05

    dive = scorer.meta["exemplar_values"][0]
    sample = synthetic_sample("test", 0, 28, 48, 64)
    video_path = str(tmp_path / "dive.mp4")
    video.write_video(video_path, sample.frames, 25)
    out_dir = str(tmp_path / "out")
    proc = run_cli("aqa_tf.predict", video_path, f"--model={path}", f"--dive_type={dive}",
                   "--plot", f"--output_dir={out_dir}",
                   f"--output_json={tmp_path / 'results.json'}", "--noprogress")
    print(proc.stdout)
    with open(tmp_path / "results.json") as f:
        (result,) = json.load(f)
    steps = result["steps"]
    assert [s["name"] for s in steps] == ["take-off", "flight", "entry"]
    assert steps[0]["first_frame"] == 0 and steps[-1]["last_frame"] == FRAMES - 1
    for before, after in zip(steps, steps[1:]):
        assert after["first_frame"] == before["last_frame"] + 1
        assert after["start_time"] > before["end_time"] - 1e-6
    exemplar_mean = np.mean([e["score"] for e in result["exemplars"]])
    assert sum(s["contribution"] for s in steps) == pytest.approx(
        result["score"] - exemplar_mean, abs=1e-3)
    for step in steps:
        assert f"{step['name']:<12}frames {step['first_frame']:>3}-" in proc.stdout
    assert os.path.getsize(os.path.join(out_dir, "dive_steps.png")) > 10_000

    # The demo page's model scores as predict does and shows the step plot and table.
    from aqa_tf.serving import demo_app
    demo = demo_app.DemoModel(scorer, path, str(tmp_path / "demo"))
    shown = demo.score(video_path, dive_type=dive)
    assert shown["score"] == pytest.approx(result["score"], abs=1e-4)
    assert shown["plot"].endswith("steps.png") and os.path.getsize(shown["plot"]) > 10_000
    table = demo_app.exemplars_text(shown)
    for step in steps:
        assert f"| {step['name']} | {step['first_frame']}-{step['last_frame']} |" in table

    # TFLite (LiteRT), on the same windows as the SavedModel.
    from aqa_tf.serving import tflite_lib
    lite_path = str(tmp_path / "tsa.tflite")
    with open(lite_path, "wb") as f:
        f.write(tflite_lib.convert(model, data))
    lite = tflite_lib.scorer(lite_path)
    assert lite.meta["step_names"] == ["take-off", "flight", "entry"]
    for window in pipeline.serving_windows(data, "test").as_numpy_iterator():
        args = (np.asarray([window["frames"]], object), [window["difficulty"]])
        dive_number = [window["dive_number"].decode()]
        a, b = lite.score(*args, dive_number=dive_number), scorer.score(
            *args, dive_number=dive_number)
        assert abs(float(a["score"][0]) - float(b["score"][0])) < 1e-3
        np.testing.assert_array_equal(a["step_transitions"], b["step_transitions"])
        np.testing.assert_allclose(a[tsa.STEP_CONTRIBUTIONS], b[tsa.STEP_CONTRIBUTIONS],
                                   atol=1e-3)
        assert list(a["exemplar_keys"][0]) == list(b["exemplar_keys"][0])
    # aqa_tf.predict on the flatbuffer: the same steps as on the SavedModel, and the step plot.
    proc = run_cli("aqa_tf.predict", video_path, f"--model={lite_path}", f"--dive_type={dive}",
                   "--plot", f"--output_dir={tmp_path / 'lite_out'}",
                   f"--output_json={tmp_path / 'lite.json'}", "--noprogress")
    with open(tmp_path / "lite.json") as f:
        (lite_result,) = json.load(f)
    assert lite_result["score"] == pytest.approx(result["score"], abs=1e-3)
    assert [(s["name"], s["first_frame"], s["last_frame"]) for s in lite_result["steps"]] == [
        (s["name"], s["first_frame"], s["last_frame"]) for s in steps]
    assert os.path.getsize(tmp_path / "lite_out" / "dive_steps.png") > 10_000
