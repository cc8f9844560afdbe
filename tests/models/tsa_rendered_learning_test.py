"""TSA finds the steps of rendered dives, end to end: pixels -> I3D -> PSNet -> transitions.

`tsa_learning_test.py` trains the head on designed clip features; here the whole model learns
from the synthetic generator's videos, whose steps (take-off on the platform, flight, entry in
the splash) have known transition frames (`synthetic.dive_steps`). 64 training dives of 40
frames (48x64), windows of 36 frames in 8 clips of 8 frames every 4, 32x32 crops, a 1/8-width
I3D from random weights, exemplars of the query's dive number (3 types), 5 voters, Adam 3e-3,
24 epochs (192 steps of 8 pairs), scored on 24 held-out dives.

`--backbone_bn_momentum=0.9`: with I3D's own 0.99 (pytorch-i3d's 0.01) the moving statistics
lag behind a backbone that trains from random weights in 200 steps, and the evaluation, which
uses them, misses what training learned. Measured (AMD EPYC Zen 4, seed 0, 64 dives): at 0.99
the test transitions were 2.67 / 1.38 frames off after 16 epochs and 2.62 / 2.04 after 32 (the
held-out dives' own mean transitions, rounded: 2.75 / 1.71), on the training split itself worse
than the training split's mean although the transition loss had fallen from 0.108 to 0.052;
at 0.9, 2.17 / 1.12 after 16 epochs and 1.96 / 0.71 after 32 (correlation with the true
transitions 0.72 / 0.90).

Two runs of the same model, as two tests. The transition loss alone (`--score_loss_weight=0`)
learns the transitions. The authors' loss (score differences of both directions +
transitions, 1:1) from the start learns the score: held-out Spearman 0.879 / 0.958 / 0.884 for
seeds 0 / 1 / 2 (untrained 0.25-0.27, whose exemplars of the query's dive number already rank
the dives a little), but not the transitions: the transition loss stays at ~0.10, a flat
guess's level, and the transitions miss by 3.3-5.7 frames, as on the designed features
(`tsa_learning_test.py`). With the score loss at 0.002 instead of 1 it is the same (Spearman
0.91, transitions 3.75 / 3.92 frames off), and 16 epochs of the 1:1 loss after the transitions
erode them (2.92 / 3.79 frames off, Spearman 0.51).
"""

import numpy as np
import pytest

from aqa_tf.config import DataConfig, ModelConfig, TrainConfig

FRAMES, TRAIN, TEST, EPOCHS = 36, 64, 24, 24
# Bars: the trained model finds the middle step (AIoU@0.5) of at least 0.9 of the held-out
# dives and at IoU 0.75 of at least 0.85, the untrained one under both; it misses the
# transitions by less than 0.85 of what the held-out dives' own mean transitions miss them by
# (that constant guess, which knows the test split's mean: 2.75 / 1.71 frames off, AIoU 1.0 and
# 0.83, since the middle step is long);
# its transitions follow the true ones (mean correlation of the two >= 0.5; the untrained
# model's under it). Five runs (AMD EPYC Zen 4; seeds 0, 1, 2 with 2 threads, seeds 0, 1 with
# the suite's 1 thread per worker): AIoU@0.75 0.92-0.96 (untrained 0.29-0.38), error ratio
# 0.64-0.76, mean correlation 0.58-0.79. The entry (the splash) is found in every run (0.58-1.33
# frames off, correlation 0.62-0.91); the take-off, where the diver starts to move, less
# reliably (1.54-2.71 frames off, correlation 0.34-0.79; seed 0 with one thread: 2.71, 0.34, no
# better than the mean transition). The untrained AIoU@0.5 is 0.71 / 0.75 / 0.96 for seeds
# 0 / 1 / 2 (a flat guess often catches the long middle step), hence the fixed seed.
AIOU_BARS, ERROR_RATIO, CORR = {0.5: 0.9, 0.75: 0.85}, 0.85, 0.5
# Under the authors' loss: held-out Spearman >= 0.75, the untrained model's under 0.5 (its
# exemplars of the query's dive number already rank the dives a little: 0.25).
LEARNED_RHO, UNTRAINED_RHO = 0.75, 0.5


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from aqa_tf.data import synthetic
    folder = str(tmp_path_factory.mktemp("tsa_rendered"))
    synthetic.write_tfrecords(folder, synthetic.SyntheticDataConfig(
        num_train=TRAIN, num_test=TEST, num_frames=FRAMES + 4, height=48, width=64,
        steps=True, dive_types=3), judges=True)
    return folder


