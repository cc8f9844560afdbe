"""The clip encoder: one backbone applied to every clip of a video."""

import keras
from keras import layers, ops


def _has_batch_statistics(layer) -> bool:
    """Whether `layer` or a layer inside it normalises with batch statistics in training (its
    output for one sample then depends on the other samples of the batch)."""
    # `_flatten_layers` walks nested models and layers held as attributes alike.
    return any(isinstance(sub, layers.BatchNormalization)
               for sub in layer._flatten_layers(include_self=True, recursive=True))


@keras.saving.register_keras_serializable(package="aqa_tf")
class TimeDistributed(layers.TimeDistributed):
    """`keras.layers.TimeDistributed(backbone)` over `[batch, num_clips, clip_length, H, W, 3]` that
    folds the clips into the batch wherever that gives the same numbers.

    Keras 3's `TimeDistributed` runs its layer once per clip (a Python loop over the static clip
    axis): the graph holds `num_clips` copies of the backbone, each on `batch` clips. When the
    backbone's result for a clip does not depend on the other clips, one call on
    `[batch * num_clips, ...]` gives the same numbers with one copy: larger convolutions (a GPU
    runs one convolution on 72 clips better than six on 12), a graph `num_clips` times smaller
    to compile, and no 6-D slicing (which TFLite's int8 calibration cannot run). That holds at
    inference for every backbone, and in training for backbones without BatchNormalization (C3D
    as the papers use it). A BatchNorm backbone keeps the per-clip calls in training, because
    it takes its batch statistics per clip, as the reference implementations do (they loop
    over the clips).

    `fold_in_training=True` folds in training too, BatchNorm then taking its statistics over
    every clip of the batch: what FineDiving's TSA does (`models/Backbone.py` runs I3D once on
    all clips of the query and the exemplar).

    The class keeps Keras's name because weights files address a layer's variables by the
    snake-cased class name (`layers/time_distributed/...`): checkpoints written before this
    layer existed still load.
    """

    def __init__(self, layer, fold_in_training: bool = False, **kwargs):
        super().__init__(layer, **kwargs)
        self.fold_in_training = bool(fold_in_training)

    def get_config(self):
        config = super().get_config()
        if self.fold_in_training:  # configs written before the option stay as they were
            config["fold_in_training"] = True
        return config

    def call(self, inputs, training=None, mask=None):
        per_clip = (training and not self.fold_in_training
                    and _has_batch_statistics(self.layer))
        if per_clip or mask is not None or None in tuple(inputs.shape[1:]):
            return super().call(inputs, training=training, mask=mask)
        clips = int(inputs.shape[1])
        folded = ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))
        features = self.layer(folded, training=training)
        return ops.reshape(features, (-1, clips) + tuple(features.shape[1:]))
