"""3D ResNets (Hara et al., 3D-ResNets-PyTorch) as used by paper 002.

conv1 (t x 7 x 7, stride (t_stride, 2, 2)) -> BN -> ReLU -> max-pool 3x3x3 stride 2 -> four stages
of basic blocks (depths 18, 34) or bottlenecks (50, 101) with 64, 128, 256, 512 planes, stages
2-4 stride 2 in time and space, type-B shortcuts (1x1x1 conv + BN where the shape changes) ->
global average pool -> 512 (basic) or 2048 (bottleneck) features.

Layer names follow the PyTorch state-dict keys with "." replaced by "_" (`layer1_0_conv1` is
`layer1.0.conv1`), so weight conversion is a renaming plus a layout change. Convolutions pad
explicitly (PyTorch pads symmetrically, Keras "same" does not for stride 2), and BatchNorm uses
PyTorch's epsilon 1e-5 and momentum 0.1 (Keras momentum 0.9).
"""

from typing import Callable, Sequence, Tuple

import keras
from keras import layers

from aqa_tf.models.backbones.base import (Backbone, register_depths, scaled_width,
                                          torch_batch_norm)
from aqa_tf.models.layers import tflite_ops

# depth -> (block type, blocks per stage)
RESNET3D_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                   50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}
STAGE_PLANES = (64, 128, 256, 512)


def conv3d(x: keras.KerasTensor, filters: int, kernel, strides, padding: Tuple[int, int, int],
           name: str) -> keras.KerasTensor:
    """A bias-free Conv3D with PyTorch's symmetric zero padding."""
    if any(padding):
        x = layers.ZeroPadding3D(padding, name=f"{name}_pad")(x)
    return layers.Conv3D(filters, kernel, strides=strides, padding="valid", use_bias=False,
                         name=name)(x)


