"""TSA under JAX: the paired model trains a step with its losses (both directions of the score
difference, both videos' transitions), the annotated/predicted cut switch is a variable the
head's callback sets, the inference model votes with a bank of exemplar step maps (the
`bank_encoder`'s) and returns the steps (transitions, shares that add up to the difference),
and the weights round-trip through a `.weights.h5` file. No records are read."""

import numpy as np

import keras

from aqa_tf.config import DataConfig, ModelConfig, TrainConfig
from aqa_tf.models import aqa_model
from aqa_tf.models.heads import core, tsa
from tests_jax import helpers

DATA = DataConfig(sample_length=24, num_frames=24, clip_length=8, clip_starts=(0, 4, 8, 12, 16),
                  crop_size=32)
CONFIG = ModelConfig(backbone="i3d", width_multiplier=0.125, aggregation="average",
                     fc_units=0, dropout=0.0, heads=("tsa",), tsa_heads=2, tsa_layers=1,
                     exemplar_match="any")


def test_tsa_trains_votes_with_step_maps_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = aqa_model.build_aqa_model(CONFIG, DATA)
    x, y = model.synthetic_batch(np.random.default_rng(0), 2)
    losses, weights = model.loss_dicts(TrainConfig())
    (switch,) = {c.layer for c in model.heads["tsa"].callbacks(TrainConfig(epochs=4))[:1]}
    switch.use_labels.assign(0.0)  # the predicted cut, as after the label epochs
    unchanged = helpers.train_one_step(model, x, y, losses, weights)
    helpers.assert_trained(model, unchanged)

    encoder = model.heads["tsa"].bank_encoder(model)
    bank = helpers.outputs(encoder, x["video"])["output"]  # two exemplars' step maps
    targets = np.array([[10.0, 20.0], [5.0, 25.0]], "float32")
    out = helpers.outputs(model.inference_model(), {
        "video": x["video"], core.EXEMPLAR_FEATURES: np.stack([bank, bank[::-1]]),
        core.EXEMPLAR_TARGETS: targets})
    assert out[core.VOTER_SCORES].shape == (2, 2)
    np.testing.assert_allclose(out["score"], out[core.VOTER_SCORES].mean(-1), rtol=1e-5)
    np.testing.assert_allclose(out[tsa.STEP_CONTRIBUTIONS].sum(-1),
                               out["score"] - targets.mean(-1), atol=1e-4)
    transitions = out["step_transitions"]
    assert np.all((transitions[:, 0] >= 1) & (transitions[:, 1] > transitions[:, 0]))
    helpers.assert_weights_round_trip(
        model, lambda: aqa_model.build_aqa_model(CONFIG, DATA), x, tmp_path)
