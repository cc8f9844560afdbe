"""USDL and MUSDL learn, and their intervals are calibrated: each head, as the model builds it
(its MLP, read-out and loss), trained on synthetic clip features that carry the score, scored on
held-out samples with the head's own report metrics (Spearman, interval coverage).

The features stand in for a pretrained backbone's (the authors' setting: Kinetics I3D features,
`nzl-thu/MUSDL` `MTL-AQA/main.py`), so the test is about the head and its loss, not about learning
a backbone from scratch: 32-d Gaussian features, a latent quality `sigmoid(w . x)`, scores and
judges made of it with noise. Controls: the same head untrained, and trained on shuffled targets.
"""

import keras
import numpy as np
import pytest
from scipy import stats

from aqa_tf import tasks
from aqa_tf.config import DataConfig, ModelConfig, TrainConfig
from aqa_tf.models.heads import distribution
from aqa_tf.models.heads.base import Features, Predictions, ReportContext
from aqa_tf.registry import HEADS

DIM, TRAIN, TEST = 32, 512, 256
# Bars: the trained head ranks held-out samples at Spearman >= 0.9 and its 90% interval holds
# the true score for >= 70% of them (the calibration bar); the controls rank below 0.3.
LEARNED_RHO, CONTROL_RHO, COVERAGE_90 = 0.9, 0.3, 0.7


def _head_model(name):
    """The head's layers on a features input, compiled with the head's own loss."""
    config = ModelConfig(heads=(name,), fc_units=0)
    head = HEADS.get(name).create(config, DataConfig())
    pooled = keras.Input((DIM,), name="pooled")
    inputs = {"pooled": pooled}
    if getattr(head, "uses_difficulty", False):  # MUSDL, diving rule
        inputs[tasks.DIFFICULTY_INPUT] = keras.Input((), name=tasks.DIFFICULTY_INPUT)
    model = keras.Model(inputs, head.build(Features(inputs=inputs, clips=None, pooled=pooled)))
    (output, (loss, _weight)), = head.losses(TrainConfig()).items()
    model.compile(keras.optimizers.Adam(1e-3), loss={output: loss})
    return head, model, output


def _synthetic(name, rng):
    """(inputs, target, final score) of TRAIN + TEST samples."""
    x = rng.normal(size=(TRAIN + TEST, DIM)).astype("float32")
    w = rng.normal(size=DIM).astype("float32") * 2 / np.sqrt(DIM)
    quality = 1 / (1 + np.exp(-(x @ w)))
    inputs = {"pooled": x}
    if name == "usdl":  # a final score over 15..95 of MTL-AQA's 0..104.5, noise 3 points
        score = np.clip(15 + 80 * quality + rng.normal(0, 3, quality.shape), 0, 104.5)
        return inputs, score.astype("float32"), score.astype("float32")
    # seven judges on the 0.5 grid around 2..9, each with its own noise; diving's rule x DD
    judges = 2 + 7 * quality[:, None] + rng.normal(0, 0.4, (len(quality), 7))
    judges = np.clip(np.round(judges * 2) / 2, 0, 10).astype("float32")
    difficulty = rng.uniform(1.5, 3.8, len(quality)).astype("float32")
    inputs[tasks.DIFFICULTY_INPUT] = difficulty
    return inputs, judges, np.asarray(distribution.middle_sum(judges)) * difficulty


def _held_out(head, model, inputs, target, score):
    outputs = model.predict({k: v[TRAIN:] for k, v in inputs.items()}, verbose=0)
    targets = {tasks.SCORE_OUTPUT: score[TRAIN:]}
    if target.ndim == 2:
        targets[distribution.JUDGE_SCORES] = target[TRAIN:]
    predictions = Predictions([str(i) for i in range(TEST)], targets,
                              {k: np.asarray(v) for k, v in outputs.items()})
    metrics = head.metrics(predictions, ReportContext(DataConfig(), (0.0, 104.5)))
    # Execution: the score without the difficulty, which MUSDL is given, not learns.
    difficulty = inputs.get(tasks.DIFFICULTY_INPUT, np.ones(len(score), "float32"))[TRAIN:]
    metrics["execution_spearman"] = stats.spearmanr(
        outputs[tasks.SCORE_OUTPUT] / difficulty, score[TRAIN:] / difficulty)[0]
    return metrics


@pytest.mark.parametrize("name", ["usdl", "musdl"])
def test_distribution_head_learns_and_its_90_percent_interval_covers(name):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs, target, score = _synthetic(name, rng)
    train = {k: v[:TRAIN] for k, v in inputs.items()}

    head, model, output = _head_model(name)
    untrained = _held_out(head, model, inputs, target, score)
    model.fit(train, {output: target[:TRAIN]}, batch_size=32, epochs=30, verbose=0)
    learned = _held_out(head, model, inputs, target, score)

    keras.utils.set_random_seed(0)
    head, shuffled_model, _ = _head_model(name)
    shuffled_model.fit(train, {output: target[:TRAIN][rng.permutation(TRAIN)]}, batch_size=32,
                       epochs=30, verbose=0)
    shuffled = _held_out(head, shuffled_model, inputs, target, score)
    print(f"{name}: learned {learned}\n untrained {untrained}\n shuffled {shuffled}")

    assert learned["spearman"] >= LEARNED_RHO
    assert learned["execution_spearman"] >= LEARNED_RHO
    assert learned["coverage_90"] >= COVERAGE_90
    assert learned["coverage_50"] < learned["coverage_90"]
    # ... and not by being vague: an untrained head is wide (USDL: std 30 points, covers all).
    assert learned["mean_score_std"] < untrained["mean_score_std"]
    # A constant untrained read-out has no Spearman (nan): that is below the bar too.
    for control in (untrained, shuffled):
        assert not abs(control["execution_spearman"]) >= CONTROL_RHO
    assert shuffled["coverage_90"] < learned["coverage_90"]
    if name == "musdl":
        assert learned["judge_mae"] < 1.0 < shuffled["judge_mae"]  # judge noise: 0.4 each
