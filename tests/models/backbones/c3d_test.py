import numpy as np
import pytest

import keras

from aqa_tf.models.backbones import build_backbone, known_backbones
from aqa_tf.models.backbones.c3d import C3DBackbone


def test_paper_c3d_has_27655936_conv_parameters_and_8192_features():
    backbone = build_backbone("c3d")  # 16 x 112 x 112, full width.
    assert backbone.conv_parameter_count() == 27_655_936
    assert backbone.feature_dim == 8192
    assert backbone.output_shape == (None, 8192)
    # pool5 sees 512 x 2 x 7 x 7 and pads H, W by one: 512 x 1 x 4 x 4.
    assert backbone.get_layer("pool5").output.shape[1:] == (1, 4, 4, 512)


def test_small_c3d_forward_shape_and_flatten_order():
    backbone = build_backbone("c3d", clip_length=16, image_size=32, width_multiplier=0.125)
    clips = np.random.default_rng(0).standard_normal((2, 16, 32, 32, 3)).astype("float32")
    features = backbone(clips)
    assert features.shape == (2, backbone.feature_dim)
    # Channels-first flatten (the PyTorch order): reproduce it from pool5.
    pool5 = keras.Model(backbone.input, backbone.get_layer("pool5").output)(clips)
    expected = np.transpose(np.asarray(pool5), (0, 4, 1, 2, 3)).reshape(2, -1)
    np.testing.assert_allclose(np.asarray(features), expected, rtol=1e-6)


def test_batch_norm_variant_has_bn_after_every_conv():
    # (Its save/load round trip: tests/models/backbones/backbone_test.py.)
    backbone = C3DBackbone(clip_length=16, image_size=32, width_multiplier=0.125,
                           batch_norm=True, name="c3d")
    names = [layer.name for layer in backbone.layers]
    for conv in ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b"):
        assert backbone.get_layer(conv).use_bias is False
        assert names.index(f"{conv}_bn") == names.index(conv) + 1
    assert backbone.feature_dim == build_backbone(
        "c3d", clip_length=16, image_size=32, width_multiplier=0.125).feature_dim


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(ValueError, match="known backbones: .*c3d"):
        build_backbone("c4d")
    assert "c3d" in known_backbones()


def test_bfloat16_filter_gradients_stay_finite_at_temporal_depth_two():
    # Regression test. With padding="same", TF 2.21's oneDNN bf16 Conv3D filter gradient
    # returned NaN for inputs of temporal depth 2 (conv5 of a 16-frame clip) in about a third
    # of the calls (seen with [24, 2, 3, 3, 8] inputs), and training collapsed. C3DBackbone
    # therefore pads explicitly and convolves with "valid" where an input dimension is below
    # the kernel's 3 (conv5 only: depths 3 and more gave no NaN); that path must stay finite.
    import tensorflow as tf
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        backbone = build_backbone("c3d", clip_length=16, image_size=56, width_multiplier=0.125)
        assert all(backbone.get_layer(name).padding == "valid" and
                   backbone.get_layer(name + "_pad").padding == ((1, 1), (1, 1), (1, 1))
                   for name in ("conv5a", "conv5b"))
        assert all(backbone.get_layer(name).padding == "same"
                   for name in ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b"))
        assert not any(layer.name in ("conv1_pad", "conv4b_pad") for layer in backbone.layers)
        # The same construction at the shape that triggered the bug.
        pad = keras.layers.ZeroPadding3D(1)
        conv = keras.layers.Conv3D(8, 3, padding="valid", activation="relu")
        rng = np.random.default_rng(0)
        for _ in range(20):
            x = tf.nn.relu(tf.constant(rng.standard_normal((24, 2, 3, 3, 8)), tf.float32))
            weights = tf.constant(rng.standard_normal((24, 2, 3, 3, 8)), tf.float32)
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.cast(conv(pad(x)), tf.float32) * weights)
            grad = tape.gradient(loss, conv.kernel)
            assert np.all(np.isfinite(np.asarray(grad, np.float32)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_same_padding_in_float32_gives_the_explicit_padding_numbers():
    # Float32 convolves with "same" (TensorFlow fuses nothing in a training graph where a Pad
    # feeds a Conv3D and its filter gradient: 1.5x slower training at paper size); bfloat16
    # keeps the explicit padding of the test above at conv5. Same weights, same numbers, same
    # gradients.
    import tensorflow as tf
    same = build_backbone("c3d", clip_length=16, image_size=32, width_multiplier=0.125)
    assert same.get_layer("conv1").padding == "same"
    assert not any(layer.name.endswith("_pad") and layer.name != "pool5_pad"
                   for layer in same.layers)
    explicit = build_backbone("c3d", clip_length=16, image_size=32, width_multiplier=0.125,
                              explicit_padding=True)
    assert explicit.get_layer("conv1_pad") is not None
    explicit.set_weights(same.get_weights())
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 16, 32, 32, 3)), tf.float32)
    results = []
    for model in (same, explicit):
        with tf.GradientTape() as tape:
            features = model(x, training=True)
            loss = tf.reduce_sum(features * tf.range(features.shape[-1], dtype=tf.float32))
        results.append((features.numpy(), [g.numpy() for g in
                                           tape.gradient(loss, model.trainable_variables)]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        # Float32 sums in another order: an absolute tolerance on each gradient's own scale (a
        # CI run on a 2-core AMD EPYC differed by 2.3e-4 at an element of 0.87 in a gradient
        # whose largest element is 46, 5e-6 of it).
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5 * np.abs(b).max())
    # The choice is resolved at build time: the config keeps "not given".
    assert same.get_config()["explicit_padding"] is None
