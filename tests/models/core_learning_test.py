"""The CoRe head learns: its layers as the model builds them (pair feature, regression tree, the
two directions' losses, the voters' read-out), trained on pairs of synthetic clip features of
the same dive type and scored on held-out samples against 10 training exemplars each.

As in `distribution_learning_test.py`, the features stand in for a pretrained backbone's: 32-d
Gaussian features, an execution `30 * sigmoid(w . x)` with noise, 6 dive types each with its
difficulty, score = difficulty x execution (the authors' MTL-AQA protocol with the difficulty
known). Controls: the same head untrained, and trained on shuffled executions.
"""

import keras
import numpy as np
from scipy import stats

from aqa_tf import tasks
from aqa_tf.config import DataConfig, ModelConfig, TrainConfig
from aqa_tf.data import exemplars
from aqa_tf.models.heads import core
from aqa_tf.models.heads.base import Features

DIM, TRAIN, TEST, TYPES = 32, 480, 160, 6
# Bars: the trained head ranks held-out scores at Spearman >= 0.9 (execution ranks >= 0.8); the
# controls rank executions below 0.4 (the score's ranking is partly the difficulty's, which
# every model multiplies in: the controls are judged on the execution).
LEARNED_RHO, LEARNED_EXECUTION_RHO, CONTROL_RHO = 0.9, 0.8, 0.4


def _data(rng):
    w = rng.standard_normal(DIM)
    x = rng.standard_normal((TRAIN + TEST, DIM)).astype("float32")
    execution = 30 / (1 + np.exp(-(x @ w) / 3)) + rng.normal(0, 0.5, TRAIN + TEST)
    execution = np.clip(execution, 0, 30).astype("float32")
    kind = rng.integers(0, TYPES, TRAIN + TEST)
    difficulty = np.round(np.linspace(1.6, 3.6, TYPES), 1)[kind].astype("float32")
    return x, execution, kind, difficulty


def _head_models(groups):
    config = ModelConfig(heads=("core",), fc_units=0, core_tree_depth=4, core_hidden=64,
                         core_difficulty=True, core_groups=tuple(groups.reshape(-1)))
    head = core.CoReHead(config, DataConfig())
    video = keras.Input((DIM,), name="video")
    inputs = {"video": video}
    head.add_inputs(inputs)
    outputs = head.build(Features(inputs=inputs, clips=None, pooled=video, encode=lambda v: v))
    train = keras.Model({k: v for k, v in inputs.items()},
                        {k: outputs[k] for k in (core.CORE_TREE, core.CORE_TREE_REVERSE)})
    losses = {k: loss for k, (loss, _) in head.losses(TrainConfig()).items()}
    train.compile(keras.optimizers.Adam(1e-3), loss=losses)
    infer = keras.Model({"video": video, tasks.DIFFICULTY_INPUT: inputs[tasks.DIFFICULTY_INPUT],
                         **head.inference_inputs}, head.inference_outputs)
    return train, infer


def _pairs(rng, kind, execution, epochs):
    """Query and exemplar indices: each training sample, `epochs` times, with a random other
    sample of its type (the authors' `random.randint` over the type's list)."""
    by_type = {t: np.flatnonzero(kind[:TRAIN] == t) for t in range(TYPES)}
    query = np.tile(np.arange(TRAIN), epochs)
    exemplar = np.array([rng.choice(by_type[kind[q]][by_type[kind[q]] != q]) for q in query])
    return query, exemplar


def _fit(model, x, target, query, exemplar, difficulty):
    inputs = {"video": x[query], core.EXEMPLAR_VIDEO: x[exemplar],
              core.EXEMPLAR_TARGET: target[exemplar], core.QUERY_TARGET: target[query],
              tasks.DIFFICULTY_INPUT: difficulty[query]}
    relative = target[query] - target[exemplar]
    model.fit(inputs, {core.CORE_TREE: relative, core.CORE_TREE_REVERSE: relative},
              batch_size=32, epochs=1, verbose=0, shuffle=True)


def _held_out(infer, x, target, kind, difficulty, rng):
    """Score and execution Spearman of the test samples, each against 10 training samples of
    its type (features and executions of the training split: the bank)."""
    index = exemplars.ExemplarIndex(
        keys=[str(i) for i in range(TRAIN)], scores=target[:TRAIN] * difficulty[:TRAIN],
        difficulties=difficulty[:TRAIN], dive_numbers=[str(k) for k in kind[:TRAIN]],
        actions=np.zeros(TRAIN))
    voters = np.array([exemplars.choose_voters(index, "dive_number", str(kind[i]), 10, rng)
                       for i in range(TRAIN, TRAIN + TEST)])
    out = infer.predict({"video": x[TRAIN:], tasks.DIFFICULTY_INPUT: difficulty[TRAIN:],
                         core.EXEMPLAR_FEATURES: x[voters],
                         core.EXEMPLAR_TARGETS: target[voters]}, verbose=0)
    assert out[core.VOTER_SCORES].shape == (TEST, 10)
    np.testing.assert_allclose(out[tasks.SCORE_OUTPUT], out[core.VOTER_SCORES].mean(-1),
                               rtol=1e-5)
    score = out[tasks.SCORE_OUTPUT]
    true = target[TRAIN:] * difficulty[TRAIN:]
    return (stats.spearmanr(score, true)[0],
            stats.spearmanr(score / difficulty[TRAIN:], target[TRAIN:])[0])


def test_core_learns_relative_scores_and_controls_do_not():
    rng = np.random.default_rng(0)
    x, execution, kind, difficulty = _data(rng)
    groups_of = {t: list(np.flatnonzero(kind[:TRAIN] == t)) for t in range(TYPES)}
    deltas = exemplars.pair_deltas(execution[:TRAIN], groups_of)
    groups = exemplars.group_boundaries(deltas, depth=4, score_range=30)
    query, exemplar = _pairs(rng, kind, execution, epochs=12)

    keras.utils.set_random_seed(0)
    trained, infer = _head_models(groups)
    untrained_rho, untrained_execution = _held_out(infer, x, execution, kind, difficulty,
                                                   np.random.default_rng(1))
    _fit(trained, x, execution, query, exemplar, difficulty)
    rho, execution_rho = _held_out(infer, x, execution, kind, difficulty,
                                   np.random.default_rng(1))

    keras.utils.set_random_seed(0)
    shuffled, shuffled_infer = _head_models(groups)
    _fit(shuffled, x, execution[np.r_[rng.permutation(TRAIN), np.arange(TRAIN, TRAIN + TEST)]],
         query, exemplar, difficulty)
    _, shuffled_execution = _held_out(shuffled_infer, x, execution, kind, difficulty,
                                      np.random.default_rng(1))
    print(f"held-out Spearman: trained {rho:.3f} (execution {execution_rho:.3f}), untrained "
          f"execution {untrained_execution:.3f}, shuffled execution {shuffled_execution:.3f}")
    assert rho >= LEARNED_RHO and execution_rho >= LEARNED_EXECUTION_RHO
    assert abs(untrained_execution) < CONTROL_RHO and abs(shuffled_execution) < CONTROL_RHO