def _held_out(model, data):
    """The test dives' true and predicted transitions `[TEST, 2]`, and the metrics."""
    from aqa_tf.training import evaluation
    evaluator = evaluation.Evaluator(model, data, (0.0, 100.0))
    predictions = evaluator.predict("test")
    metrics = evaluation.evaluate_predictions(model, predictions, evaluator.context("test"))
    return (predictions.targets["step_transitions"], predictions.outputs["step_transitions"],
            metrics)


def _summary(truth, guess):
    from aqa_tf.metrics.procedure import aiou
    return {"aiou": aiou(truth, guess),
            "error": np.abs(guess - truth).mean(0),
            "corr": [float(np.corrcoef(guess[:, i], truth[:, i])[0, 1])
                     if guess[:, i].std() > 0 else 0.0 for i in (0, 1)]}


def _train(records, score_loss_weight):
    """The model untrained (its held-out transitions and metrics), then trained for `EPOCHS`
    with the score loss at `score_loss_weight` (the transition loss at 1): `(truth,
    untrained transitions, untrained metrics, trained transitions, trained metrics, loss
    history)`."""
    import keras

    from aqa_tf.data import pipeline
    from aqa_tf.models import aqa_model
    from aqa_tf.training import train_lib

    data = DataConfig(data_dir=records, train_split="train", test_split="test",
                      stored_height=48, stored_width=64, sample_length=FRAMES,
                      num_frames=FRAMES, clip_length=8,
                      clip_starts=tuple(range(0, FRAMES - 7, 4)), crop_size=32, batch_size=8,
                      val_fraction=0.0, temporal_jitter=1)
    keras.utils.set_random_seed(0)
    model = aqa_model.build_aqa_model(ModelConfig(
        backbone="i3d", width_multiplier=0.125, backbone_bn_momentum=0.9,
        aggregation="average", fc_units=0, dropout=0.0, heads=("tsa",), tsa_heads=2,
        tsa_layers=1, exemplar_match="dive_number", voters=5), data)
    truth, untrained_cut, untrained_metrics = _held_out(model, data)

    losses, weights = model.loss_dicts(TrainConfig(score_loss_weight=score_loss_weight))
    model.compile(keras.optimizers.Adam(3e-3), loss=losses, loss_weights=weights)
    pairs = pipeline.build_dataset(data, "train", training=True,
                                   exemplar_pairs=("dive_number", False), include_steps=True,
                                   deterministic=True)
    history = model.fit(train_lib.select_model_io(pairs, model), epochs=EPOCHS, verbose=0,
                        callbacks=model.heads["tsa"].callbacks(TrainConfig(epochs=EPOCHS)))
    truth_after, cut, metrics = _held_out(model, data)
    np.testing.assert_array_equal(truth_after, truth)
    return truth, untrained_cut, untrained_metrics, cut, metrics, history.history


def _report(truth, cut, untrained_cut, history):
    constant = np.repeat(np.round(truth.mean(0))[None], TEST, 0)
    result = {name: _summary(truth, guess) for name, guess in
              (("trained", cut), ("untrained", untrained_cut), ("constant", constant))}
    loss = history["step_probs_loss"]
    print(f"transition loss {loss[0]:.3f} -> {loss[-1]:.3f}; " + "; ".join(
        f"{name}: AIoU {r['aiou']}, error {np.round(r['error'], 2).tolist()} frames, "
        f"correlation {np.round(r['corr'], 2).tolist()}" for name, r in result.items()))
    return result


def test_tsa_finds_the_steps_of_rendered_dives(records):
    """The transition loss alone (`--score_loss_weight=0`)."""
    truth, untrained_cut, _, cut, metrics, history = _train(records, 0.0)
    result = _report(truth, cut, untrained_cut, history)
    trained, untrained = result["trained"], result["untrained"]
    assert metrics["aiou@0.5"] == pytest.approx(trained["aiou"][0.5])
    for threshold, bar in AIOU_BARS.items():
        assert trained["aiou"][threshold] >= bar > untrained["aiou"][threshold], threshold
    assert trained["error"].mean() < ERROR_RATIO * result["constant"]["error"].mean()
    assert np.mean(trained["corr"]) >= CORR > np.mean(untrained["corr"])


def test_tsa_scores_rendered_dives_under_the_authors_loss(records):
    """The authors' loss (score differences of both directions + transitions, 1:1) from the
    start learns the score; the transitions it does not learn (measured, not asserted)."""
    truth, untrained_cut, untrained, cut, trained, history = _train(records, 1.0)
    _report(truth, cut, untrained_cut, history)
    print(f"held-out Spearman: trained {trained['spearman']:.3f}, untrained "
          f"{untrained['spearman']:.3f}")
    assert trained["spearman"] >= LEARNED_RHO > UNTRAINED_RHO > untrained["spearman"]
