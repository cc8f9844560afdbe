"""GRU / LSTM with the input products before the loop: the numbers of Keras's layers (outputs,
final states, gradients of inputs and weights), Keras's own loop where a cell has dropout, and
weights files interchangeable with Keras's layers."""

import numpy as np
import pytest

import keras
import tensorflow as tf

from aqa_tf.models.layers import recurrent

CASES = {
    "gru": (recurrent.GRU, keras.layers.GRU, {}),
    "gru_reset_before": (recurrent.GRU, keras.layers.GRU, {"reset_after": False}),
    "lstm": (recurrent.LSTM, keras.layers.LSTM, {}),
    "gru_backwards": (recurrent.GRU, keras.layers.GRU, {"go_backwards": True}),
    "lstm_last_output": (recurrent.LSTM, keras.layers.LSTM, {"return_sequences": False}),
}


def _pair(case, input_dim=24, units=8):
    mine, reference, options = CASES[case]
    options = {"return_sequences": True, "return_state": True, **options}
    a, b = mine(units, **options), reference(units, **options)
    a.build((None, None, input_dim))
    b.build((None, None, input_dim))
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(w.shape).astype("float32") * 0.3 for w in b.get_weights()]
    a.set_weights(weights)
    b.set_weights(weights)
    return a, b


def _run(layer, x, initial_state=None, mask=None):
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x, initial_state=initial_state, mask=mask)
        loss = sum(tf.reduce_sum(tf.sin(o)) for o in outputs)
    return [np.asarray(o) for o in outputs] + [
        np.asarray(g) for g in tape.gradient(loss, [x] + layer.trainable_variables)]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("with_state_and_mask", [False, True])
def test_same_numbers_as_keras_without_its_step_loop(case, with_state_and_mask, monkeypatch):
    mine, reference = _pair(case)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((3, 7, 24)), "float32")
    initial_state = mask = None
    if with_state_and_mask:
        states = 2 if "lstm" in case else 1
        initial_state = [tf.constant(rng.standard_normal((3, 8)), "float32")
                         for _ in range(states)]
        mask = tf.constant(np.arange(7)[None] < np.array([[7], [4], [1]]))
    expected = _run(reference, x, initial_state, mask)

    def keras_loop(*args, **kwargs):
        raise AssertionError("Keras's per-step loop ran")

    monkeypatch.setattr(keras.layers.RNN, "inner_loop", keras_loop)
    got = _run(mine, x, initial_state, mask)
    assert len(got) == len(expected)
    for value, want in zip(got, expected):
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-5)


def test_dropout_cells_keep_keras_loop(monkeypatch):
    calls = []
    original = keras.layers.RNN.inner_loop

    def spy(self, *args, **kwargs):
        calls.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.RNN, "inner_loop", spy)
    layer = recurrent.GRU(4, dropout=0.3, name="with_dropout")
    layer(np.ones((2, 3, 5), "float32"), training=True)
    assert calls == ["with_dropout"]


@pytest.mark.parametrize("case", ["gru", "lstm"])
def test_weights_files_interchange_with_keras_layers(case, tmp_path):
    mine_cls, reference_cls, _ = CASES[case]

    def model(cls):
        inputs = keras.Input((None, 6))
        return keras.Model(inputs, cls(5, name="rnn")(inputs))

    reference, mine = model(reference_cls), model(mine_cls)
    path = str(tmp_path / "rnn.weights.h5")
    reference.save_weights(path)
    mine.load_weights(path)
    x = np.random.default_rng(2).standard_normal((2, 4, 6)).astype("float32")
    np.testing.assert_allclose(np.asarray(mine(x)), np.asarray(reference(x)), rtol=1e-5,
                               atol=1e-6)
