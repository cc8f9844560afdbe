"""MSCADC task heads (paper 001, Table 3), used by the score, dive and caption heads on MSCADC's
feature map: a context net for multi-scale context aggregation
(Yu & Koltun's dilated convolutions) followed by a few layers, one head per task.

Facts from the MTL-AQA authors' heads (`C3D_dilated_head_fs`, `..._head_classifier`, the
caption model's visual part), bottleneck width 12:
  head_conv1   1x1x1 conv 256 -> 12, zero padding 1 (it grows the map by 2 per dimension)
  cntxt_pad    replication padding 9 on every side
  cntxt_conv1  3x3x3 12 -> 24            + BN + ReLU
  cntxt_conv2  3x3x3 24 -> 24            + BN + ReLU
  cntxt_conv3  3x3x3 24 -> 48, dilation 2 + BN + ReLU
  cntxt_conv4  3x3x3 48 -> 96, dilation 4 + BN + ReLU
  cntxt_conv5  3x3x3 96 -> 96            + BN + ReLU   (all context convs unpadded)
  cntxt_conv6  1x1x1 96 -> 12
  head_bn1 + ReLU, head_pool1 max-pool 2
  head_conv2   3x3x3 12 -> 12, padding 1 + head_bn2 + ReLU
then per task:
  score        head_conv3 3x3x3 -> 1, average pool (2, 11, 11)
  dive         head_conv3_<label> 3x3x3 -> classes, average pool (2, 11, 11), one per sub-action
  caption      head_conv3 3x3x3 12 -> 12, max-pool 2 stride 1, flattened (1200 for the paper's
               input) and read by the S2VT captioner (captioning issue).
For the paper's input (16x180x180) the map before the average pool is exactly 2x11x11, so the
pool is global; we use a global average pool, which also accepts other input sizes (the
authors' fixed-size pool would leave a map there and break their `view`).

Layer names are `<prefix>_<authors' module name>`: prefix `fs` (score head, the authors'
`head_fs`), `cls` (dive classifier), `cap` (caption head), so a state dict converts by renaming.
"""

from typing import Dict

import keras
from keras import layers, ops

from aqa_tf import tasks
from aqa_tf.models.backbones.base import torch_batch_norm
from aqa_tf.models.layers import tflite_ops

BOTTLENECK = 12
# Our sub-action output names -> the authors' head suffixes.
CLASS_SUFFIXES = {"position": "position", "armstand": "armstand", "rotation_type": "rot_type",
                  "somersaults": "ss_no", "twists": "tw_no"}


@keras.saving.register_keras_serializable(package="aqa_tf")
class ReplicationPadding3D(layers.Layer):
    """Pads `[batch, T, H, W, C]` by repeating the edge values (PyTorch `ReplicationPad3d`)."""

    def __init__(self, padding: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)

    def call(self, x):
        p = self.padding
        for axis in (1, 2, 3):
            first, last = _edge(x, axis, slice(0, 1)), _edge(x, axis, slice(-1, None))
            x = ops.concatenate([ops.repeat(first, p, axis=axis), x,
                                 ops.repeat(last, p, axis=axis)], axis=axis)
        return x

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        for axis in (1, 2, 3):
            if shape[axis] is not None:
                shape[axis] += 2 * self.padding
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _edge(x, axis, edge: slice):
    """One edge slice of `x` along `axis`, keeping the axis."""
    index = [slice(None)] * 5
    index[axis] = edge
    return x[tuple(index)]


def _conv_bn_relu(x, filters, prefix, conv, bn, padding=0, dilation=1, kernel=3):
    if padding:
        x = layers.ZeroPadding3D(padding, name=f"{prefix}_{conv}_pad")(x)
    x = tflite_ops.Conv3D(filters, kernel, dilation_rate=dilation, name=f"{prefix}_{conv}")(x)
    x = torch_batch_norm(f"{prefix}_{bn}")(x)
    return layers.ReLU(name=f"{prefix}_{conv}_relu")(x)


