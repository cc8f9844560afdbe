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


def test_per_action_spearman_is_named_as_the_records_name_their_actions():
    """JIGSAWS' task 1 is Suturing, AQA-7's action 1 diving: the names come from the records'
    `action_name` (collected by the evaluation), AQA-7's only for records without one."""
    head = _model(("usdl",)).heads["usdl"]
    true, pred = np.array([10, 20, 30, 6, 7, 8.0]), np.array([11, 19, 35, 8, 7, 6.0])
    outputs = {"score": pred, "score_std": np.ones(6), "score_quantiles": np.zeros((6, 4))}
    actions = np.array([1, 1, 1, 2, 2, 2])
    for names, expected in (({1: "Suturing", 2: "Needle_Passing"}, ("Suturing", "Needle_Passing")),
                            ({}, ("diving", "gym_vault"))):
        metrics = head.metrics(Predictions(list("abcdef"), {"score": true}, outputs, actions,
                                           names), ReportContext(DATA, (0.0, 100.0)))
        assert metrics[f"spearman/{expected[0]}"] == pytest.approx(1.0)
        assert metrics[f"spearman/{expected[1]}"] == pytest.approx(-1.0)


def test_metrics_serving_outputs_and_metadata_say_it_is_a_distribution():
    model = _model(("usdl",))
    head = model.heads["usdl"]
    quantiles = np.array([[60, 65, 75, 80], [10, 20, 30, 40]], "float32")
    distribution = np.random.default_rng(0).dirichlet(np.ones(101), size=2).astype("float32")
    predictions = Predictions(["a", "b"], {"score": np.array([70.0, 45.0])},
                              {"score": np.array([71.0, 25.0]), "score_std": np.array([4, 8.0]),
                               "score_quantiles": quantiles, "score_distribution": distribution})
    metrics = head.metrics(predictions, ReportContext(DATA, (0.0, 100.0)))
    assert metrics["coverage_50"] == 0.5 and metrics["coverage_90"] == 0.5
    assert metrics["mean_score_std"] == 6.0 and "spearman" in metrics
    served = head.serving_outputs({k: tf.constant(v) for k, v in predictions.outputs.items()},
                                  {})
    np.testing.assert_array_equal(served["score_interval_low"].numpy(), [60, 10])
    np.testing.assert_array_equal(served["score_interval_high"].numpy(), [80, 40])
    np.testing.assert_array_equal(served["score_distribution"].numpy(), distribution)
    metadata = head.metadata()
    assert metadata["predicts_distribution"] and not metadata["uses_difficulty"]
    # The score of the first and the last of the 101 bins: --usdl_score_min/max.
    assert metadata["distribution_range"] == pytest.approx(
        [model.model_config.usdl_score_min, model.model_config.usdl_score_max])
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


# --- JIGSAWS (authors' JIGSAWS/opts.py, main.py): USDL over the total GRS 6..30, MUSDL over the
# 6 GRS elements 1..5 with their sum as the total ---------------------------------------------

JIGSAWS_MUSDL = dict(heads=("musdl",), musdl_judges=6, musdl_bins=5, musdl_judge_min=1.0,
                     musdl_judge_max=5.0, musdl_rule="sum", distribution_std=1.0)


def _normalised_pdf(grid, centre, std):
    pdf = stats.norm.pdf(grid, loc=centre, scale=std)
    return pdf / pdf.sum()


def test_usdl_bins_over_6_to_30_are_the_jigsaws_totals():
    """25 bins over 6..30 (authors' `np.arange(6, 31)`): the argmax read-out of bin k is 6 + k,
    and the target is their `proc_label`, the normal pdf at 6..30 around the total (std 1)."""
    one_hot = np.eye(25, dtype="float32")
    score, std, quantiles = distribution.BinnedScore(30.0, "argmax", 6.0)(one_hot)
    np.testing.assert_array_equal(np.asarray(score), np.arange(6, 31))
    np.testing.assert_allclose(np.asarray(std), 0.0, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(quantiles), np.repeat(np.arange(6, 31)[:, None], 4, 1))
    p = np.zeros((1, 25), "float32")
    p[0, [2, 10]] = [0.75, 0.25]  # totals 8 and 16
    assert float(distribution.BinnedScore(30.0, "argmax", 6.0)(p)[0][0]) == 8.0
    assert float(distribution.BinnedScore(30.0, "expectation", 6.0)(p)[0][0]) == \
        pytest.approx(0.75 * 8 + 0.25 * 16)
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((3, 25))
    p = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    totals = np.array([6.0, 17.0, 30.0], "float32")
    per_sample = np.asarray(losses.ScoreDistributionLoss(25, 1.0, 30.0, 6.0).call(totals, p))
    for i, total in enumerate(totals):
        target = _normalised_pdf(np.arange(6, 31), total, 1.0)
        assert per_sample[i] == pytest.approx(_kl(target, p[i]), rel=1e-4)
    clone = losses.ScoreDistributionLoss.from_config(
        losses.ScoreDistributionLoss(25, 1.0, 30.0, 6.0).get_config())
    assert (clone.bins, clone.score_min, clone.score_max) == (25, 6.0, 30.0)
    assert distribution.BinnedScore.from_config(
        distribution.BinnedScore(30.0, "argmax", 6.0).get_config()).score_min == 6.0
    config = ModelConfig(heads=("usdl",), usdl_bins=25, usdl_score_min=6.0,
                         usdl_score_max=30.0).validate()
    with pytest.raises(ConfigError, match="usdl_score_min=30.0, usdl_score_max=30.0"):
        ModelConfig(heads=("usdl",), usdl_score_min=30.0, usdl_score_max=30.0).validate()
    assert config.usdl_score_min == 6.0


