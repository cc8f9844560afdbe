"""Task heads of the AQA models (paper 001: score regressor and dive classifier)."""

from typing import Dict, Optional, Sequence

import keras
from keras import layers, ops

from aqa_tf import tasks


@keras.saving.register_keras_serializable(package="aqa_tf")
class ScoreOutput(layers.Layer):
    """Turns the regressor's normalised output `[batch, 1]` into a score `[batch]`.

    The regressor is trained on scores divided by `score_std` (17 for MTL-AQA), so the model's
    `score` output is in judges' points: `score = score_std * regressor_output`.
    """

    def __init__(self, score_std: float = 17.0, **kwargs):
        super().__init__(**kwargs)
        self.score_std = float(score_std)

    def call(self, normalised):
        return ops.squeeze(ops.cast(normalised, "float32"), axis=-1) * self.score_std

    def compute_output_shape(self, input_shape):
        return input_shape[:-1]

    def get_config(self):
        return {**super().get_config(), "score_std": self.score_std}


@keras.saving.register_keras_serializable(package="aqa_tf")
class MultiplyDifficulty(layers.Layer):
    """`score = difficulty x execution` (paper 002): `[batch]` x `[batch]` -> `[batch]`."""

    def call(self, execution, difficulty):
        return execution * ops.reshape(ops.cast(difficulty, "float32"), (-1,))

    def compute_output_shape(self, execution_shape, difficulty_shape):
        return execution_shape


@keras.saving.register_keras_serializable(package="aqa_tf")
class PerActionScore(layers.Layer):
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


def per_action_score_outputs(normalised: keras.KerasTensor, action: keras.KerasTensor,
                             action_score_std: Sequence[float],
                             action_score_mean: Sequence[float] = ()
                             ) -> Dict[str, keras.KerasTensor]:
    """`score` in points and `normalized_score` (what the loss compares, paper 003) from the
    regressor's output `[batch, 1]` and the action ids `[batch]`."""
    return {tasks.SCORE_OUTPUT: PerActionScore(action_score_std, action_score_mean,
                                               name="score")(normalised, action),
            tasks.NORMALIZED_SCORE_OUTPUT: ScoreOutput(1.0, name="normalized_score")(normalised)}


def score_output(normalised: keras.KerasTensor, score_std: float,
                 difficulty: Optional[keras.KerasTensor] = None) -> keras.KerasTensor:
    """The regressor's output `[batch, 1]` (score / score_std) -> `score [batch]` in points.

    With `difficulty` (`[batch]`), the regressor predicts the execution part and the score is
    difficulty x execution (paper 002).
    """
    if difficulty is None:
        return ScoreOutput(score_std, name="score")(normalised)
    execution = ScoreOutput(score_std, name="execution")(normalised)
    return MultiplyDifficulty(dtype="float32", name="score")(execution, difficulty)


def dive_heads(features: keras.KerasTensor,
               class_counts: Dict[str, int]) -> Dict[str, keras.KerasTensor]:
    """`features [batch, dim]` -> one logits tensor `[batch, num_classes]` per sub-action.

    Returns:
      dict output name (`position`, `armstand`, `rotation_type`, `somersaults`, `twists`) ->
      logits (float32, so that mixed precision keeps the softmax in full precision).
    """
    return {name: layers.Dense(count, dtype="float32", name=name)(features)
            for name, count in class_counts.items()}
