"""USDL and MUSDL (Tang et al., CVPR 2020): the Gaussian targets and KL losses against numpy,
the read-outs and diving's rule on hand-made distributions, the calibration metric, and the
heads in a tiny model (shapes, a finite training step, what training reads, export entries)."""

import numpy as np
import pytest
import tensorflow as tf
import keras
from scipy import stats

from aqa_tf.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from aqa_tf.metrics import scores as metrics_lib
from aqa_tf.models import aqa_model, losses
from aqa_tf.models.heads import distribution
from aqa_tf.models.heads.base import Predictions, ReportContext

DATA = DataConfig(sample_length=32, num_frames=32, clip_length=16, clip_stride=16, crop_size=32)


def _model(heads, **options):
    config = ModelConfig(width_multiplier=0.0625, fc_units=0, heads=heads, **options)
    return aqa_model.build_aqa_model(config, DATA)


def _kl(t, p):
    return float(np.sum(np.where(t > 0, t * np.log(np.maximum(t, 1e-30) / p), 0.0)))


def test_gaussian_target_is_the_authors_normalised_pdf_on_the_bin_grid():
    """Authors' MTL-AQA/dataset.py: norm.pdf(arange(101), score * 100 / 104.5, 5) / its sum."""
    for centre in (50.0, 0.0, 97.3):
        pdf = stats.norm.pdf(np.arange(101), loc=centre, scale=5.0)
        target = np.asarray(losses.gaussian_bin_target(np.float32(centre), 101, 5.0))
        np.testing.assert_allclose(target, pdf / pdf.sum(), atol=1e-6)
        assert abs(target.sum() - 1.0) < 1e-5


def test_usdl_loss_is_kl_from_the_target_and_masks_missing_scores():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 101))
    p = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    y_true = np.array([52.25, 104.5, -1.0], "float32")  # bins 50 and 100; the last is missing
    per_sample = np.asarray(losses.ScoreDistributionLoss().call(y_true, p))
    for i, centre in enumerate((50.0, 100.0)):
        pdf = stats.norm.pdf(np.arange(101), loc=centre, scale=5.0)
        assert per_sample[i] == pytest.approx(_kl(pdf / pdf.sum(), p[i]), rel=1e-4)
    assert per_sample[2] == 0.0
    # A prediction equal to its target costs nothing.
    target = np.asarray(losses.gaussian_bin_target(np.float32(50.0), 101, 5.0))[None]
    assert float(losses.ScoreDistributionLoss().call(np.array([52.25]), target)[0]) < 1e-5


def test_musdl_loss_averages_the_present_judges_and_skips_samples_without_any():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 7, 21))
    p = tf.Variable((np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32"))
    judges = np.array([[8.5, 9.0, 9.0, 9.5, 8.0, 10.0, -1.0], [-1.0] * 7], "float32")
    with tf.GradientTape() as tape:
        per_sample = losses.JudgeDistributionLoss().call(judges, p)
        total = tf.reduce_sum(per_sample)
    expected = []
    for j in range(6):  # bins = score * 20 / 10
        pdf = stats.norm.pdf(np.arange(21), loc=judges[0, j] * 2.0, scale=5.0)
        expected.append(_kl(pdf / pdf.sum(), p.numpy()[0, j]))
    np.testing.assert_allclose(np.asarray(per_sample), [np.mean(expected), 0.0], rtol=1e-4)
    gradient = tape.gradient(total, p).numpy()
    assert np.isfinite(gradient).all() and not gradient[1].any() and not gradient[0, 6].any()


def test_readouts_std_and_quantiles_of_a_hand_made_distribution():
    p = np.array([[0.1, 0.5, 0.0, 0.0, 0.4]], "float32")  # bins at 0, 1, 2, 3, 4 points
    score, std, quantiles = distribution.BinnedScore(4.0, "argmax")(p)
    assert float(score[0]) == pytest.approx(1.0)
    mean = 0.5 * 1 + 0.4 * 4
    assert float(distribution.BinnedScore(4.0, "expectation")(p)[0][0]) == pytest.approx(mean)
    variance = 0.1 * mean ** 2 + 0.5 * (1 - mean) ** 2 + 0.4 * (4 - mean) ** 2
    assert float(std[0]) == pytest.approx(np.sqrt(variance), rel=1e-5)
    # cdf 0.1, 0.6, 0.6, 0.6, 1.0: the 5% quantile is bin 0, 25% bin 1, 75% and 95% bin 4.
    np.testing.assert_allclose(np.asarray(quantiles[0]), [0.0, 1.0, 4.0, 4.0])


def _one_hot_panel(scores, bins=21):
    return [np.eye(bins, dtype="float32")[[int(round(s * 2))]] for s in scores]


@pytest.mark.parametrize("panel,expected", [
    ([8.5, 9.0, 9.0, 9.0, 8.0, 9.5, 7.0], 8.5 + 9.0 + 9.0),  # 7, 8 and 9, 9.5 dropped
    ([9.0] * 7, 27.0),                                       # all tied
    ([6.0, 6.0, 6.0, 10.0, 10.0, 0.0, 6.0], 18.0),           # ties at the cut
])
def test_diving_rule_drops_two_highest_and_two_lowest_judges(panel, expected):
    _, judges, score, std, quantiles = distribution.JudgePanel("argmax")(
        _one_hot_panel(panel), np.array([3.0], "float32"))
    np.testing.assert_allclose(np.asarray(judges[0]), panel)
    assert float(score[0]) == pytest.approx(3.0 * expected)
    assert float(std[0]) == pytest.approx(0.0, abs=1e-5)  # certain judges: no spread
    np.testing.assert_allclose(np.asarray(quantiles[0]), [3.0 * expected] * 4, rtol=1e-6)
    five = np.array([[7.0, 9.0, 8.0, 6.0, 10.0]], "float32")
    assert float(distribution.middle_sum(five)[0]) == pytest.approx(24.0)


def test_musdl_spread_comes_from_the_judges_distributions():
    """Judges 0, 0, 5, 5, 10, 10 and one at 4.5 or 5.5 (even odds): the middle three sum to 14.5
    or 15.5, so the std is 0.5 and the 5/25% quantiles 14.5, the 75/95% ones 15.5."""
    panel = _one_hot_panel([0.0, 0.0, 5.0, 5.0, 10.0, 10.0, 0.0])
    panel[-1] = np.zeros((1, 21), "float32")
    panel[-1][0, 9] = panel[-1][0, 11] = 0.5
    _, _, _, std, quantiles = distribution.JudgePanel("expectation")(
        panel, np.array([1.0], "float32"))
    assert float(std[0]) == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_allclose(np.asarray(quantiles[0]), [14.5, 14.5, 15.5, 15.5])


def test_interval_coverage_counts_true_scores_inside_and_skips_missing():
    true = [10.0, 20.0, 30.0, -1.0]
    assert metrics_lib.interval_coverage(true, [5, 25, 30, 0], [15, 30, 35, 100]) == \
        pytest.approx(2 / 3)
    assert np.isnan(metrics_lib.interval_coverage([-1.0], [0], [1]))


@pytest.mark.parametrize("heads", [("usdl",), ("musdl", "dive")])
def test_heads_build_with_their_shapes_and_train_one_finite_step(heads):
    model = _model(heads)
    x, y = model.synthetic_batch(np.random.default_rng(0), 2)
    out = model(x)
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes["score"] == (2,) and shapes["score_std"] == (2,)
    assert shapes["score_quantiles"] == (2, 4)
    if heads[0] == "usdl":
        assert shapes["score_distribution"] == (2, 101) and "judge_scores" not in shapes
    else:
        assert shapes["score_distribution"] == (2, 7, 21) and shapes["judge_scores"] == (2, 7)
    assert np.allclose(np.asarray(out["score_distribution"]).sum(-1), 1.0, atol=1e-5)
    losses_, weights = model.loss_dicts(TrainConfig())
    assert set(losses_) >= {"score_distribution"} and "score" not in losses_
    model.compile(keras.optimizers.Adam(1e-4), loss=losses_, loss_weights=weights)
    assert np.isfinite(model.train_on_batch(x, y)).all()


def test_training_reads_the_distribution_targets_under_their_output_name():
    from aqa_tf.training.train_lib import select_model_io
    model = _model(("musdl",))
    judges = np.full((2, 7), 8.0, "float32")
    targets = {"score": np.array([70.0, 80.0], "float32"), "judge_scores": judges,
               "position": np.zeros(2, "int32")}
    inputs = {"video": np.zeros((2, DATA.num_clips, 16, 32, 32, 3), "float32"),
              "difficulty": np.ones(2, "float32"), "action": np.zeros(2, "int32")}
    x, y = next(iter(select_model_io(tf.data.Dataset.from_tensors((inputs, targets)), model)))
    assert set(x) == {"video", "difficulty"} and list(y) == ["score_distribution"]
    np.testing.assert_array_equal(y["score_distribution"].numpy(), judges)


def test_metrics_serving_outputs_and_metadata_say_it_is_a_distribution():
    model = _model(("usdl",))
    head = model.heads["usdl"]
    quantiles = np.array([[60, 65, 75, 80], [10, 20, 30, 40]], "float32")
    predictions = Predictions(["a", "b"], {"score": np.array([70.0, 45.0])},
                              {"score": np.array([71.0, 25.0]), "score_std": np.array([4, 8.0]),
                               "score_quantiles": quantiles})
    metrics = head.metrics(predictions, ReportContext(DATA, (0.0, 100.0)))
    assert metrics["coverage_50"] == 0.5 and metrics["coverage_90"] == 0.5
    assert metrics["mean_score_std"] == 6.0 and "spearman" in metrics
    served = head.serving_outputs({k: tf.constant(v) for k, v in predictions.outputs.items()},
                                  {})
    np.testing.assert_array_equal(served["score_interval_low"].numpy(), [60, 10])
    np.testing.assert_array_equal(served["score_interval_high"].numpy(), [80, 40])
    assert head.metadata()["predicts_distribution"] and not head.metadata()["uses_difficulty"]
    assert model.heads["usdl"].predicts_score


def test_musdl_round_trips_through_keras_save(tmp_path):
    model = _model(("musdl",), distribution_readout="expectation")
    path = str(tmp_path / "musdl.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    x, _ = model.synthetic_batch(np.random.default_rng(2), 1)
    for name, value in model(x).items():
        np.testing.assert_allclose(np.asarray(restored(x)[name]), np.asarray(value), atol=1e-5)


def test_config_needs_exactly_one_score_head_and_a_sane_panel():
    with pytest.raises(ConfigError, match="exactly one score head"):
        ModelConfig(heads=("score", "usdl")).validate()
    with pytest.raises(ConfigError, match="exactly one score head"):
        ModelConfig(heads=("dive",)).validate()
    with pytest.raises(ConfigError, match="musdl_judges=6"):
        ModelConfig(heads=("musdl",), musdl_judges=6).validate()
    with pytest.raises(ConfigError, match="multiply_difficulty"):
        ModelConfig(heads=("usdl",), multiply_difficulty=True).validate()
    ModelConfig(heads=("musdl", "dive")).validate()


def test_format_result_prints_the_interval_and_std():
    from aqa_tf.metrics import report
    result = {"video": "dive.mp4", "source_size": [240, 320], "source_frame_rate": 30.0,
              "frame_rate": 30.0, "window_start_time": 0.0, "window_end_time": 3.4,
              "score": 72.3125, "sub_actions": {}, "score_interval": [65.21, 79.04],
              "score_std": 4.12}
    assert "score           72.31 (90% interval 65.2-79.0, std 4.1)" in \
        report.format_result(result)
    summary = report.format_report({"split": "test", "checkpoint_description": "best",
                                    "metrics": {"num_samples": 2, "spearman": 0.5, "mae": 3.0,
                                                "coverage_50": 0.5, "coverage_90": 1.0}})
    assert "90% interval coverage" in summary and "50% interval coverage" in summary


def test_musdl_tflite_export_matches_the_window_function(tmp_path):
    """The panel sampling is cumsum, comparisons and sorts: TFLite builtins run it, and the
    flatbuffer gives the SavedModel window function's outputs, interval included."""
    from aqa_tf.serving import export_lib, tflite_lib
    data = DataConfig(sample_length=32, num_frames=32, clip_length=16, clip_stride=16,
                      crop_size=32, stored_height=40, stored_width=54)
    model = aqa_model.build_aqa_model(
        ModelConfig(width_multiplier=0.0625, fc_units=0, heads=("musdl",),
                    distribution_readout="expectation"), data)
    path = tmp_path / "musdl.tflite"
    path.write_bytes(tflite_lib.convert(model, data))
    window = np.random.default_rng(0).integers(0, 255, (data.window_length, 40, 54, 3),
                                               dtype=np.uint8)
    lite = tflite_lib.LiteModel(str(path)).run(window, 3.0)
    reference = export_lib.window_fn(model, data)(tf.constant(window[None]), tf.constant([3.0]))
    assert {"score", "score_std", "score_interval_low", "score_interval_high",
            "judge_scores"} <= set(reference)
    for name, value in reference.items():
        np.testing.assert_allclose(np.asarray(lite[name]), value.numpy(), rtol=1e-4, atol=1e-3)
    assert tflite_lib.read_metadata(str(path))["predicts_distribution"]