def test_musdl_sum_rule_over_six_judges_1_to_5_is_the_hand_computation():
    """The JIGSAWS panel: 6 judges (GRS elements) over bins 1..5; the total is their sum, no
    difficulty; the loss per judge is the KL from the authors' pdf at 1..5 (std 1)."""
    elements = [3.0, 4.0, 2.0, 5.0, 1.0, 3.0]
    panel = [np.eye(5, dtype="float32")[[int(e) - 1]] for e in elements]
    sum_panel = distribution.JudgePanel("argmax", rule="sum", judge_min=1.0, judge_max=5.0)
    _, judges, score, std, quantiles = sum_panel(panel)
    np.testing.assert_array_equal(np.asarray(judges[0]), elements)
    assert float(score[0]) == 18.0 and float(std[0]) == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(np.asarray(quantiles[0]), [18.0] * 4)
    # One judge unsure between 2 and 4 (49:51; argmax 4): the other five sum to 16, so 49% of
    # the panels total 18 and 51% total 20 under the sum rule: std 2 * sqrt(0.49 * 0.51).
    panel[2] = np.array([[0.0, 0.49, 0.0, 0.51, 0.0]], "float32")
    _, judges, score, std, quantiles = sum_panel(panel)
    assert float(judges[0, 2]) == 4.0 and float(score[0]) == 20.0
    assert float(std[0]) == pytest.approx(2 * np.sqrt(0.49 * 0.51), rel=1e-4)
    np.testing.assert_allclose(np.asarray(quantiles[0]), [18.0, 18.0, 20.0, 20.0])
    expected = distribution.JudgePanel("expectation", rule="sum", judge_min=1.0, judge_max=5.0)
    _, judges, score, _, _ = expected(panel)
    assert float(judges[0, 2]) == pytest.approx(0.49 * 2 + 0.51 * 4)
    assert float(score[0]) == pytest.approx(16.0 + 0.49 * 2 + 0.51 * 4)
    # The loss: per judge the KL from norm.pdf(arange(1, 6), element, 1), averaged over the
    # judges present (the last is missing).
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((1, 6, 5))
    p = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    true = np.array([elements[:5] + [-1.0]], "float32")
    loss = losses.JudgeDistributionLoss(5, 1.0, 5.0, 1.0).call(true, p)
    kls = [_kl(_normalised_pdf(np.arange(1, 6), e, 1.0), p[0, j])
           for j, e in enumerate(elements[:5])]
    assert float(loss[0]) == pytest.approx(np.mean(kls), rel=1e-4)
    clone = distribution.JudgePanel.from_config(sum_panel.get_config())  # saved models
    assert (clone.rule, clone.judge_min, clone.judge_max) == ("sum", 1.0, 5.0)
    clone = losses.JudgeDistributionLoss.from_config(
        losses.JudgeDistributionLoss(5, 1.0, 5.0, 1.0).get_config())
    assert (clone.judge_min, clone.judge_max) == (1.0, 5.0)


def test_musdl_sum_rule_model_reads_no_difficulty_and_trains_on_six_judges():
    model = _model(**JIGSAWS_MUSDL)
    assert "difficulty" not in model.input
    x, y = model.synthetic_batch(np.random.default_rng(0), 2)
    present = y["score_distribution"][y["score_distribution"] >= 0]
    assert set(np.unique(present)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    out = model(x)
    assert tuple(out["score_distribution"].shape) == (2, 6, 5)
    np.testing.assert_allclose(np.asarray(out["score"]),
                               np.asarray(out["judge_scores"]).sum(-1), rtol=1e-6)
    losses_, weights = model.loss_dicts(TrainConfig())
    model.compile(keras.optimizers.Adam(1e-4), loss=losses_, loss_weights=weights)
    assert np.isfinite(model.train_on_batch(x, y)).all()
    head = model.heads["musdl"]
    assert head.metadata()["uses_difficulty"] is False
    assert head.metadata()["panel_rule"] == "sum"
    assert head.dataset_options == {"include_judges": True, "num_judges": 6}


def test_judges_target_takes_the_models_panel_size_and_masks_other_panels():
    from aqa_tf.data import pipeline
    six = pipeline.judge_scores_target(tf.constant([3.0, 4, 2, 5, 1, 3]), 6)
    np.testing.assert_array_equal(six.numpy(), [3, 4, 2, 5, 1, 3])
    seven = pipeline.judge_scores_target(tf.constant([8.0] * 7), 6)  # another panel: missing
    np.testing.assert_array_equal(seven.numpy(), [-1.0] * 6)
    np.testing.assert_array_equal(pipeline.judge_scores_target(tf.constant([3.0] * 6)).numpy(),
                                  [-1.0] * 7)  # the default panel is MTL-AQA's 7


def test_diving_rule_refuses_a_panel_of_six_with_one_error_line(tmp_path):
    from tests.helpers import run_module, user_error
    with pytest.raises(ConfigError, match="musdl_rule=diving .* musdl_judges=6.*musdl_rule=sum"):
        ModelConfig(**{**JIGSAWS_MUSDL, "musdl_rule": "diving"}).validate()
    with pytest.raises(ConfigError, match="musdl_judge_min=5.0, musdl_judge_max=5.0"):
        ModelConfig(**{**JIGSAWS_MUSDL, "musdl_judge_min": 5.0}).validate()
    proc = run_module("aqa_tf.train", "--heads=musdl", "--musdl_judges=6",
                      f"--model_dir={tmp_path}/run", timeout=300)
    print(user_error(proc, "musdl_rule=diving", "musdl_judges=6"))
