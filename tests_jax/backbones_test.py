"""A backbone of every backbone module under JAX (`tests.helpers.backbone_per_module`, from the
registry, so a new module is covered by registering it): build, forward, and the config and
weights through a `.weights.h5` file into a rebuilt backbone; one training step each.

The module's other registered names (deeper depths, bottleneck blocks, the IG-65M stem) are
the same layer classes in other numbers: what JAX runs differently is per layer class. C3D
and MSCADC train inside whole models in `aqa_model_test.py`."""

import numpy as np
import pytest

import keras

from aqa_tf.models.backbones import build_backbone
from tests.helpers import backbone_per_module
from tests_jax import helpers

# The smallest clips every backbone takes: C3D pools time four times and MSCADC dilates conv5
# (both need 16 frames), S3D pools time to 1 at 8; the ResNets run on 4. Width 1/16 of the
# published networks.
CLIP_LENGTH = {"c3d": 16, "mscadc": 16, "s3d": 8}
SIZE, WIDTH = 32, 0.0625
BACKBONES = backbone_per_module()
TRAINED = [name for name in BACKBONES if name not in ("c3d", "mscadc")]


def _backbone_and_clips(name):
    keras.utils.set_random_seed(0)
    clip_length = CLIP_LENGTH.get(name, 4)
    backbone = build_backbone(name, clip_length=clip_length, image_size=SIZE,
                              width_multiplier=WIDTH, name="backbone")
    x = np.random.default_rng(0).standard_normal((2, clip_length, SIZE, SIZE, 3)).astype(
        "float32")
    return backbone, x


def test_a_backbone_of_every_family_is_covered():
    from aqa_tf import registry
    assert {registry.BACKBONES.declared[name] for name in BACKBONES} == set(
        registry.BACKBONES.declared.values())
    assert {"i3d", "r2plus1d_18", "resnet3d_18", "s3d"} <= set(TRAINED)


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_forward_and_weights_round_trip(name, tmp_path):
    backbone, x = _backbone_and_clips(name)
    features = helpers.outputs(backbone, x)["output"]
    assert features.shape[0] == 2 and features.shape[-1] == backbone.feature_dim
    assert np.isfinite(features).all() and features.std() > 0
    rebuilt = helpers.assert_weights_round_trip(
        backbone, lambda: type(backbone).from_config(backbone.get_config()), x, tmp_path)
    assert rebuilt.get_config() == backbone.get_config()


@pytest.mark.parametrize("name", TRAINED)
def test_backbone_trains_a_step(name):
    backbone, x = _backbone_and_clips(name)
    clip = keras.Input(x.shape[1:])
    model = keras.Model(clip, keras.layers.Dense(1, name="regressor")(backbone(clip)))
    # SGD: its update graph is smaller than Adam's (compiling the step is most of the time).
    unchanged = helpers.train_one_step(model, x, np.array([[0.5], [-0.5]], "float32"),
                                       optimizer=keras.optimizers.SGD(0.01))
    helpers.assert_trained(model, unchanged)
