"""C3D (Tran et al., ICCV 2015) up to pool5, as used by C3D-AVG (Parmar & Morris, CVPR 2019)."""

from typing import Optional

import keras
from keras import layers

from aqa_tf.models.backbones.base import Backbone, register_backbone, scaled_width
from aqa_tf.models.layers import tflite_ops

# (name, filters) of the eight 3x3x3 convolutions and the pools that follow some of them.
_C3D_CONVS = (("conv1", 64), ("conv2", 128), ("conv3a", 256), ("conv3b", 256),
              ("conv4a", 512), ("conv4b", 512), ("conv5a", 512), ("conv5b", 512))
_POOL_AFTER = {"conv1": ("pool1", (1, 2, 2)), "conv2": ("pool2", (2, 2, 2)),
               "conv3b": ("pool3", (2, 2, 2)), "conv4b": ("pool4", (2, 2, 2)),
               "conv5b": ("pool5", (2, 2, 2))}


@keras.saving.register_keras_serializable(package="aqa_tf")
@register_backbone("c3d")
class C3DBackbone(Backbone):
    """C3D convolutional body: conv1 .. pool5, flattened.

    A 16x112x112 clip gives 512 x 1 x 4 x 4 = 8192 features (pool5 pads H and W by one, as the
    Sports-1M model does). Features are flattened in channels-first order (C, T, H, W), the order
    of the PyTorch checkpoints, so that an imported fc6 matrix applies unchanged.

    Args:
      clip_length: frames per clip (16 in the paper).
      image_size: height and width of the (square) input frames (112 in the paper).
      width_multiplier: scales every layer's filters; 1.0 is the paper's network, smaller values
        give a network of the same topology for tests and CPU quick starts.
      batch_norm: adds BatchNorm between each convolution and its ReLU (convolutions then have
        no bias). Not in Tran et al.'s C3D (the papers start from Sports-1M weights); it is the
        C3D body of MSCADC (paper 001, Table 3) and what makes training from scratch work: without
        it the features of a randomly initialised C3D barely differ between videos and the
        classification heads do not learn on the synthetic dataset.
      fc6_units: if > 0, the backbone ends with C3D's fc6 (Dense + ReLU; 4096 in Sports-1M C3D),
        whose weights the Sports-1M checkpoint provides: paper 003's C3D-LSTM reads fc6
        features per clip.
      explicit_padding: pad with ZeroPadding3D layers and convolve with "valid" instead of
        convolving with "same" (the same numbers). None (default): explicit only where it is
        needed, on TensorFlow under a bfloat16 policy, before the convolutions whose input is
        smaller than the 3x3x3 kernel in some dimension (conv5a and conv5b of a 16-frame clip,
        temporal depth 2; below); "same" everywhere else, which trains 1.5x faster in float32
        (TensorFlow's graph optimiser cannot fuse a Conv3D whose input is a Pad that its filter
        gradient also reads, and then fuses nothing in the training graph) and 1.13x faster in
        bfloat16 than padding before every convolution (a paper-size C3D training step on 6
        clips, 2-core Zen 4 EPYC: 3.14 vs 3.54 s). Resolved when the model is built, so a saved
        config rebuilds with the padding right for the policy it is loaded under.

    Input: `[batch, clip_length, image_size, image_size, 3]`. Output: `[batch, feature_dim]`.
    """

    def __init__(self, clip_length: int = 16, image_size: int = 112,
                 width_multiplier: float = 1.0, batch_norm: bool = False, fc6_units: int = 0,
                 explicit_padding: Optional[bool] = None, **kwargs):
        # === Layers ===
        # Explicit zero padding + "valid" convolutions compute exactly the "same" convolutions
        # of the paper. They are spelled out under bfloat16 on TensorFlow because TF 2.21's
        # oneDNN bfloat16 Conv3D filter-gradient kernel returns NaN (about 1 call in 3 in our
        # tests) for "same" padding when the temporal depth (2 at conv5 of a 16-frame clip) is
        # smaller than the kernel; explicit padding avoids that kernel path
        # (tests/models/backbones/c3d_test.py). Deeper inputs gave no NaN (0 of 20 calls at
        # depths 3, 4, 8 and 16, against 4-11 of 20 at depth 2), so only the convolutions with
        # an input dimension below the kernel's are padded explicitly.
        bfloat16_on_tf = (keras.backend.backend() == "tensorflow" and
                          keras.mixed_precision.global_policy().compute_dtype == "bfloat16")

        def pads_explicitly(input_shape) -> bool:
            if explicit_padding is not None:
                return explicit_padding
            return bfloat16_on_tf and any(d is not None and d < 3 for d in input_shape[1:4])

        norm_layers = {name: layers.BatchNormalization(name=f"{name}_bn")
                       for name, _ in _C3D_CONVS} if batch_norm else {}

        # === Functional Model ===
        clips = keras.Input((clip_length, image_size, image_size, 3), name="clip")
        x = clips
        for name, filters in _C3D_CONVS:
            pad = pads_explicitly(x.shape)
            if pad:
                x = layers.ZeroPadding3D(1, name=f"{name}_pad")(x)
            x = layers.Conv3D(scaled_width(filters, width_multiplier), 3,
                              padding="valid" if pad else "same",
                              activation=None if batch_norm else "relu",
                              use_bias=not batch_norm, name=name)(x)
            if batch_norm:
                x = layers.ReLU(name=f"{name}_relu")(norm_layers[name](x))
            if name in _POOL_AFTER:
                pool_name, pool_size = _POOL_AFTER[name]
                if pool_name == "pool5":
                    # PyTorch MaxPool3d(padding=(0, 1, 1)) pads with -inf; after ReLU every value
                    # is >= 0 and every window keeps a real element, so zero padding is identical.
                    x = layers.ZeroPadding3D(((0, 0), (1, 1), (1, 1)), name="pool5_pad")(x)
                x = tflite_ops.MaxPooling3D(pool_size, strides=pool_size, name=pool_name)(x)
        x = layers.Permute((4, 1, 2, 3), name="to_channels_first")(x)
        features = layers.Flatten(name="flatten")(x)
        if fc6_units:
            features = layers.Dense(scaled_width(fc6_units, width_multiplier),
                                    activation="relu", name="fc6")(features)
        super().__init__(inputs=clips, outputs=features, **kwargs)

        # === Config ===
        self.record_config(features, clip_length=clip_length, image_size=image_size,
                           width_multiplier=width_multiplier, batch_norm=batch_norm,
                           fc6_units=fc6_units, explicit_padding=explicit_padding)

    def conv_parameter_count(self) -> int:
        """Parameters of the eight convolutions (27,655,936 for the paper's C3D)."""
        return sum(self.get_layer(name).count_params() for name, _ in _C3D_CONVS)
