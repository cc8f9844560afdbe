"""The dive head: what was done, as five sub-action labels (paper 001: position, armstand,
rotation type, somersaults, twists), one classifier per label.

Clip models classify the video feature with one dense layer per label; MSCADC models classify
the context net of their feature map (`mscadc.dive_classifier`). Logits are float32, so mixed
precision keeps the softmax in full precision. A label missing from a record (-1) adds no loss
and is left out of its accuracy.
"""

from typing import Dict

import keras
from keras import layers, ops

from aqa_tf import tasks
from aqa_tf.metrics import scores as metrics_lib
from aqa_tf.models.heads import mscadc
from aqa_tf.models.heads.base import Features, Head, Predictions, ReportContext
from aqa_tf.models.losses import MaskedSparseCategoricalCrossentropy
from aqa_tf.registry import HEADS


@HEADS.register("dive")
class DiveHead(Head):
    """One logits output `[batch, classes]` per sub-action of `--class_counts`."""

    name = "dive"

    @property
    def class_counts(self) -> Dict[str, int]:
        return self.model_config.class_counts

    def build(self, features: Features) -> Dict[str, keras.KerasTensor]:
        if features.feature_map is not None:
            return mscadc.dive_classifier(features.feature_map, self.class_counts)
        return {name: layers.Dense(count, dtype="float32", name=name)(features.pooled)
                for name, count in self.class_counts.items()}

    def losses(self, train_config):
        return {name: (MaskedSparseCategoricalCrossentropy(), train_config.class_loss_weight)
                for name in self.class_counts}

    def synthetic_batch(self, rng, batch, x, y):
        for name, count in self.class_counts.items():
            y[name] = rng.integers(0, count, batch).astype("int32")

    def metrics(self, predictions: Predictions, context: ReportContext) -> Dict[str, float]:
        names = [n for n in self.class_counts if n in predictions.targets]
        return metrics_lib.class_accuracies({n: predictions.targets[n] for n in names},
                                            {n: predictions.outputs[n] for n in names})

    def report(self, predictions, metrics, files_prefix, context):
        return {"majority_rates": {n: metrics_lib.majority_rate(predictions.targets[n])
                                   for n in tasks.CLASS_OUTPUTS if n in predictions.targets}}

    def serving_outputs(self, outputs, inputs):
        return {f"{name}_probabilities": ops.softmax(ops.cast(outputs[name], "float32"), axis=-1)
                for name in self.class_counts}

    def metadata(self):
        counts = self.class_counts
        return {"class_names": {name: list(tasks.class_names(name, counts[name]))
                                for name in tasks.CLASS_OUTPUTS if name in counts}}
