"""Layers that trace to TFLite builtin ops inside `builtin_graph()`, and as Keras's own layers
everywhere else.

3D pooling. TFLite / LiteRT has builtin `CONV_3D` but no 3D max or average pooling: a converted
`keras.layers.MaxPooling3D` would need the TF Select (Flex) runtime, which the `ai-edge-litert`
interpreter and most edge builds do not carry. A 3D pooling window is the product of a spatial
and a temporal window, and both max and mean factor over it (the max over a box is the max over
time of the spatial maxima; with valid padding every spatial window has the same size, so the
mean of spatial means is the mean), so the same result comes from a 2D pooling over (H, W) with
time folded into the batch, then a 2D pooling over (T, 1) with H*W folded into the width: two
builtin `MAX_POOL_2D` / `AVERAGE_POOL_2D`. Max pooling gives bit-identical values; average
pooling differs by float rounding only.

Dilated 3D convolution. TensorFlow's CPU Conv3D kernel has no dilation, so Keras's TF backend
runs a dilated Conv3D as SpaceToBatchND -> Conv3D -> BatchToSpaceND, 5-D ops that TFLite has
no builtin for. TFLite's `CONV_3D` takes dilation factors itself: inside `builtin_graph()` the
layer traces a single dilated `tf.nn.conv3d`, which the converter maps to it (the graph is only
converted, never run by TensorFlow's CPU kernels).

The builtin forms are used only inside `builtin_graph()` (the TFLite conversion traces the
model there); training and SavedModels keep Keras's kernels. The classes keep Keras's names:
weights files address variables by snake-cased class names.
"""

import contextlib
import threading

import keras
from keras import layers, ops

_STATE = threading.local()


@contextlib.contextmanager
def builtin_graph():
    """Within this context the layers of this module trace to TFLite builtin ops."""
    previous = getattr(_STATE, "factored", False)
    _STATE.factored = True
    try:
        yield
    finally:
        _STATE.factored = previous


def _factored(inputs, pool, pool_size, strides, padding):
    """`[batch, T, H, W, C]` pooled by `pool` (a 2D pooling op) over the box `pool_size`."""
    (kt, kh, kw), (st, sh, sw) = pool_size, strides
    _, time, height, width, channels = inputs.shape
    x = ops.reshape(inputs, (-1, height, width, channels))
    x = pool(x, (kh, kw), (sh, sw), padding=padding)
    out_h, out_w = int(x.shape[1]), int(x.shape[2])
    x = ops.reshape(x, (-1, time, out_h * out_w, channels))
    x = pool(x, (kt, 1), (st, 1), padding=padding)
    return ops.reshape(x, (-1, int(x.shape[1]), out_h, out_w, channels))


def _can_factor(layer, inputs) -> bool:
    return (getattr(_STATE, "factored", False) and layer.data_format == "channels_last"
            and None not in tuple(inputs.shape[1:]))


@keras.saving.register_keras_serializable(package="aqa_tf")
class MaxPooling3D(layers.MaxPooling3D):
    """`keras.layers.MaxPooling3D` that runs as two 2D max poolings inside
    `builtin_graph()` (identical values)."""

    def call(self, inputs):
        if not _can_factor(self, inputs):
            return super().call(inputs)
        return _factored(inputs, ops.max_pool, self.pool_size, self.strides, self.padding)


@keras.saving.register_keras_serializable(package="aqa_tf")
class AveragePooling3D(layers.AveragePooling3D):
    """`keras.layers.AveragePooling3D` that runs as two 2D average poolings inside
    `builtin_graph()` (equal up to float rounding)."""

    def call(self, inputs):
        if not _can_factor(self, inputs) or self.padding != "valid":
            return super().call(inputs)
        return _factored(inputs, ops.average_pool, self.pool_size, self.strides, self.padding)


@keras.saving.register_keras_serializable(package="aqa_tf")
class Conv3D(layers.Conv3D):
    """`keras.layers.Conv3D` whose dilated form traces to one dilated `tf.nn.conv3d` inside
    `builtin_graph()` (TensorFlow backend only)."""

    def call(self, inputs):
        if (not getattr(_STATE, "factored", False) or max(self.dilation_rate) == 1
                or keras.backend.backend() != "tensorflow" or self.groups != 1
                or self.data_format != "channels_last"):
            return super().call(inputs)
        import tensorflow as tf  # only while converting to TFLite
        outputs = tf.nn.conv3d(inputs, self.kernel, strides=(1,) + tuple(self.strides) + (1,),
                               padding=self.padding.upper(),
                               dilations=(1,) + tuple(self.dilation_rate) + (1,))
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs
