"""R(2+1)D ResNets (Tran et al., CVPR 2018) as 3D-ResNets-PyTorch defines them (`resnet2p1d.py`,
the Kinetics checkpoints `r2p1d{18,34,50}_K_200ep.pth` that paper 002 starts from).

Every 3x3x3 convolution becomes a 1x3x3 spatial convolution to M channels, BN, ReLU, then a 3x1x1
temporal convolution, with M = floor(27 * N_in * N_out / (9 * N_in + 3 * N_out)) so that the pair
has about the parameters of the 3D convolution it replaces. The stem is factorised the same way
(1x7x7 to M, then t x 1 x 1 to 64, M = floor(3 * 64 * t * 49 / (3 * 49 + t * 64)): 110 for t = 7;
see `variant`). Strides go to the spatial convolution (space) and the temporal convolution
(time). Layer names are the 3D-ResNets-PyTorch state-dict keys with "." replaced by "_"
(`layer1_0_conv1_s`); `aqa_tf.weights.mapping` maps them to torchvision's keys for the other
variant.

`variant="torchvision"` is torchvision's VideoResNet R(2+1)D, the definition of the IG-65M
checkpoints paper 002 uses for its 8- and 32-frame rows: a 45-channel stem with a 3x1x1 temporal
convolution, no max-pool, and one intermediate width per block computed from (N_in, N_out) and
used by both of its factorised convolutions.
"""

import functools
from typing import Optional

import keras
from keras import layers

from aqa_tf.models.backbones.base import (Backbone, register_backbone, register_depths,
                                          scaled_width, torch_batch_norm)
from aqa_tf.models.backbones.resnet3d import (STAGE_PLANES, bottleneck_block, conv3d,
                                              residual_stages, stem_max_pool)

R2PLUS1D_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                   50: ("bottleneck", (3, 4, 6, 3))}


def mid_planes(in_planes: int, out_planes: int, t: int = 3, d: int = 3) -> int:
    """Intermediate width that keeps the parameters of a t x d x d convolution."""
    return (t * d * d * in_planes * out_planes) // (d * d * in_planes + t * out_planes)


def _conv2plus1d(x, in_planes, planes, stride, prefix, mid=None):
    """`prefix`_s (1x3x3) -> BN -> ReLU -> `prefix`_t (3x1x1); returns before the last BN."""
    mid = mid or mid_planes(in_planes, planes)
    stem = prefix.rsplit("_", 1)
    bn_s = f"{stem[0]}_bn{stem[1][-1]}_s"  # layerX_Y_conv1 -> layerX_Y_bn1_s
    x = conv3d(x, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), f"{prefix}_s")
    x = layers.ReLU(name=f"{prefix}_s_relu")(torch_batch_norm(bn_s)(x))
    return conv3d(x, planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), f"{prefix}_t")


def _basic_block(x, in_planes, planes, stride, prefix, shortcut, shared_mid=False):
    mid = mid_planes(in_planes, planes) if shared_mid else None
    out = _conv2plus1d(x, in_planes, planes, stride, f"{prefix}_conv1", mid)
    out = layers.ReLU(name=f"{prefix}_relu1")(torch_batch_norm(f"{prefix}_bn1_t")(out))
    out = _conv2plus1d(out, planes, planes, 1, f"{prefix}_conv2", mid)
    out = torch_batch_norm(f"{prefix}_bn2_t")(out)
    return layers.ReLU(name=f"{prefix}_relu")(layers.Add(name=f"{prefix}_add")([out, shortcut]))


def _bottleneck_block(x, in_planes, planes, stride, prefix, shortcut):
    return bottleneck_block(x, in_planes, planes, stride, prefix, shortcut,
                            middle_conv=lambda y, p, s, name: _conv2plus1d(y, p, p, s, name),
                            middle_bn="bn2_t")


@keras.saving.register_keras_serializable(package="aqa_tf")
class R2Plus1D(Backbone):
    """R(2+1)D body, one clip in, pooled features out.

    Args:
      depth: 18, 34 or 50.
      clip_length, image_size: input clip `[clip_length, image_size, image_size, 3]`
        (paper 002: 8, 16 or 32 frames).
      width_multiplier: scales every stage's planes (1.0: the published networks).
      conv1_t_size, conv1_t_stride: temporal kernel and stride of the stem (7, 1).
      stem_channels: channels between the stem's spatial and temporal convolutions; None: the
        parameter-matching width (3D-ResNets-PyTorch: 110 for t = 7).
      no_max_pool: skip the max-pool after the stem.
      variant: "hara" (3D-ResNets-PyTorch, default) or "torchvision" (IG-65M checkpoints; sets
        stem_channels=45, conv1_t_size=3, no_max_pool=True, one width per block).

    Output: `[batch, feature_dim]` (512 for 18/34, 2048 for 50 at full width).
    """

    def __init__(self, depth: int = 34, clip_length: int = 16, image_size: int = 112,
                 width_multiplier: float = 1.0, conv1_t_size: int = 7, conv1_t_stride: int = 1,
                 stem_channels: Optional[int] = None, no_max_pool: bool = False,
                 variant: str = "hara", **kwargs):
        if variant not in ("hara", "torchvision"):
            raise ValueError(f"R2Plus1D variant={variant!r}; expected 'hara' or 'torchvision'")
        if variant == "torchvision":
            stem_channels, conv1_t_size, no_max_pool = 45, 3, True
        if depth not in R2PLUS1D_DEPTHS:
            raise ValueError(f"R2Plus1D depth={depth}; expected one of {sorted(R2PLUS1D_DEPTHS)}")
        block_type, blocks = R2PLUS1D_DEPTHS[depth]
        expansion = 4 if block_type == "bottleneck" else 1
        planes = [scaled_width(p, width_multiplier) for p in STAGE_PLANES]
        stem_mid = stem_channels or ((3 * planes[0] * conv1_t_size * 49) //
                                     (3 * 49 + conv1_t_size * planes[0]))

        clips = keras.Input((clip_length, image_size, image_size, 3), name="clip")
        x = conv3d(clips, stem_mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), "conv1_s")
        x = layers.ReLU(name="relu_s")(torch_batch_norm("bn1_s")(x))
        x = conv3d(x, planes[0], (conv1_t_size, 1, 1), (conv1_t_stride, 1, 1),
                   (conv1_t_size // 2, 0, 0), "conv1_t")
        x = layers.ReLU(name="relu")(torch_batch_norm("bn1_t")(x))
        if not no_max_pool:
            x = stem_max_pool(x)
        if block_type == "bottleneck":
            block_fn = _bottleneck_block
        else:
            block_fn = functools.partial(_basic_block, shared_mid=variant == "torchvision")
        x = residual_stages(x, planes, blocks, expansion, block_fn)
        features = layers.GlobalAveragePooling3D(name="avgpool")(x)
        super().__init__(inputs=clips, outputs=features, **kwargs)

        self.record_config(features, depth=depth, clip_length=clip_length, image_size=image_size,
                           width_multiplier=width_multiplier, conv1_t_size=conv1_t_size,
                           conv1_t_stride=conv1_t_stride, stem_channels=stem_channels,
                           no_max_pool=no_max_pool, variant=variant)


register_depths("r2plus1d", R2Plus1D, R2PLUS1D_DEPTHS)


@register_backbone("r2plus1d_34_ig65m")
def r2plus1d_34_ig65m(**kwargs) -> R2Plus1D:
    """torchvision-style R(2+1)D-34, the IG-65M checkpoints' definition (8 or 32 frames)."""
    return R2Plus1D(depth=34, variant="torchvision", **kwargs)
