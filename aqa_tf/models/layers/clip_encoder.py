"""The clip encoder: one backbone applied to every clip of a video."""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="aqa_tf")
class TimeDistributed(layers.TimeDistributed):
    """`keras.layers.TimeDistributed(backbone)` over `[batch, num_clips, clip_length, H, W, 3]` that folds
    the clips into the batch at inference.

    Keras 3's `TimeDistributed` runs its layer once per clip (a Python loop over the static clip
    axis): the graph holds `num_clips` copies of the backbone, each on `batch` clips. At
    inference (`training` False or None) the backbone's result for a clip does not depend on
    the other clips, so one call on `[batch * num_clips, ...]` gives the same numbers with one
    copy: larger convolutions for the CPU kernels, and no 6-D slicing (which TFLite's int8
    calibration cannot run). In training the per-clip calls stay, because BatchNorm backbones
    take their batch statistics per clip, as the reference implementations do (they loop over
    the clips).

    The class keeps Keras's name because weights files address a layer's variables by the
    snake-cased class name (`layers/time_distributed/...`): checkpoints written before this
    layer existed still load.
    """

    def call(self, inputs, training=None, mask=None):
        if training or mask is not None or None in tuple(inputs.shape[1:]):
            return super().call(inputs, training=training, mask=mask)
        clips = int(inputs.shape[1])
        folded = ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))
        features = self.layer(folded, training=False)
        return ops.reshape(features, (-1, clips) + tuple(features.shape[1:]))
