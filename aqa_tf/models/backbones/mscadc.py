"""MSCADC body (paper 001, section 4.2 and Table 3): C3D with BatchNorm, narrower, without the
last two poolings, dilated conv5.

Facts from the MTL-AQA authors' code (`C3D_dilated_body`): conv1 32, conv2 64, conv3a/b 128,
conv4a/b 256, conv5a 256 (padding 2, dilation 2), conv5b 256 (padding 1, dilation 2), every
convolution 3x3x3 with bias and followed by BN + ReLU; max-pools (1,2,2), (2,2,2), (2,2,2) after
conv1, conv2 and conv3b; dropout 0.5 at the end. Note conv5b's padding (1) is smaller than its
dilation (2): it shrinks the map by 2 in each dimension, as in the authors' network.

Unlike the clip backbones, the body returns a feature map (`[batch, T', H', W', 256]`), which the
MSCADC task heads (`aqa_tf.models.heads.mscadc`) read; `spatial_features = True` tells
`AQAModel` so. The input is the whole action subsampled to 16 frames (`--frame_step`),
180x180 crops of 640x360 frames, which give a 2x20x20x256 map.

Layer names are the authors' state-dict module names (`conv1`, `bn1`, ..., `conv5b`, `bn5b`).
"""

import keras
from keras import layers

from aqa_tf.models.backbones.base import (Backbone, register_backbone, scaled_width,
                                          torch_batch_norm)
from aqa_tf.models.layers import tflite_ops

# (conv name, bn name, filters, padding, dilation, pool after)
_BODY = (("conv1", "bn1", 32, 1, 1, (1, 2, 2)),
         ("conv2", "bn2", 64, 1, 1, (2, 2, 2)),
         ("conv3a", "bn3a", 128, 1, 1, None),
         ("conv3b", "bn3b", 128, 1, 1, (2, 2, 2)),
         ("conv4a", "bn4a", 256, 1, 1, None),
         ("conv4b", "bn4b", 256, 1, 1, None),
         ("conv5a", "bn5a", 256, 2, 2, None),
         ("conv5b", "bn5b", 256, 1, 2, None))


@keras.saving.register_keras_serializable(package="aqa_tf")
@register_backbone("mscadc")
class MSCADCBody(Backbone):
    """The shared MSCADC body.

    Args:
      clip_length: frames of the (subsampled) action, 16 in the paper.
      image_size: side of the square crop, 180 in the paper.
      width_multiplier: scales the body's filters (1.0: the paper's network).
      dropout: dropout rate at the end of the body (authors: 0.5).

    Input: `[batch, clip_length, image_size, image_size, 3]`. Output: the feature map
    `[batch, T', H', W', feature_dim]` (16x180x180 -> 2x20x20x256).
    """

    spatial_features = True

    def __init__(self, clip_length: int = 16, image_size: int = 180,
                 width_multiplier: float = 1.0, dropout: float = 0.5, **kwargs):
        clips = keras.Input((clip_length, image_size, image_size, 3), name="clip")
        x = clips
        for conv, bn, filters, padding, dilation, pool in _BODY:
            x = layers.ZeroPadding3D(padding, name=f"{conv}_pad")(x)
            x = tflite_ops.Conv3D(scaled_width(filters, width_multiplier), 3,
                                  dilation_rate=dilation, name=conv)(x)
            x = torch_batch_norm(bn)(x)
            x = layers.ReLU(name=f"{conv}_relu")(x)
            if pool:
                x = tflite_ops.MaxPooling3D(pool, strides=pool, name=f"pool{conv[4]}")(x)
        if min(x.shape[1:4]) < 1:
            raise ValueError(f"MSCADC body: input {clip_length}x{image_size}x{image_size} is too "
                             "small (the feature map would be empty); the paper uses 16x180x180")
        features = layers.Dropout(dropout, name="dropout")(x)
        super().__init__(inputs=clips, outputs=features, **kwargs)
        self.record_config(features, clip_length=clip_length, image_size=image_size,
                           width_multiplier=width_multiplier, dropout=dropout)
