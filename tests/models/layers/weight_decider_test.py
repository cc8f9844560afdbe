"""Weight-Decider (paper 002, eq. 1-3): softmax across clips per element, serialisation, and
learning to weight the one clip that carries the signal."""

import numpy as np

import keras

from aqa_tf.models.layers.aggregation import build_aggregation
from aqa_tf.models.layers.weight_decider import WeightDecider


def test_paper_mlp_and_softmax_across_clips_per_element():
    layer = WeightDecider(name="wd")
    features = np.random.default_rng(0).standard_normal((2, 6, 128)).astype("float32")
    video, weights = layer(features)
    # 128 -> 64 -> 32 -> 64 -> 128.
    assert [d.units for d in layer.hidden] + [layer.to_weights.units] == [64, 32, 64, 128]
    assert video.shape == (2, 128) and weights.shape == (2, 6, 128)
    weights = np.asarray(weights)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)  # every element, over clips
    assert np.ptp(weights, axis=2).max() > 0  # elements get different weights
    np.testing.assert_allclose(np.asarray(video), (features * weights).sum(axis=1), rtol=1e-5,
                               atol=1e-6)


def test_round_trips_through_config_and_save_load(tmp_path):
    inputs = keras.Input((4, 16))
    video, weights = WeightDecider(hidden_units=(8, 4, 8), name="wd")(inputs)
    model = keras.Model(inputs, {"video": video, "weights": weights})
    clone = WeightDecider.from_config(model.get_layer("wd").get_config())
    assert clone.hidden_units == (8, 4, 8)
    path = str(tmp_path / "wd.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    x = np.random.default_rng(1).standard_normal((3, 4, 16)).astype("float32")
    for key in ("video", "weights"):
        np.testing.assert_allclose(np.asarray(restored(x)[key]), np.asarray(model(x)[key]),
                                   atol=1e-6)


def _fit(aggregation, x, y, x_test, y_test):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(x.shape[1:])
    layer = build_aggregation(aggregation)
    out = layer(inputs)
    video = out[0] if isinstance(out, (tuple, list)) else out
    model = keras.Model(inputs, keras.layers.Dense(1)(video))
    model.compile(keras.optimizers.Adam(3e-3), "mse")
    model.fit(x, y, batch_size=64, epochs=60, verbose=0)
    mse = float(model.evaluate(x_test, y_test, verbose=0))
    weights = None
    if isinstance(out, (tuple, list)):
        weights = np.asarray(keras.Model(inputs, out[1])(x_test))
    return mse, weights


def test_learns_to_weight_the_clip_that_carries_the_signal():
    # Six clips of 16-d features; only clip 2 is informative: its features are large and the
    # score is a linear function of them. The other clips are noise of the same size that
    # hides the signal when averaged.
    rng = np.random.default_rng(0)
    num, clips, dim, signal_clip = 1200, 6, 16, 2
    x = rng.standard_normal((num, clips, dim)).astype("float32")
    x[:, signal_clip] += 2.0  # the informative clip is recognisable by its values
    direction = rng.standard_normal(dim).astype("float32")
    y = (x[:, signal_clip] @ direction)[:, None].astype("float32")
    x_train, y_train, x_test, y_test = x[:1000], y[:1000], x[1000:], y[1000:]

    wd_mse, weights = _fit("weight_decider", x_train, y_train, x_test, y_test)
    avg_mse, _ = _fit("average", x_train, y_train, x_test, y_test)
    mean_weight = weights.mean(axis=(0, 2))  # per clip
    print("WD test mse", wd_mse, "average test mse", avg_mse, "mean weight per clip", mean_weight)
    assert mean_weight[signal_clip] > 2.0 / clips  # twice the uniform weight, or more
    assert mean_weight.argmax() == signal_clip
    assert wd_mse < 0.5 * avg_mse
