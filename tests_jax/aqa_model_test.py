"""Every aggregation and head of `build_aqa_model` under JAX: build, forward, one training step
with the project's losses, and the weights through a `.weights.h5` file into a fresh model.

Tiny models (C3D at 1/16 width, 2 clips of 16 frames at 32x32; MSCADC at 1/16 on one clip)
combine several options per case so that each compiled training step covers as much as it
can: XLA's compilation is most of the time of these tests."""

import dataclasses

import numpy as np
import pytest

import keras

from aqa_tf import tasks
from aqa_tf.config import DataConfig, ModelConfig, TrainConfig
from aqa_tf.models import aqa_model
from aqa_tf.training.optim import TwoRateAdam
from tests_jax import helpers

VOCAB = 12
DATA = DataConfig(sample_length=32, num_frames=32, clip_length=16, clip_stride=16, crop_size=32,
                  max_caption_words=4)
MSCADC_DATA = dataclasses.replace(DATA, num_frames=16, sample_length=16)
# fc6 at 32 units: at 8, its dropout can silence every unit of a sample at once.
SMALL = dict(width_multiplier=0.0625, fc_units=32, heads=("score",))
CAPTION = dict(vocab_size=VOCAB, caption_hidden=8, caption_embedding=4)
# Paper 003's per-action normalisation: two actions, their training std and mean.
PER_ACTION = dataclasses.replace(DATA, score_normalization="per_action_standardized",
                                 action_score_std=(10.0, 4.0), action_score_mean=(60.0, 30.0))

CASES = {
    # C3D-AVG-MTL (paper 001): average, fc6, score and the five dive classifiers.
    "average_dive": (dict(SMALL, heads=("score", "dive")), DATA),
    # Paper 002: clip projection, Weight-Decider, difficulty x execution, two learning rates.
    "weight_decider_difficulty": (dict(SMALL, projection_units=(8,), aggregation="weight_decider",
                                       multiply_difficulty=True), DATA),
    # Paper 000's LSTM encoder with paper 003's per-action scores (action input).
    "lstm_encoder_per_action": (dict(SMALL, aggregation="lstm_encoder", lstm_units=4),
                                PER_ACTION),
    # Paper 003's C3D-LSTM: fc6 inside the backbone, N(0, 0.1) LSTM.
    "lstm_fc6": (dict(SMALL, aggregation="lstm", lstm_units=4, backbone_fc6=128, fc_units=0),
                 DATA),
    # S2VT caption head (paper 001): GRU; LSTM cells with attention (paper 000).
    "caption_gru": (dict(SMALL, heads=("score", "caption"), **CAPTION), DATA),
    "caption_lstm_attention": (dict(SMALL, heads=("score", "caption"), caption_cell="lstm",
                                    caption_attention=True, **CAPTION), DATA),
    # MSCADC (paper 001, Table 3): the dense score, dive and caption heads on one clip.
    "mscadc_all_heads": (dict(SMALL, backbone="mscadc", heads=("score", "dive", "caption"),
                              **CAPTION), MSCADC_DATA),
}


def _inputs(model, data_config, seed=0):
    rng = np.random.default_rng(seed)
    x = {"video": rng.standard_normal((2, data_config.num_clips, data_config.clip_length,
                                       data_config.crop_size, data_config.crop_size, 3)
                                      ).astype("float32")}
    if "difficulty" in model.input:
        x["difficulty"] = np.array([2.0, 3.5], "float32")
    if tasks.ACTION_INPUT in model.input:
        x[tasks.ACTION_INPUT] = np.array([1, 0], "int32")
    if tasks.CAPTION_TOKENS in model.input:
        x[tasks.CAPTION_TOKENS] = np.array([[1, 5, 6, 0, 0], [1, 7, 0, 0, 0]], "int32")
    return x


def _targets(model, config):
    y = {}
    for name in model.output:
        if name == tasks.SCORE_OUTPUT:
            y[name] = np.array([60.0, 35.0], "float32")
        elif name == tasks.NORMALIZED_SCORE_OUTPUT:
            y[name] = np.array([0.5, -1.0], "float32")
        elif name == tasks.CAPTION_OUTPUT:
            y[name] = np.array([[5, 6, 0, -1, -1], [7, 0, -1, -1, -1]], "int32")
        else:
            y[name] = np.array([1, 0], "int32") % config.class_counts[name]
    return y


