"""GRU and LSTM layers that multiply the whole input sequence by the input kernel at once.

Keras's GRU and LSTM run on cuDNN where the backend and device allow it; everywhere else (a
CPU, and any JAX or TensorFlow run without cuDNN) each time step of their generic loop
multiplies that step's input by the input kernel: one `[batch, input_dim] x [input_dim, 3 or 4
units]` product per step, which streams the whole kernel from memory for a few rows. In S2VT
(C3D-AVG-MTL's caption model) the first encoder GRU reads 8192-d clip features with a 50 MB
kernel for 107 steps (6 clips, 101 words), and the backward pass does it twice more: most of
a training step's caption time. Here the products of every step are one matrix product before
the loop (`[batch * steps, input_dim] x kernel`, the kernel read once; its gradient is one
product too) and the loop keeps only the recurrent products. The numbers are those of Keras's
cells up to float rounding (the same products, summed in another order).

Used when the cell has no input or recurrent dropout (whose masks the generic loop applies
per step); Keras's own path otherwise, and cuDNN wherever Keras would take it. The classes keep
Keras's names: weights files address variables by snake-cased class names, so checkpoints of
models built with `keras.layers.GRU` / `LSTM` load unchanged.
"""

import keras
from keras import layers, ops, tree
# The generic step loop Keras's own RNN layers call; Keras exports it only under `keras.src`.
from keras.src import backend


class _ProjectedLoop(layers.RNN):
    """The generic loop of an RNN whose input products are done before it.

    Placed after Keras's GRU / LSTM in the method resolution order (`class GRU(layers.GRU,
    _ProjectedLoop)`), so their `inner_loop` runs first (cuDNN where they take it, its dropout
    handling and checks) and its fallback, `super().inner_loop`, reaches this one instead of
    `RNN.inner_loop`. Subclasses give `_input_bias()` and `_projected_step(projected, states)`.
    """

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if cell.dropout or cell.recurrent_dropout:  # masks applied per step: Keras's loop
            return super().inner_loop(sequences, initial_state, mask, training=training)
        projected = ops.matmul(sequences, cell.kernel)
        if cell.use_bias:
            projected = projected + self._input_bias()
        states = list(initial_state) if tree.is_nested(initial_state) else [initial_state]
        return backend.rnn(self._projected_step, projected, states,
                           go_backwards=self.go_backwards,
                           mask=mask[0] if tree.is_nested(mask) else mask, unroll=self.unroll,
                           input_length=sequences.shape[1],
                           zero_output_for_mask=self.zero_output_for_mask,
                           return_all_outputs=self.return_sequences)


@keras.saving.register_keras_serializable(package="aqa_tf")
class GRU(layers.GRU, _ProjectedLoop):
    """`keras.layers.GRU` with the input products of all steps computed before the loop."""

    def _input_bias(self):
        bias = self.cell.bias
        return bias[0] if self.cell.reset_after else bias

    def _projected_step(self, projected, states):
        cell, units = self.cell, self.units
        h_tm1 = states[0]
        x_z, x_r, x_h = ops.split(projected, 3, axis=-1)
        if cell.reset_after:
            inner = ops.matmul(h_tm1, cell.recurrent_kernel)
            if cell.use_bias:
                inner = inner + cell.bias[1]
            r_z, r_r, r_h = ops.split(inner, 3, axis=-1)
            z = cell.recurrent_activation(x_z + r_z)
            r = cell.recurrent_activation(x_r + r_r)
            hh = cell.activation(x_h + r * r_h)
        else:
            inner = ops.matmul(h_tm1, cell.recurrent_kernel[:, :2 * units])
            r_z, r_r = ops.split(inner, 2, axis=-1)
            z = cell.recurrent_activation(x_z + r_z)
            r = cell.recurrent_activation(x_r + r_r)
            hh = cell.activation(x_h + ops.matmul(r * h_tm1,
                                                  cell.recurrent_kernel[:, 2 * units:]))
        h = z * h_tm1 + (1 - z) * hh
        return h, [h]


@keras.saving.register_keras_serializable(package="aqa_tf")
class LSTM(layers.LSTM, _ProjectedLoop):
    """`keras.layers.LSTM` with the input products of all steps computed before the loop."""

    def _input_bias(self):
        return self.cell.bias

    def _projected_step(self, projected, states):
        cell = self.cell
        h_tm1, c_tm1 = states
        z = projected + ops.matmul(h_tm1, cell.recurrent_kernel)
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        c = (cell.recurrent_activation(z_f) * c_tm1
             + cell.recurrent_activation(z_i) * cell.activation(z_c))
        h = cell.recurrent_activation(z_o) * cell.activation(c)
        return h, [h, c]
