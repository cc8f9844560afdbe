"""Weight-Decider aggregation (Farabi et al., paper 002, eq. 1-3)."""

from typing import Sequence

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="aqa_tf")
class WeightDecider(layers.Layer):
    """Learned per-element weighting of clip features.

    A small MLP (paper 002: 128 -> 64 -> 32 -> 64 -> 128, ReLU on all but the last layer) maps
    each clip feature `f_i` to a weight vector `w'_i` of the same size; a softmax across the
    clips, separately for every feature element, turns them into weights `w_i` that sum to one
    over the clips (eq. 3); the video feature is `sum_i f_i * w_i` (eq. 1). The MLP is shared
    by all clips.

    Args:
      hidden_units: widths of the hidden layers (paper: 64, 32, 64). The output layer has the
        width of the input features.

    Input: `[batch, num_clips, dim]`. Returns `(video_features [batch, dim],
    weights [batch, num_clips, dim])`; the weights show which clips mattered for each element.
    """

    def __init__(self, hidden_units: Sequence[int] = (64, 32, 64), **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.hidden = [layers.Dense(units, activation="relu", name=f"hidden_{i}")
                       for i, units in enumerate(self.hidden_units)]
        self.to_weights = None

    def build(self, input_shape):
        dim = int(input_shape[-1])
        shape = tuple(input_shape)
        for layer in self.hidden:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.to_weights = layers.Dense(dim, name="weight_logits")
        self.to_weights.build(shape)

    def call(self, clip_features):
        x = clip_features
        for layer in self.hidden:
            x = layer(x)
        logits = ops.cast(self.to_weights(x), "float32")
        weights = ops.softmax(logits, axis=1)  # across clips, per element (eq. 3)
        video = ops.sum(ops.cast(clip_features, "float32") * weights, axis=1)  # eq. 1
        return ops.cast(video, self.compute_dtype), weights

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2]), tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units)}
