"""Per-action score normalisation (paper 003, learning across actions on AQA-7).

The model also reads the action id (`action [batch]`, 1-based); the regressor predicts the
score divided by its action's training standard deviation, `score = std[action] * output`
(plus `mean[action]` where the targets were standardised). The loss compares the normalised
scores (`normalized_score`); missing targets are NaN there, since standardised scores can be
negative.
"""

from typing import Dict, Sequence

import keras
from keras import ops

from aqa_tf import tasks
from aqa_tf.models.heads.base import Features
from aqa_tf.models.heads.score import ScoreHead, ScoreOutput
from aqa_tf.models.losses import ScoreLoss
from aqa_tf.registry import SCORE_HEADS


@keras.saving.register_keras_serializable(package="aqa_tf")
class PerActionScore(keras.layers.Layer):
    """Per-action score normalisation (paper 003): the regressor predicts the score divided by
    its action's training standard deviation; `score = std[action] * regressor_output`, plus
    `mean[action]` where the targets were standardised (`action_score_mean`; empty: none).

    Inputs `[batch, 1]` and the action ids `[batch]` (int); output `[batch]` in points.
    """

    def __init__(self, action_score_std: Sequence[float] = (),
                 action_score_mean: Sequence[float] = (), **kwargs):
        super().__init__(**kwargs)
        self.action_score_std = tuple(float(v) for v in action_score_std)
        self.action_score_mean = tuple(float(v) for v in action_score_mean)

    def to_points(self, normalised, action):
        """`normalised` (any shape `[batch, ...]`) in points for the actions `[batch]`."""
        action = ops.reshape(ops.cast(action, "int32"), (-1,))
        extra = (1,) * (len(normalised.shape) - 1)
        std = ops.reshape(ops.take(ops.convert_to_tensor(self.action_score_std, "float32"),
                                   action), (-1,) + extra)
        points = ops.cast(normalised, "float32") * std
        if self.action_score_mean:
            points += ops.reshape(ops.take(ops.convert_to_tensor(self.action_score_mean,
                                                                 "float32"), action),
                                  (-1,) + extra)
        return points

    def call(self, normalised, action):
        return self.to_points(ops.squeeze(normalised, axis=-1), action)

    def compute_output_shape(self, normalised_shape, action_shape):
        return normalised_shape[:-1]

    def get_config(self):
        return {**super().get_config(), "action_score_std": list(self.action_score_std),
                "action_score_mean": list(self.action_score_mean)}


@SCORE_HEADS.register("per_action")
@SCORE_HEADS.register("per_action_standardized")
class PerActionScoreHead(ScoreHead):
    """`score [batch]` in points and `normalized_score [batch]` (what the loss compares)."""

    def add_inputs(self, inputs):
        if self.model_config.multiply_difficulty:
            raise ValueError("--multiply_difficulty and per-action score normalisation do "
                             "not combine (the action's deviation scales the whole score)")
        if not self.data_config.action_score_std:
            raise ValueError(f"score_normalization={self.data_config.score_normalization}: "
                             "the per-action score deviations of the training split are "
                             "missing (data.statistics.with_action_statistics)")
        inputs[tasks.ACTION_INPUT] = keras.Input((), dtype="int32", name=tasks.ACTION_INPUT)

    def build(self, features: Features) -> Dict[str, keras.KerasTensor]:
        normalised = self.regress(features)
        self._points = PerActionScore(self.data_config.action_score_std,
                                      self.data_config.action_score_mean,
                                      name=tasks.SCORE_OUTPUT)
        self._normalized = ScoreOutput(1.0, name=tasks.NORMALIZED_SCORE_OUTPUT)
        return {tasks.SCORE_OUTPUT: self._points(normalised, features.inputs[tasks.ACTION_INPUT]),
                tasks.NORMALIZED_SCORE_OUTPUT: self._normalized(normalised)}

    def clip_scores(self, clip_features, inputs):
        if self.regressor is None:
            return None
        return self._points.to_points(self._normalized(self.regressor(clip_features)),
                                      inputs[tasks.ACTION_INPUT])

    def losses(self, train_config):
        # Paper 003: the loss compares per-action normalised scores, not points.
        return {tasks.NORMALIZED_SCORE_OUTPUT: (ScoreLoss(1.0, signed=True),
                                                train_config.score_loss_weight)}

    def synthetic_batch(self, rng, batch, x, y):
        x[tasks.ACTION_INPUT] = rng.integers(1, len(self.data_config.action_score_std),
                                             batch).astype("int32")
        y[tasks.SCORE_OUTPUT] = rng.uniform(10, 100, batch).astype("float32")
        y[tasks.NORMALIZED_SCORE_OUTPUT] = rng.standard_normal(batch).astype("float32")

    def metadata(self):
        return {**super().metadata(), "uses_action": True, "actions": list(tasks.AQA7_ACTIONS)}
