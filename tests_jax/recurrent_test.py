"""The GRU / LSTM of `aqa_tf.models.layers.recurrent` under JAX: the numbers of Keras's own
layers (outputs, final states, input and weight gradients) without Keras's per-step loop."""

import jax
import numpy as np
import pytest

import keras

from aqa_tf.models.layers import recurrent


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_same_numbers_as_keras(name, monkeypatch):
    mine_cls, keras_cls = ((recurrent.GRU, keras.layers.GRU) if name == "gru"
                           else (recurrent.LSTM, keras.layers.LSTM))
    layers = [cls(8, return_sequences=True, return_state=True) for cls in (keras_cls, mine_cls)]
    rng = np.random.default_rng(0)
    for layer in layers:
        layer.build((None, None, 24))
    weights = [rng.standard_normal(w.shape).astype("float32") * 0.3
               for w in layers[0].get_weights()]
    x = rng.standard_normal((3, 7, 24)).astype("float32")
    results = []
    for i, layer in enumerate(layers):
        layer.set_weights(weights)
        if i:  # the layer under test must not fall back to Keras's step loop
            monkeypatch.setattr(keras.layers.RNN, "inner_loop", None)

        fixed = [v.value for v in layer.non_trainable_variables]  # the seed generator's

        def loss(variables, x, layer=layer, fixed=fixed):
            outputs, _ = layer.stateless_call(variables, fixed, x)
            return sum(jax.numpy.sum(jax.numpy.sin(o)) for o in outputs), outputs

        variables = [v.value for v in layer.trainable_variables]
        (_, outputs), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            variables, x)
        results.append([np.asarray(o) for o in outputs] + [np.asarray(g) for g in grads[0]]
                       + [np.asarray(grads[1])])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
