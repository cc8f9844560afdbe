"""A distribution head (USDL) from export to a user: the SavedModel serves the distribution, its
spread and the 90% interval; `aqa_tf.predict` prints the score with its interval and writes the
distribution PNG; `aqa_tf.serving_client` (gRPC, against tests/tf_serving_standin.py) prints the
same table. The model is the quickstart network with the `usdl` head and random weights: what is
tested is the plumbing, not the numbers (tests/models/distribution_learning_test.py learns)."""

import json
import os

import numpy as np
import pytest

from tests.helpers import run_cli
from tests.predict_test import dive_frames, quickstart_model

MODEL = "usdl"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from aqa_tf.serving import export_lib
    folder = tmp_path_factory.mktemp("saved_models")
    model, data_config = quickstart_model("--heads=usdl,dive")
    return export_lib.export_saved_model(model, data_config, str(folder / MODEL / "1"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from aqa_tf.data import video as video_lib
    path = str(tmp_path_factory.mktemp("videos") / "dive.mp4")
    video_lib.write_video(path, dive_frames(128, 171), 25)
    return path


def test_saved_model_serves_the_distribution_and_its_interval(export):
    import tensorflow as tf
    from aqa_tf.serving import predict_lib
    signature = tf.saved_model.load(export).signatures["serving_default"]
    outputs = signature.structured_outputs
    assert {"score", "score_std", "score_interval_low", "score_interval_high",
            "score_distribution", "position_probabilities"} <= set(outputs)
    assert outputs["score_distribution"].shape.as_list() == [None, 101]
    meta = predict_lib.open_scorer(export).meta
    assert meta["predicts_distribution"] and meta["distribution_range"] == [0.0, 104.5]
    assert meta["score_interval"] == 0.9 and meta["score_readout"] == "argmax"


def test_predict_prints_the_interval_and_writes_the_distribution_png(export, video, tmp_path):
    out_json = str(tmp_path / "results.json")
    proc = run_cli("aqa_tf.predict", video, f"--model={export}", "--plot",
                   f"--output_dir={tmp_path}", f"--output_json={out_json}", "--noprogress")
    print(proc.stdout)
    with open(out_json) as f:
        (result,) = json.load(f)
    low, high = result["score_interval"]
    assert (f"  score           {result['score']:.2f} (90% interval {low:.1f}-{high:.1f}, "
            f"std {result['score_std']:.1f})") in proc.stdout
    distribution = np.asarray(result["score_distribution"])
    assert distribution.shape == (101,) and distribution.sum() == pytest.approx(1.0, abs=1e-4)
    # The read-out is the argmax bin (authors' compute_score), bins 1.045 points apart.
    assert result["score"] == pytest.approx(np.argmax(distribution) * 1.045, abs=1e-3)
    values = np.arange(101) * 1.045
    mean = float(distribution @ values)
    assert result["score_std"] == pytest.approx(
        np.sqrt(distribution @ (values - mean) ** 2), rel=1e-3)
    png = tmp_path / "dive_distribution.png"
    assert f"  distribution    {png}" in proc.stdout and os.path.getsize(png) > 10_000
    assert os.path.getsize(tmp_path / "dive_clips.png") > 20_000


def test_serving_client_prints_the_interval(export, video, tmp_path):
    from aqa_tf.metrics import report as reporting
    from aqa_tf.serving import predict_lib
    from tests.tf_serving_standin import TFServingStandin
    reference = predict_lib.score_dive(predict_lib.Scorer.from_saved_model(export), video,
                                       progress=False)
    assert "90% interval" in reporting.format_result(reference)
    out_json = str(tmp_path / "served.json")
    with TFServingStandin({MODEL: {1: export}}) as standin:
        proc = run_cli("aqa_tf.serving_client", video, f"--server={standin.grpc_address}",
                       f"--model_name={MODEL}", f"--output_json={out_json}", "--noprogress")
    assert reporting.format_result(reference) in proc.stdout
    with open(out_json) as f:
        (served,) = json.load(f)
    np.testing.assert_allclose(served["score_interval"], reference["score_interval"], atol=1e-4)
    np.testing.assert_allclose(served["score_distribution"], reference["score_distribution"],
                               atol=1e-5)


def test_musdl_plot_shows_each_judge_and_the_table_their_scores(tmp_path):
    from aqa_tf.metrics import report as reporting
    rng = np.random.default_rng(0)
    judges = rng.dirichlet(np.ones(21), 7)
    result = {"video": "dive.mp4", "source_size": [64, 86], "source_frame_rate": 25.0,
              "frame_rate": 25.0, "window_start_time": 0.0, "window_end_time": 2.0,
              "score": 50.4, "sub_actions": {}, "score_interval": [40.0, 60.5],
              "score_std": 6.2, "score_distribution": judges.tolist(),
              "judge_scores": (np.argmax(judges, -1) * 0.5).tolist()}
    table = reporting.format_result(result)
    assert "  judges          " + " ".join(f"{v:.1f}" for v in result["judge_scores"]) in table
    meta = {"distribution_range": [0.0, 10.0]}
    path = reporting.plot_distribution(result, meta, str(tmp_path / "musdl.png"))
    assert os.path.getsize(path) > 10_000
