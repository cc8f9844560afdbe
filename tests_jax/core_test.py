"""CoRe under JAX: the paired model trains a step with its tree losses (both directions), the
inference model votes with a bank of exemplar features (score = the mean verdict), and the
weights round-trip through a `.weights.h5` file. Groups are given (`--core_groups`): no
records are read."""

import numpy as np

import keras

from aqa_tf.config import DataConfig, ModelConfig, TrainConfig
from aqa_tf.models import aqa_model
from aqa_tf.models.heads import core
from tests_jax import helpers

DATA = DataConfig(sample_length=32, num_frames=32, clip_length=16, clip_stride=16, crop_size=32)
CONFIG = ModelConfig(width_multiplier=0.0625, fc_units=0, heads=("core",), core_tree_depth=3,
                     core_hidden=8, core_difficulty=True, exemplar_match="any",
                     core_groups=(-30, -2, -2, 0, 0, 2, 2, 30))


def test_core_trains_votes_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = aqa_model.build_aqa_model(CONFIG, DATA)
    x, y = model.synthetic_batch(np.random.default_rng(0), 2)
    losses, weights = model.loss_dicts(TrainConfig())
    unchanged = helpers.train_one_step(model, x, y, losses, weights)
    helpers.assert_trained(model, unchanged)

    inference = model.inference_model()
    encoder = keras.Model(model.input["video"], model.features.pooled)
    bank = helpers.outputs(encoder, x["video"])["output"]  # two exemplars' features
    inputs = {"video": x["video"], "difficulty": np.array([2.0, 3.0], "float32"),
              core.EXEMPLAR_FEATURES: np.stack([bank, bank[::-1]]),
              core.EXEMPLAR_TARGETS: np.array([[10.0, 20.0], [5.0, 25.0]], "float32")}
    out = helpers.outputs(inference, inputs)
    assert out[core.VOTER_SCORES].shape == (2, 2)
    np.testing.assert_allclose(out["score"], out[core.VOTER_SCORES].mean(-1), rtol=1e-5)
    assert np.all(np.isfinite(out[core.VOTER_SCORES]))
    helpers.assert_weights_round_trip(
        model, lambda: aqa_model.build_aqa_model(CONFIG, DATA), x, tmp_path)
