"""One backbone of each backbone module (`tests.helpers.backbone_per_module`: the module's other
depths, bottleneck blocks and stems are the same layer classes), inside a whole model (clips
through TimeDistributed), runs under the mixed precision policies with float32 outputs. (float32
training of every backbone is covered by tests/configs_test.py.)

- mixed_bfloat16: a training step's forward and backward pass, loss and gradients finite.
- mixed_float16 is a GPU policy: TensorFlow has no CPU float16 kernel for MaxPool3D, so on a
  machine without a GPU the forward pass runs compiled with XLA (whose CPU backend has one). Its
  backward pass is not checked on CPU: XLA's CPU float16 convolution gradients accumulate in
  float16 and overflow on the first layers, which GPUs (float32 accumulation) with the loss
  scaling that Keras adds for this policy do not.
"""

import numpy as np
import pytest

import keras
import tensorflow as tf

from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models.aqa_model import build_aqa_model
from tests.helpers import backbone_per_module


def _model_and_video(backbone, policy):
    if backbone == "mscadc":  # the whole action as one 16-frame clip
        data = DataConfig(sample_length=16, num_frames=16, clip_length=16, crop_size=32)
    else:  # two 16-frame clips (C3D's pool5 needs 16 frames)
        data = DataConfig(sample_length=32, num_frames=32, clip_length=16, crop_size=32)
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = build_aqa_model(ModelConfig(backbone=backbone, width_multiplier=0.0625,
                                        fc_units=8), data)
    video = np.random.default_rng(0).standard_normal(
        (2, data.num_clips, data.clip_length, 32, 32, 3)).astype("float32")
    return model, tf.constant(video)


@pytest.mark.parametrize("backbone", backbone_per_module())
def test_backbone_trains_a_step_in_mixed_bfloat16(backbone):
    try:
        model, video = _model_and_video(backbone, "mixed_bfloat16")
        with tf.GradientTape() as tape:
            outputs = model({"video": video}, training=True)
            loss = tf.reduce_mean(tf.square(outputs["score"] / 17.0 - 1.0)) + sum(
                tf.reduce_mean(outputs[k]) for k in outputs if k != "score")
        grads = tape.gradient(loss, model.trainable_weights)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(v.dtype == tf.float32 for v in outputs.values())
    assert model.get_layer("clip_encoder").compute_dtype == "bfloat16"
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in grads)


@pytest.mark.parametrize("backbone", backbone_per_module())
def test_backbone_runs_in_mixed_float16(backbone):
    try:
        model, video = _model_and_video(backbone, "mixed_float16")
        on_gpu = bool(tf.config.list_physical_devices("GPU"))
        forward = tf.function(lambda v: model({"video": v}, training=False),
                              jit_compile=not on_gpu)
        outputs = forward(video)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("clip_encoder").compute_dtype == "float16"
    assert all(v.dtype == tf.float32 for v in outputs.values())
    assert all(np.isfinite(np.asarray(v)).all() for v in outputs.values())
