"""S3D (Xie et al., ECCV 2018: separable 3D Inception), the backbone paper 000 swaps in for C3D.

Paper 000 takes Kyle Min's PyTorch S3D and its Kinetics-400 weights (`S3D_kinetics400.pt`); this
definition mirrors that network so those weights convert by renaming:
  base.0  SepConv 3 -> 64, k7 s2           base.1  max-pool (1,3,3) s(1,2,2)
  base.2  BasicConv 64 -> 64, 1x1x1        base.3  SepConv 64 -> 192, k3
  base.4  max-pool (1,3,3) s(1,2,2)        base.5/6  Mixed_3b, 3c
  base.7  max-pool 3 s2                    base.8-12  Mixed_4b .. 4f
  base.13 max-pool 2 s2                    base.14/15 Mixed_5b, 5c -> 1024 channels
A SepConv is a (1,k,k) spatial conv + BN + ReLU then a (k,1,1) temporal conv + BN + ReLU; a
Mixed block concatenates four branches: 1x1x1; 1x1x1 -> SepConv 3; 1x1x1 -> SepConv 3;
max-pool 3 (stride 1) -> 1x1x1. Convolutions have no bias; BN epsilon 1e-3, PyTorch momentum
0.001 (Keras 0.999).

Features: the source averages over (2, H, W) windows (stride 1) and, after its 1x1x1
classifier, over time; without the classifier that is the mean over time of those windows, a
1024-d vector (for 16-frame clips the map has 2 time steps: the plain global average).
Layer names are the state-dict module paths with "." -> "_" (`base_5_branch1_1_conv_s`).
Input frames are expected in [-1, 1] (`--normalization=symmetric`, as the source's transform).
"""

import keras
from keras import layers

from aqa_tf.models.backbones.base import Backbone, register_backbone, scaled_width
from aqa_tf.models.layers import tflite_ops

BN_EPSILON, BN_MOMENTUM = 1e-3, 0.999
# Mixed blocks: base index -> (branch0, (branch1 reduce, out), (branch2 reduce, out), branch3).
MIXED = {5: (64, (96, 128), (16, 32), 32), 6: (128, (128, 192), (32, 96), 64),
         8: (192, (96, 208), (16, 48), 64), 9: (160, (112, 224), (24, 64), 64),
         10: (128, (128, 256), (24, 64), 64), 11: (112, (144, 288), (32, 64), 64),
         12: (256, (160, 320), (32, 128), 128), 14: (256, (160, 320), (32, 128), 128),
         15: (384, (192, 384), (48, 128), 128)}
# Max-pools of `base`: index -> (pool size, strides, padding).
POOLS = {1: ((1, 3, 3), (1, 2, 2), (0, 1, 1)), 4: ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
         7: ((3, 3, 3), (2, 2, 2), (1, 1, 1)), 13: ((2, 2, 2), (2, 2, 2), (0, 0, 0))}


def _bn_relu(x, name, suffix):
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                  name=f"{name}_bn{suffix}")(x)
    return layers.ReLU(name=f"{name}_relu{suffix}")(x)


def basic_conv(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    """1x1x1 conv + BN + ReLU (the source's BasicConv3d: `<name>.conv`, `<name>.bn`)."""
    x = layers.Conv3D(filters, 1, use_bias=False, name=f"{name}_conv")(x)
    return _bn_relu(x, name, "")


def sep_conv(x: keras.KerasTensor, filters: int, kernel: int, stride: int,
             name: str) -> keras.KerasTensor:
    """(1,k,k) conv + BN + ReLU, (k,1,1) conv + BN + ReLU (`<name>.conv_s`, `.bn_s`, ...)."""
    pad = kernel // 2
    x = layers.ZeroPadding3D((0, pad, pad), name=f"{name}_conv_s_pad")(x)
    x = layers.Conv3D(filters, (1, kernel, kernel), strides=(1, stride, stride), use_bias=False,
                      name=f"{name}_conv_s")(x)
    x = _bn_relu(x, name, "_s")
    x = layers.ZeroPadding3D((pad, 0, 0), name=f"{name}_conv_t_pad")(x)
    x = layers.Conv3D(filters, (kernel, 1, 1), strides=(stride, 1, 1), use_bias=False,
                      name=f"{name}_conv_t")(x)
    return _bn_relu(x, name, "_t")


def max_pool(x: keras.KerasTensor, pool, strides, padding, name: str) -> keras.KerasTensor:
    # PyTorch pads max-pools with -inf; every input here follows a ReLU (values >= 0) and
    # every window keeps a real element, so zero padding gives the same result.
    if any(padding):
        x = layers.ZeroPadding3D(padding, name=f"{name}_pad")(x)
    return tflite_ops.MaxPooling3D(pool, strides=strides, name=name)(x)


def mixed(x: keras.KerasTensor, spec: tuple, name: str, scale) -> keras.KerasTensor:
    b0, (b1_reduce, b1), (b2_reduce, b2), b3 = (
        scale(spec[0]), (scale(spec[1][0]), scale(spec[1][1])),
        (scale(spec[2][0]), scale(spec[2][1])), scale(spec[3]))
    branch0 = basic_conv(x, b0, f"{name}_branch0_0")
    branch1 = sep_conv(basic_conv(x, b1_reduce, f"{name}_branch1_0"), b1, 3, 1,
                       f"{name}_branch1_1")
    branch2 = sep_conv(basic_conv(x, b2_reduce, f"{name}_branch2_0"), b2, 3, 1,
                       f"{name}_branch2_1")
    branch3 = basic_conv(max_pool(x, 3, 1, (1, 1, 1), f"{name}_branch3_0"), b3,
                         f"{name}_branch3_1")
    return layers.Concatenate(name=f"{name}_concat")([branch0, branch1, branch2, branch3])


@keras.saving.register_keras_serializable(package="aqa_tf")
@register_backbone("s3d")
class S3D(Backbone):
    """S3D body, one clip in, 1024 pooled features out (at width 1.0).

    Args:
      clip_length, image_size: input clip `[clip_length, image_size, image_size, 3]`.
      width_multiplier: scales every convolution's filters (1.0: the published network).
    """

    def __init__(self, clip_length: int = 16, image_size: int = 112,
                 width_multiplier: float = 1.0, **kwargs):
        def scale(filters):
            return scaled_width(filters, width_multiplier)

        clips = keras.Input((clip_length, image_size, image_size, 3), name="clip")
        x = sep_conv(clips, scale(64), 7, 2, "base_0")
        x = max_pool(x, *POOLS[1], "base_1")
        x = basic_conv(x, scale(64), "base_2")
        x = sep_conv(x, scale(192), 3, 1, "base_3")
        for index in range(4, 16):
            if index in POOLS:
                x = max_pool(x, *POOLS[index], f"base_{index}")
            else:
                x = mixed(x, MIXED[index], f"base_{index}", scale)
        time_window = min(2, int(x.shape[1]))
        x = tflite_ops.AveragePooling3D((time_window, int(x.shape[2]), int(x.shape[3])), strides=1,
                                    name="avgpool")(x)
        features = layers.GlobalAveragePooling3D(name="time_average")(x)
        super().__init__(inputs=clips, outputs=features, **kwargs)
        self.record_config(features, clip_length=clip_length, image_size=image_size,
                           width_multiplier=width_multiplier)
