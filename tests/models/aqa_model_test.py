import numpy as np
import pytest

import keras

from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models import aqa_model

DATA = DataConfig(sample_length=32, num_frames=32, clip_length=16, clip_stride=16, crop_size=32)


def _video(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal(
        (batch, DATA.num_clips, 16, 32, 32, 3)).astype("float32")


def test_mtl_outputs_and_shapes():
    model = aqa_model.build_aqa_model(
        ModelConfig(width_multiplier=0.125, fc_units=32), DATA)
    out = model({"video": _video()})
    assert set(out) == {"score", "position", "armstand", "rotation_type", "somersaults", "twists"}
    assert out["score"].shape == (2,)
    assert out["position"].shape == (2, 3) and out["somersaults"].shape == (2, 10)
    assert out["twists"].shape == (2, 8) and out["rotation_type"].shape == (2, 4)


def test_stl_has_only_score_and_averages_clips():
    model = aqa_model.build_aqa_model(
        ModelConfig(width_multiplier=0.125, fc_units=32, heads=("score",)), DATA)
    assert list(model.output) == ["score"]
    # Averaging: the prediction does not depend on the order of the clips.
    video = _video(1)
    swapped = video[:, ::-1]
    np.testing.assert_allclose(np.asarray(model({"video": video})["score"]),
                               np.asarray(model({"video": swapped})["score"]), rtol=1e-5)


def test_class_counts_come_from_the_config():
    config = ModelConfig(width_multiplier=0.125, fc_units=16,
                         num_classes=(("position", 4), ("armstand", 2), ("rotation_type", 4),
                                      ("somersaults", 12), ("twists", 8)))
    model = aqa_model.build_aqa_model(config, DATA)
    assert model.output["position"].shape[-1] == 4
    assert model.output["somersaults"].shape[-1] == 12


def test_save_load_round_trip(tmp_path):
    model = aqa_model.build_aqa_model(ModelConfig(width_multiplier=0.125, fc_units=16), DATA)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    video = _video(1, seed=3)
    for name, value in model({"video": video}).items():
        np.testing.assert_allclose(np.asarray(restored({"video": video})[name]),
                                   np.asarray(value), atol=1e-5)


def test_bad_config_fails_fast_with_the_value():
    with pytest.raises(ValueError, match="heads=.*unknown"):
        aqa_model.build_aqa_model(ModelConfig(heads=("score", "pose")), DATA)
    with pytest.raises(ValueError, match="num_frames=8 < clip_length=16"):
        aqa_model.build_aqa_model(ModelConfig(), DataConfig(sample_length=8, num_frames=8))


def test_backbone_bn_momentum_sets_the_backbones_batch_norms():
    """`--backbone_bn_momentum` sets the momentum of every BatchNorm of the backbone (here
    C3D's with `--backbone_batch_norm`, Keras' default 0.99), and only there; 0 keeps the
    backbone's own; a value outside [0, 1) names the option."""
    from aqa_tf.config import ConfigError

    def momenta(**options):
        model = aqa_model.build_aqa_model(ModelConfig(
            width_multiplier=0.125, fc_units=16, heads=("score",), backbone_batch_norm=True,
            **options), DATA)
        found = {layer.momentum for layer in aqa_model.backbone_of(model)._flatten_layers()
                 if isinstance(layer, keras.layers.BatchNormalization)}
        assert found
        return found

    assert momenta() == {0.99}
    assert momenta(backbone_bn_momentum=0.9) == {0.9}
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match=f"backbone_bn_momentum={bad} must be in"):
            ModelConfig(backbone_bn_momentum=bad).validate()


@pytest.mark.parametrize("aggregation", ["weight_decider", "lstm_encoder", "lstm"])
def test_other_aggregations_build_run_and_round_trip(aggregation, tmp_path):
    # `lstm` is paper 003's C3D-LSTM: fc6 per clip inside the backbone, LSTM, regressor.
    fc6 = {"backbone_fc6": 4096, "fc_units": 0} if aggregation == "lstm" else {"fc_units": 16}
    model = aqa_model.build_aqa_model(
        ModelConfig(width_multiplier=0.125, heads=("score",), aggregation=aggregation,
                    lstm_units=8, **fc6), DATA)
    if aggregation == "lstm":
        assert aqa_model.backbone_of(model).feature_dim == 512  # fc6, at 1/8 width
    video = _video()
    expected = np.asarray(model({"video": video})["score"])
    assert expected.shape == (2,) and np.all(np.isfinite(expected))
    path = str(tmp_path / f"{aggregation}.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(restored({"video": video})["score"]), expected,
                               rtol=1e-5, atol=1e-5)
    if aggregation == "weight_decider":
        weights = keras.Model(model.input, model.get_layer("weight_decider").output[1])(
            {"video": video})
        assert weights.shape == (2, DATA.num_clips, aqa_model.backbone_of(model).feature_dim)
        np.testing.assert_allclose(np.asarray(weights).sum(axis=1), 1.0, atol=1e-5)


def test_multiply_difficulty_scales_the_score():
    model = aqa_model.build_aqa_model(
        ModelConfig(width_multiplier=0.125, fc_units=16, heads=("score",),
                    multiply_difficulty=True), DATA)
    assert set(model.input) == {"video", "difficulty"}
    video = _video()
    one = np.asarray(model({"video": video, "difficulty": np.ones(2, "float32")})["score"])
    dd = np.array([2.0, 3.5], "float32")
    scaled = np.asarray(model({"video": video, "difficulty": dd})["score"])
    np.testing.assert_allclose(scaled, one * dd, rtol=1e-5)