def context_trunk(feature_map: keras.KerasTensor, prefix: str,
                  width: int = BOTTLENECK) -> keras.KerasTensor:
    """head_conv1 -> context net -> head_pool1 -> head_conv2 (shared by every MSCADC head)."""
    x = layers.ZeroPadding3D(1, name=f"{prefix}_head_conv1_pad")(feature_map)
    x = layers.Conv3D(width, 1, name=f"{prefix}_head_conv1")(x)
    x = ReplicationPadding3D(9, name=f"{prefix}_cntxt_pad")(x)
    x = _conv_bn_relu(x, 2 * width, prefix, "cntxt_conv1", "cntxt_bn1")
    x = _conv_bn_relu(x, 2 * width, prefix, "cntxt_conv2", "cntxt_bn2")
    x = _conv_bn_relu(x, 4 * width, prefix, "cntxt_conv3", "cntxt_bn3", dilation=2)
    x = _conv_bn_relu(x, 8 * width, prefix, "cntxt_conv4", "cntxt_bn4", dilation=4)
    x = _conv_bn_relu(x, 8 * width, prefix, "cntxt_conv5", "cntxt_bn5")
    x = layers.Conv3D(width, 1, name=f"{prefix}_cntxt_conv6")(x)
    x = torch_batch_norm(f"{prefix}_head_bn1")(x)
    x = layers.ReLU(name=f"{prefix}_head_bn1_relu")(x)
    x = tflite_ops.MaxPooling3D(2, strides=2, name=f"{prefix}_head_pool1")(x)
    return _conv_bn_relu(x, width, prefix, "head_conv2", "head_bn2", padding=1)


def _pooled_conv(x, filters, name):
    """3x3x3 conv (padding 1) + average over the map -> `[batch, filters]` (float32)."""
    x = layers.ZeroPadding3D(1, name=f"{name}_pad")(x)
    x = layers.Conv3D(filters, 3, dtype="float32", name=name)(x)
    return layers.GlobalAveragePooling3D(dtype="float32", name=f"{name}_pool")(x)


def score_regressor(feature_map: keras.KerasTensor) -> keras.KerasTensor:
    """Score head: `[batch, 1]`, the normalised score (score / score_std), float32."""
    return _pooled_conv(context_trunk(feature_map, "fs"), 1, "fs_head_conv3")


def dive_classifier(feature_map: keras.KerasTensor,
                    class_counts: Dict[str, int]) -> Dict[str, keras.KerasTensor]:
    """Dive head: dict sub-action output name -> logits `[batch, classes]` (float32)."""
    trunk = context_trunk(feature_map, "cls")
    logits = {}
    for name, count in class_counts.items():
        if name not in CLASS_SUFFIXES:
            raise ValueError(f"MSCADC dive head: unknown sub-action {name!r}; expected one of "
                             f"{tasks.CLASS_OUTPUTS}")
        pooled = _pooled_conv(trunk, count, f"cls_head_conv3_{CLASS_SUFFIXES[name]}")
        logits[name] = layers.Identity(dtype="float32", name=name)(pooled)
    return logits


def caption_features(feature_map: keras.KerasTensor) -> keras.KerasTensor:
    """Caption head's visual part: `[batch, features]` (1200 for the paper's input), flattened
    channels-first as the authors' `view(-1, 1200)`; the S2VT decoder reads it."""
    x = context_trunk(feature_map, "cap")
    x = layers.ZeroPadding3D(1, name="cap_head_conv3_pad")(x)
    x = layers.Conv3D(BOTTLENECK, 3, name="cap_head_conv3")(x)
    x = tflite_ops.MaxPooling3D(2, strides=1, name="cap_head_pool3")(x)
    x = layers.Permute((4, 1, 2, 3), name="cap_to_channels_first")(x)
    return layers.Flatten(name="cap_flatten")(x)
