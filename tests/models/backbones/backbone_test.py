"""Every registered backbone: output shape, config round trip and `.keras` save/load (keras-hub's
shared backbone checks), parametrised over the registry so a new backbone is covered by
registering it."""

import numpy as np
import pytest

import keras

from aqa_tf.models.backbones import build_backbone, known_backbones

# Small inputs that every backbone accepts (C3D pools time four times, MSCADC dilates conv5:
# both need 16 frames).
CLIP_LENGTH = {"c3d": 16, "mscadc": 16}
CASES = [(name, {}) for name in known_backbones()] + [
    ("c3d", {"batch_norm": True}), ("c3d", {"fc6_units": 64})]


@pytest.mark.parametrize("name, options", CASES,
                         ids=[n + "".join(f"-{k}" for k in o) for n, o in CASES])
def test_round_trip(name, options, tmp_path):
    clip_length = CLIP_LENGTH.get(name, 8)
    backbone = build_backbone(name, clip_length=clip_length, image_size=32,
                              width_multiplier=0.125, name="backbone", **options)
    x = np.random.default_rng(1).standard_normal((2, clip_length, 32, 32, 3)).astype("float32")
    expected = np.asarray(backbone(x))
    assert expected.shape[0] == 2 and expected.shape[-1] == backbone.feature_dim
    clone = type(backbone).from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    restored = keras.models.load_model(path)
    assert restored.get_config() == backbone.get_config()
    for key, value in options.items():
        assert restored.get_config()[key] == value
    np.testing.assert_allclose(np.asarray(restored(x)), expected, atol=1e-6)