def residual_stages(x: keras.KerasTensor, planes: Sequence[int], blocks: Sequence[int],
                    expansion: int, block_fn: Callable) -> keras.KerasTensor:
    """The four stages of a ResNet body (shared by the 3D and (2+1)D ResNets).

    Stage 1 keeps the resolution, stages 2-4 halve it in time and space in their first block;
    where the shape changes the shortcut is a 1x1x1 convolution + BN (type B).
    `block_fn(x, in_planes, planes, stride, prefix, shortcut)` builds one residual block.
    """
    in_planes = planes[0]
    for stage, (stage_planes, num_blocks) in enumerate(zip(planes, blocks)):
        for index in range(num_blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            prefix = f"layer{stage + 1}_{index}"
            shortcut = x
            if index == 0 and (stride != 1 or in_planes != stage_planes * expansion):
                shortcut = conv3d(x, stage_planes * expansion, 1, stride, (0, 0, 0),
                                  f"{prefix}_downsample_0")
                shortcut = torch_batch_norm(f"{prefix}_downsample_1")(shortcut)
            x = block_fn(x, in_planes, stage_planes, stride, prefix, shortcut)
            in_planes = stage_planes * expansion
    return x


def stem_max_pool(x: keras.KerasTensor) -> keras.KerasTensor:
    """3x3x3 max-pool, stride 2. PyTorch pads it with -inf; after the stem's ReLU zero padding
    gives the same result."""
    x = layers.ZeroPadding3D(1, name="maxpool_pad")(x)
    return tflite_ops.MaxPooling3D(3, strides=2, name="maxpool")(x)


def _basic_block(x, in_planes, planes, stride, prefix, shortcut):
    out = conv3d(x, planes, 3, stride, (1, 1, 1), f"{prefix}_conv1")
    out = layers.ReLU(name=f"{prefix}_relu1")(torch_batch_norm(f"{prefix}_bn1")(out))
    out = conv3d(out, planes, 3, 1, (1, 1, 1), f"{prefix}_conv2")
    out = torch_batch_norm(f"{prefix}_bn2")(out)
    return layers.ReLU(name=f"{prefix}_relu")(layers.Add(name=f"{prefix}_add")([out, shortcut]))


def _conv3x3x3(x, planes, stride, name):
    return conv3d(x, planes, 3, stride, (1, 1, 1), name)


def bottleneck_block(x: keras.KerasTensor, in_planes: int, planes: int, stride: int, prefix: str,
                     shortcut: keras.KerasTensor, middle_conv: Callable = _conv3x3x3,
                     middle_bn: str = "bn2") -> keras.KerasTensor:
    """1x1x1 -> `middle_conv(x, planes, stride, name)` (3x3x3; R(2+1)D: factorised) -> 1x1x1 to
    4 x planes, BN after each, added to `shortcut`."""
    out = conv3d(x, planes, 1, 1, (0, 0, 0), f"{prefix}_conv1")
    out = layers.ReLU(name=f"{prefix}_relu1")(torch_batch_norm(f"{prefix}_bn1")(out))
    out = middle_conv(out, planes, stride, f"{prefix}_conv2")
    out = layers.ReLU(name=f"{prefix}_relu2")(torch_batch_norm(f"{prefix}_{middle_bn}")(out))
    out = conv3d(out, planes * 4, 1, 1, (0, 0, 0), f"{prefix}_conv3")
    out = torch_batch_norm(f"{prefix}_bn3")(out)
    return layers.ReLU(name=f"{prefix}_relu")(layers.Add(name=f"{prefix}_add")([out, shortcut]))


@keras.saving.register_keras_serializable(package="aqa_tf")
class ResNet3D(Backbone):
    """3D ResNet body, one clip in, pooled features out.

    Args:
      depth: 18, 34, 50 or 101.
      clip_length, image_size: input clip `[clip_length, image_size, image_size, 3]`.
      width_multiplier: scales every stage's planes (1.0: the published networks).
      conv1_t_size, conv1_t_stride: temporal kernel and stride of conv1 (Hara et al.: 7, 1).
      no_max_pool: skip the max-pool after conv1 (a 3D-ResNets-PyTorch option).

    Output: `[batch, feature_dim]`, feature_dim = 512 (18/34) or 2048 (50/101) at full width.
    """

    def __init__(self, depth: int = 34, clip_length: int = 16, image_size: int = 112,
                 width_multiplier: float = 1.0, conv1_t_size: int = 7, conv1_t_stride: int = 1,
                 no_max_pool: bool = False, **kwargs):
        if depth not in RESNET3D_DEPTHS:
            raise ValueError(f"ResNet3D depth={depth}; expected one of {sorted(RESNET3D_DEPTHS)}")
        block_type, blocks = RESNET3D_DEPTHS[depth]
        expansion = 4 if block_type == "bottleneck" else 1
        block_fn = bottleneck_block if block_type == "bottleneck" else _basic_block
        planes = [scaled_width(p, width_multiplier) for p in STAGE_PLANES]

        clips = keras.Input((clip_length, image_size, image_size, 3), name="clip")
        x = conv3d(clips, planes[0], (conv1_t_size, 7, 7), (conv1_t_stride, 2, 2),
                   (conv1_t_size // 2, 3, 3), "conv1")
        x = layers.ReLU(name="relu")(torch_batch_norm("bn1")(x))
        if not no_max_pool:
            x = stem_max_pool(x)
        x = residual_stages(x, planes, blocks, expansion, block_fn)
        features = layers.GlobalAveragePooling3D(name="avgpool")(x)
        super().__init__(inputs=clips, outputs=features, **kwargs)

        self.record_config(features, depth=depth, clip_length=clip_length, image_size=image_size,
                           width_multiplier=width_multiplier, conv1_t_size=conv1_t_size,
                           conv1_t_stride=conv1_t_stride, no_max_pool=no_max_pool)


register_depths("resnet3d", ResNet3D, RESNET3D_DEPTHS)