@pytest.mark.parametrize("case", list(CASES))
def test_model_builds_trains_and_round_trips(case, tmp_path):
    options, data_config = CASES[case]
    config = ModelConfig(**options)
    keras.utils.set_random_seed(0)
    model = aqa_model.build_aqa_model(config, data_config)
    x = _inputs(model, data_config)
    out = helpers.outputs(model, x)
    assert out[tasks.SCORE_OUTPUT].shape == (2,)
    for name in config.class_counts if "dive" in config.heads else ():
        assert out[name].shape == (2, config.class_counts[name])
    if "caption" in config.heads:
        assert out[tasks.CAPTION_OUTPUT].shape == (2, data_config.max_caption_words + 1, VOCAB)
    assert all(np.isfinite(v).all() for v in out.values())
    if "difficulty" in x:  # the regressor predicts the execution part
        execution = keras.Model(model.input, model.get_layer("execution").output)
        np.testing.assert_allclose(out["score"], execution.predict_on_batch(x) * x["difficulty"],
                                   rtol=1e-5)
    if data_config.per_action_scores:  # points = std[action] * normalised + mean[action]
        np.testing.assert_allclose(out["score"], out["normalized_score"] * [4.0, 10.0]
                                   + [30.0, 60.0], rtol=1e-5)
    contributions = aqa_model.clip_contributions(model)
    if contributions is not None:
        clip_input = {k: v for k, v in x.items() if k != tasks.CAPTION_TOKENS}
        assert contributions[1].predict_on_batch(clip_input).shape == (2, data_config.num_clips)

    losses, weights = model.loss_dicts(TrainConfig(class_loss_weight=1.0,
                                                   caption_loss_weight=0.01))
    optimizer, backbone = None, aqa_model.backbone_of(model)
    if config.multiply_difficulty:  # paper 002: the backbone steps at a tenth of the rate
        optimizer = TwoRateAdam(learning_rate=1e-3, backbone_lr_multiplier=0.1)
        optimizer.set_backbone_variables(backbone.trainable_variables)
    before = {v.path: np.array(v) for v in model.trainable_variables}
    unchanged = helpers.train_one_step(model, x, _targets(model, config), losses, weights,
                                       optimizer=optimizer)
    if optimizer is not None:  # Adam's first step moves a weight by about its learning rate
        step = {v.path: np.abs(np.asarray(v) - before[v.path]).max()
                for v in model.trainable_variables}
        backbone_step = max(step[v.path] for v in backbone.trainable_variables)
        assert backbone_step < 0.2 * step["score_regressor/kernel"]
    helpers.assert_trained(model, unchanged)

    helpers.assert_weights_round_trip(
        model, lambda: aqa_model.build_aqa_model(config, data_config), x, tmp_path)


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_caption_generation(method):
    # keras-hub's samplers: under JAX they need no TensorFlow (the conftest blocks it); where
    # TensorFlow is installed, importing keras-hub imports it (captioning.py, docstring).
    config = ModelConfig(**CASES["caption_gru"][0])
    keras.utils.set_random_seed(0)
    model = aqa_model.build_aqa_model(config, DATA)
    video = _inputs(model, DATA)["video"]
    ids = np.asarray(aqa_model.CaptionGenerator(model, max_words=4, method=method,
                                                beam_size=2)(video))
    assert ids.shape == (2, 5) and ids.dtype == np.int32
    assert (ids[:, -1] == tasks.EOS_ID).all() and ((ids >= 0) & (ids < VOCAB)).all()
    if method == "greedy":  # each word is the argmax of the teacher-forced logits
        tokens = np.concatenate([np.full((2, 1), tasks.SOS_ID), ids[:, :-1]], axis=1).astype(
            "int32")
        logits = np.asarray(model({"video": video, tasks.CAPTION_TOKENS: tokens},
                                  training=False)[tasks.CAPTION_OUTPUT])
        for b in range(2):
            for t in range(4):
                if t and ids[b, t - 1] == tasks.EOS_ID:
                    break
                assert ids[b, t] == np.argmax(logits[b, t])
