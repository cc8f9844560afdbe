"""The score head: the judges' score, regressed from the video feature (paper 001), optionally
as difficulty x execution (paper 002, `--multiply_difficulty`).

The regressor predicts the score divided by `--score_std` (17 for MTL-AQA); the `score` output
is in judges' points. MSCADC models regress it from the context net of their feature map
(`mscadc.score_regressor`). Per-action normalisation (paper 003) is the subclass in
`per_action_score.py`, which `make_score_head` chooses when the data configuration asks for it.
"""

from typing import Dict, Optional

import keras
import numpy as np
from keras import layers, ops

from aqa_tf import tasks
from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.metrics import scores as metrics_lib
from aqa_tf.models.heads import mscadc
from aqa_tf.models.heads.base import Features, Head, Predictions, ReportContext
from aqa_tf.models.losses import ScoreLoss
from aqa_tf.registry import HEADS, SCORE_HEADS


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


@HEADS.register("score")
@SCORE_HEADS.register("global")
class ScoreHead(Head):
    """`score [batch]` in points; with `--multiply_difficulty` the model also reads
    `difficulty [batch]` and the regressor predicts the execution part. `create` picks the
    variant of `--score_normalization` (`registry.SCORE_HEADS`)."""

    name = "score"
    predicts_score = True

    @classmethod
    def create(cls, model_config: ModelConfig, data_config: DataConfig) -> Head:
        kind = SCORE_HEADS.get(data_config.score_normalization, "score_normalization")
        return kind(model_config, data_config)

    def add_inputs(self, inputs):
        if self.model_config.multiply_difficulty:
            inputs[tasks.DIFFICULTY_INPUT] = keras.Input((), name=tasks.DIFFICULTY_INPUT)

    def regress(self, features: Features):
        """The regressor's output `[batch, 1]` (score / score_std)."""
        if features.feature_map is not None:
            self.regressor = None  # one clip: nothing to score per clip
            return mscadc.score_regressor(features.feature_map)
        self.regressor = layers.Dense(1, dtype="float32", name="score_regressor")
        return self.regressor(features.pooled)

    def build(self, features: Features) -> Dict[str, keras.KerasTensor]:
        normalised = self.regress(features)
        difficulty = features.inputs.get(tasks.DIFFICULTY_INPUT)
        if difficulty is None:
            self._to_points = ScoreOutput(self.model_config.score_std, name=tasks.SCORE_OUTPUT)
            return {tasks.SCORE_OUTPUT: self._to_points(normalised)}
        self._to_points = ScoreOutput(self.model_config.score_std, name="execution")
        score = MultiplyDifficulty(dtype="float32", name=tasks.SCORE_OUTPUT)(
            self._to_points(normalised), difficulty)
        return {tasks.SCORE_OUTPUT: score}

    def clip_scores(self, clip_features, inputs) -> Optional[keras.KerasTensor]:
        """The score the head gives each clip's feature alone, `[batch, num_clips]` in points
        (`clip_features`: `[batch, num_clips, dim]` after fc6), or None."""
        if self.regressor is None:
            return None
        points = self._to_points(self.regressor(clip_features))
        if tasks.DIFFICULTY_INPUT in inputs:
            points = points * ops.expand_dims(inputs[tasks.DIFFICULTY_INPUT], -1)
        return points

    def losses(self, train_config):
        return {tasks.SCORE_OUTPUT: (ScoreLoss(self.model_config.score_std),
                                     train_config.score_loss_weight)}

    def synthetic_batch(self, rng, batch, x, y):
        if self.model_config.multiply_difficulty:
            x[tasks.DIFFICULTY_INPUT] = rng.uniform(1.5, 3.8, batch).astype("float32")
        y[tasks.SCORE_OUTPUT] = rng.uniform(10, 100, batch).astype("float32")

    def metrics(self, predictions: Predictions, context: ReportContext) -> Dict[str, float]:
        true = predictions.targets[tasks.SCORE_OUTPUT]
        pred = predictions.outputs[tasks.SCORE_OUTPUT]
        result = metrics_lib.compute_metrics(true, pred, score_range=context.score_range)
        if predictions.actions is not None and np.any(predictions.actions > 0):
            # Multi-action datasets (AQA-7, JIGSAWS): Spearman per action, named as the records
            # name their action ids (AQA-7's names for records without), and the Fisher-z
            # average.
            top = max(int(np.max(predictions.actions)), len(tasks.AQA7_ACTIONS))
            names = [predictions.action_names.get(i, tasks.AQA7_ACTIONS[i - 1]
                                                  if i <= len(tasks.AQA7_ACTIONS) else
                                                  f"action_{i}") for i in range(1, top + 1)]
            result.update(metrics_lib.per_action_metrics(true, pred, predictions.actions,
                                                         names))
        return result

    def report(self, predictions, metrics, files_prefix, context):
        from aqa_tf.metrics import report
        title = f"{context.split} split, {context.checkpoint_label}"
        result = {"scatter_plot": report.scatter_plot(
            f"{files_prefix}_scatter.png", predictions.targets[tasks.SCORE_OUTPUT],
            predictions.outputs[tasks.SCORE_OUTPUT], metrics["spearman"], title=title)}
        if "spearman_fisher_z" in metrics:
            result["action_table"] = report.write_action_table(f"{files_prefix}_actions",
                                                               metrics, title=title)
        return result

    def serving_outputs(self, outputs, inputs):
        return {tasks.SCORE_OUTPUT: ops.cast(outputs[tasks.SCORE_OUTPUT], "float32")}

    def metadata(self) -> Dict:
        return {"uses_difficulty": bool(self.model_config.multiply_difficulty),
                "uses_action": False, "actions": [],
                "action_score_std": list(self.data_config.action_score_std),
                "action_score_mean": list(self.data_config.action_score_mean)}
