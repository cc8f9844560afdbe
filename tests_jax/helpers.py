"""What every JAX test checks of a model: one training step and the weights' round trip."""

from typing import Callable, Dict, Optional, Set

import numpy as np

import keras


def train_one_step(model: keras.Model, x, y, loss="mse",
                   loss_weights: Optional[Dict[str, float]] = None,
                   optimizer: Optional[keras.optimizers.Optimizer] = None) -> Set[str]:
    """Compiles `model` (default Adam; XLA, JAX's default) and trains one step on `(x, y)`;
    checks the loss is finite. Returns the paths of the trainable variables that did not
    change."""
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), loss=loss,
                  loss_weights=loss_weights, jit_compile=True)
    before = {v.path: np.array(v) for v in model.trainable_variables}
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    return {v.path for v in model.trainable_variables
            if np.array_equal(before[v.path], np.asarray(v))}


def assert_trained(model: keras.Model, unchanged: Set[str],
                   max_unchanged: float = 0.05):
    """Checks that a training step reached the input end of `model` (its first trainable
    variable changed) and changed all but a few of its trainable variables. A few may keep
    their values in models this small: a BatchNorm over a 1x1x1 map of two samples, or
    attention over two nearly equal clips, can get a gradient that is zero or below Adam's
    epsilon."""
    variables = model.trainable_variables
    assert variables[0].path not in unchanged, f"{variables[0].path} did not train"
    assert len(unchanged) <= max_unchanged * len(variables), (
        f"{len(unchanged)} of {len(variables)} variables did not train: {sorted(unchanged)}")


def outputs(model: keras.Model, x) -> Dict[str, np.ndarray]:
    """The model's inference outputs on `x` as numpy arrays (dict outputs by name), from the
    XLA-compiled predict step: one compilation of the graph costs less than running it
    eagerly, which compiles every op of a new shape on its own."""
    result = model.predict_on_batch(x)
    if isinstance(result, dict):
        return {k: np.asarray(v) for k, v in result.items()}
    return {"output": np.asarray(result)}


def assert_weights_round_trip(model: keras.Model, build: Callable[[], keras.Model], x,
                              folder) -> keras.Model:
    """Saves `model`'s weights (`.weights.h5`), loads them into `build()` (a fresh model,
    differently initialised) and checks both give identical outputs on `x`. Returns the
    fresh model."""
    path = str(folder / "model.weights.h5")
    model.save_weights(path)
    expected = outputs(model, x)
    keras.utils.set_random_seed(1234)
    fresh = build()
    assert any(not np.array_equal(a, b) for a, b in
               zip(fresh.get_weights(), model.get_weights())), "the fresh model is not fresh"
    fresh.load_weights(path)
    got = outputs(fresh, x)
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    return fresh
