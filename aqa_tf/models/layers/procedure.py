"""TSA, the procedure-aware AQA of FineDiving (Xu et al., CVPR 2022; the authors'
github.com/xujinglin/FineDiving): its layers, their composition from I3D outputs to the score
difference of a (query, exemplar) pair, and the import of the authors' trained weights.

The parts, as the authors build them (`tools/builder.py`):
- `StepSegmenter`: PSNet (`models/PS.py`, `models/PS_parts.py`), the procedure segmentation
  network. Its Conv1d's treat the 9 clips of a dive as *channels* and the 1024 feature
  dimensions as the *length*; after four max-pools the length is 1024 / 16 = 64 and the 96
  channels of the last double convolution are read as 96 "frames" of 64-d step features.
  `MLP_tas(64, 2)` + sigmoid gives, per frame, the probabilities of the two step transitions.
- `transition_frames`: the read-out of the transitions (`tools/helper.py`).
- `StepPool`: `seg_pool_1d` / `seg_pool_3d` (`utils/misc.py`): the three steps cut at the
  transitions, each resampled to `fix_size` (5) frames.
- `StepDecoder`: `decoder_fuser(dim=64, num_heads=8, num_layers=3)` (`models/vit_decoder.py`):
  the query's step features attend to the exemplar's step feature maps, step by step.
- `DeltaRegressor`: `MLP_score(64, 1)` (`models/MLP.py`), per token; the difference is its
  mean over the `3 * fix_size` tokens.
- `relative_delta`: their `network_forward_test` / `network_forward_train` for one exemplar.

All tensors are channels-last; where the authors' memory-order reshapes scramble axes,
`relative_delta` reproduces what their code computes (see the comments there).
"""

import keras
import numpy as np
from keras import layers, ops

# PyTorch's BatchNorm / LayerNorm epsilon, and its BatchNorm momentum 0.1 in Keras' terms.
TORCH_EPSILON = 1e-5
TORCH_BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="aqa_tf")
class StepSegmenter(layers.Layer):
    """PSNet (the authors' `models/PS.py` with `PS_parts.py`; `PSNet(n_channels=9)`).

    A 1-D U-Net encoder without its decoder: five double convolutions (Conv1D 3, BatchNorm,
    ReLU, twice) of widths `widths + (frames,)`, each but the first after a max-pool of 2, then
    an MLP `hidden` -> 2 with sigmoid on every output channel ("frame").

    Args:
        frames: width of the last double convolution, i.e. the number of "frames" of the step
            features (96 in the paper; smaller for small models).
        widths: widths of the first four double convolutions (theirs: 12, 24, 48, 96).
        hidden: units of the MLP's hidden layers (theirs: 128, 64).

    Call: `inputs` `[batch, clips, dim]` (their Conv1d channels = clips, length = dim).
    Returns `(step_features [batch, frames, dim // 16], transition_probs [batch, frames, 2])`;
    the probabilities are float32 under any dtype policy.
    """

    def __init__(self, frames: int = 96, widths=(12, 24, 48, 96), hidden=(128, 64),
                 **kwargs):
        super().__init__(**kwargs)
        self.frames, self.widths = int(frames), tuple(int(w) for w in widths)
        self.hidden = tuple(int(h) for h in hidden)
        policy = self.dtype_policy
        self.blocks = []
        for i, width in enumerate(self.widths + (self.frames,)):
            block = "inc" if i == 0 else f"down{i}"
            self.blocks.append([
                layers.Conv1D(width, 3, padding="same", dtype=policy, name=f"{block}_conv1"),
                layers.BatchNormalization(epsilon=TORCH_EPSILON, momentum=TORCH_BN_MOMENTUM,
                                          dtype=policy, name=f"{block}_bn1"),
                layers.Conv1D(width, 3, padding="same", dtype=policy, name=f"{block}_conv2"),
                layers.BatchNormalization(epsilon=TORCH_EPSILON, momentum=TORCH_BN_MOMENTUM,
                                          dtype=policy, name=f"{block}_bn2")])
        self.pool = layers.MaxPooling1D(2, dtype=policy, name="pool")
        self.mlp = [layers.Dense(units, activation="relu", dtype=policy, name=f"tas_dense{k}")
                    for k, units in enumerate(self.hidden, 1)]
        self.mlp.append(layers.Dense(2, dtype=policy, name=f"tas_dense{len(self.hidden) + 1}"))

    def build(self, input_shape):
        length, channels = input_shape[2], input_shape[1]
        for i, (conv1, bn1, conv2, bn2) in enumerate(self.blocks):
            if i > 0:
                length = None if length is None else length // 2
            width = conv1.filters
            conv1.build((None, length, channels))
            bn1.build((None, length, width))
            conv2.build((None, length, width))
            bn2.build((None, length, width))
            channels = width
        units = length
        for dense in self.mlp:
            dense.build((None, self.frames, units))
            units = dense.units

    def call(self, inputs, training=None):
        x = ops.transpose(inputs, (0, 2, 1))  # Keras' channels-last: [batch, dim, clips]
        for i, (conv1, bn1, conv2, bn2) in enumerate(self.blocks):
            if i > 0:
                x = self.pool(x)
            x = ops.relu(bn1(conv1(x), training=training))
            x = ops.relu(bn2(conv2(x), training=training))
        steps = ops.transpose(x, (0, 2, 1))  # their x5: [batch, frames, dim // 16]
        h = steps
        for dense in self.mlp[:-1]:
            h = dense(h)
        probs = ops.sigmoid(ops.cast(self.mlp[-1](h), "float32"))
        return steps, probs

    def compute_output_shape(self, input_shape):
        batch, dim = input_shape[0], input_shape[2]
        return ((batch, self.frames, None if dim is None else dim // 16),
                (batch, self.frames, 2))

    def get_config(self):
        return {**super().get_config(), "frames": self.frames, "widths": list(self.widths),
                "hidden": list(self.hidden)}


def transition_frames(probs):
    """The authors' read-out of the transitions (`tools/helper.py`): transition `i` is the
    frame of highest probability in column `i` within frames `[i * num, (i + 1) * num)`, with
    `num = round(T / transitions)` (Python's rounding, as theirs; 48 of 96 frames).

    Args:
        probs: `[batch, T, transitions]` (`StepSegmenter`'s second output; T static).

    Returns:
        `[batch, transitions]` int32 frame indices (the first maximum on ties, as torch's
        argmax). Made of a static slice, comparisons and a cumulative sum: builtin TFLite ops
        (Keras' argmax needs TensorFlow's BitwiseAnd in TFLite).
    """
    frames, transitions = int(probs.shape[1]), int(probs.shape[2])
    num = round(frames / transitions)
    found = []
    for i in range(transitions):
        start, stop = i * num, min((i + 1) * num, frames)
        window = ops.cast(probs[:, start:stop, i], "float32")
        # ops.* rather than operators: on the symbolic KerasTensors of a functional model
        # `==` is Python's identity test, not an op.
        is_max = ops.cast(ops.greater_equal(window, ops.max(window, axis=1, keepdims=True)),
                          "float32")
        first = is_max * ops.cast(ops.equal(ops.cumsum(is_max, axis=1), 1.0), "float32")
        offset = ops.sum(first * ops.arange(stop - start, dtype="float32"), axis=1)
        found.append(ops.cast(offset, "int32") + start)
    return ops.stack(found, axis=1)


def cut_points(transitions, frames: int):
    """The transitions `[batch, 2]` where `StepPool` cuts a sequence of `frames` frames,
    int32: floored, the first clamped to `[1, frames - 2]` and the second to `[first + 1,
    frames - 1]`, so that every step has a frame (the authors set a predicted 0 to 1, and an
    empty step makes their `F.interpolate` raise)."""
    t = ops.floor(ops.cast(transitions, "float32"))
    st = ops.clip(t[:, 0], 1.0, frames - 2.0)
    ed = ops.clip(ops.maximum(t[:, 1], st + 1.0), 2.0, frames - 1.0)
    return ops.cast(ops.stack([st, ed], axis=1), "int32")


@keras.saving.register_keras_serializable(package="aqa_tf")
class StepPool(layers.Layer):
    """The authors' `seg_pool_1d` / `seg_pool_3d` (`utils/misc.py`), batched: the sequence is
    cut at the two transitions into the steps `[0, st)`, `[st, ed)`, `[ed, T)`, and each is
    resampled linearly (align_corners=True) to `fix_size` frames. Their trilinear resampling of
    a map keeps H and W, so it is linear along T only: a map `[batch, T, H * W, C]` is pooled as
    a sequence with more channels.

    The resampling is a `[batch, 3 * fix_size, T]` matrix of hat-function weights (the output
    frame `j` of a step `[a, b)` sits at `a + j * (b - a - 1) / (fix_size - 1)`), applied by a
    batched matmul: no loop over the batch, a symbolic batch size works, and it converts to
    builtin TFLite ops.

    Degenerate transitions: `st` is clamped to `[1, T - 2]` and `ed` to `[st + 1, T - 1]`, so
    that every step has at least one frame (a step of one frame repeats it). The authors set a
    predicted transition of 0 to 1 (`tools/helper.py`) and their read-out never gives
    `ed <= st`; an empty step would make torch's interpolate raise.

    Args:
        fix_size: frames per step (their `fix_size`, 5).

    Call: `sequence` `[batch, T, ...channels]` (T static), `transitions` `[batch, 2]` int or
    float frame indices (floats are floored, as their `int()`).
    Returns `[batch, 3 * fix_size, ...channels]`.
    """

    def __init__(self, fix_size: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.fix_size = int(fix_size)
        if self.fix_size < 1:
            raise ValueError(f"fix_size={fix_size}: a step needs at least one frame")

    def resampling(self, transitions, frames: int):
        """The `[batch, 3 * fix_size, frames]` float32 weights described above."""
        if frames < 3:
            raise ValueError(f"StepPool needs at least 3 frames (3 steps), got {frames}")
        cut = ops.cast(cut_points(transitions, frames), "float32")
        st, ed = cut[:, 0], cut[:, 1]
        start = ops.stack([ops.zeros_like(st), st, ed], axis=1)  # [batch, 3]
        length = ops.stack([st, ed - st, frames - ed], axis=1)
        # As torch's align_corners=True: source = scale * j, scale = (L - 1) / (size - 1), 0
        # for one output frame.
        scale = (length - 1.0) / max(self.fix_size - 1, 1)
        source = scale[:, :, None] * ops.arange(self.fix_size, dtype="float32")  # [b, 3, F]
        offset = ops.arange(frames, dtype="float32")[None, None, :] - start[:, :, None]
        # Hat weights: (1 - frac) at floor(source), frac at floor(source) + 1 (never past the
        # step's last frame, since source <= L - 1).
        weights = ops.relu(1.0 - ops.abs(offset[:, :, None, :] - source[:, :, :, None]))
        return ops.reshape(weights, (-1, 3 * self.fix_size, frames))

    def call(self, sequence, transitions):
        frames, rest = int(sequence.shape[1]), tuple(int(d) for d in sequence.shape[2:])
        weights = ops.cast(self.resampling(transitions, frames), sequence.dtype)
        flat = ops.reshape(sequence, (-1, frames, int(np.prod(rest, dtype=np.int64))))
        pooled = ops.matmul(weights, flat)
        return ops.reshape(pooled, (-1, 3 * self.fix_size) + rest)

    def compute_output_shape(self, sequence_shape, transitions_shape):
        return (sequence_shape[0], 3 * self.fix_size) + tuple(sequence_shape[2:])

    def get_config(self):
        return {**super().get_config(), "fix_size": self.fix_size}


@keras.saving.register_keras_serializable(package="aqa_tf")
class CrossAttentionBlock(layers.Layer):
    """The authors' `DecoderBlock` (`models/vit_decoder.py`; drop-outs and drop-path 0):
    `q + CrossAttention(LN(q), LN(memory))`, then `q + MLP(LN(q))`.

    The attention: q/k/v projections without bias, `num_heads` heads scaled by
    `head_dim ** -0.5`, an output projection with bias. The MLP: `dim * mlp_ratio` units, exact
    (erf) GELU, `dim`. LayerNorms with PyTorch's epsilon 1e-5.

    Call: `query` `[batch, Nq, dim]`, `memory` `[batch, Nk, dim]`. Returns `[batch, Nq, dim]`.
    """

    def __init__(self, dim: int = 64, num_heads: int = 8, mlp_ratio: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.mlp_ratio = int(dim), int(num_heads), float(mlp_ratio)
        if self.dim % self.num_heads:
            raise ValueError(f"dim={dim} is not a multiple of num_heads={num_heads}")
        self.head_dim = self.dim // self.num_heads
        policy = self.dtype_policy

        def norm(name):
            return layers.LayerNormalization(epsilon=TORCH_EPSILON, dtype=policy, name=name)

        self.norm_q, self.norm_v, self.norm2 = norm("norm_q"), norm("norm_v"), norm("norm2")
        self.q_map, self.k_map, self.v_map = (
            layers.Dense(self.dim, use_bias=False, dtype=policy, name=name)
            for name in ("q_map", "k_map", "v_map"))
        self.proj = layers.Dense(self.dim, dtype=policy, name="proj")
        self.fc1 = layers.Dense(int(self.dim * self.mlp_ratio), dtype=policy, name="fc1")
        self.fc2 = layers.Dense(self.dim, dtype=policy, name="fc2")

    def build(self, query_shape, memory_shape):
        query_shape, memory_shape = tuple(query_shape), tuple(memory_shape)
        for norm, shape in ((self.norm_q, query_shape), (self.norm_v, memory_shape),
                            (self.norm2, query_shape)):
            norm.build(shape)
        self.q_map.build(query_shape)
        self.k_map.build(memory_shape)
        self.v_map.build(memory_shape)
        self.proj.build(query_shape[:-1] + (self.dim,))
        self.fc1.build(query_shape[:-1] + (self.dim,))
        self.fc2.build(query_shape[:-1] + (self.fc1.units,))

    def _heads(self, x):
        """`[batch, n, dim]` -> `[batch, heads, n, head_dim]`."""
        x = ops.reshape(x, (-1, ops.shape(x)[1], self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, query, memory):
        memory_normed = self.norm_v(memory)
        q = self._heads(self.q_map(self.norm_q(query)))
        k = self._heads(self.k_map(memory_normed))
        v = self._heads(self.v_map(memory_normed))
        logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (self.head_dim ** -0.5)
        attention = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), v.dtype)
        attended = ops.transpose(ops.matmul(attention, v), (0, 2, 1, 3))
        attended = ops.reshape(attended, (-1, ops.shape(query)[1], self.dim))
        x = query + self.proj(attended)
        return x + self.fc2(ops.gelu(self.fc1(self.norm2(x)), approximate=False))

    def compute_output_shape(self, query_shape, memory_shape):
        return tuple(query_shape)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio}


@keras.saving.register_keras_serializable(package="aqa_tf")
class StepDecoder(layers.Layer):
    """The authors' `decoder_fuser` (`models/vit_decoder.py`; `decoder_fuser(dim=64,
    num_heads=8, num_layers=3)` in `tools/builder.py`): `num_layers` `CrossAttentionBlock`s,
    each attending to the same `memory`.

    Call: `query` `[batch, Nq, dim]`, `memory` `[batch, Nk, dim]`. Returns `[batch, Nq, dim]`.
    """

    def __init__(self, dim: int = 64, num_heads: int = 8, num_layers: int = 3,
                 mlp_ratio: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.num_layers = int(dim), int(num_heads), int(num_layers)
        self.mlp_ratio = float(mlp_ratio)
        self.blocks = [CrossAttentionBlock(self.dim, self.num_heads, self.mlp_ratio,
                                           dtype=self.dtype_policy, name=f"block{i}")
                       for i in range(self.num_layers)]

    def build(self, query_shape, memory_shape):
        for block in self.blocks:
            block.build(query_shape, memory_shape)

    def call(self, query, memory):
        for block in self.blocks:
            query = block(query, memory)
        return query

    def compute_output_shape(self, query_shape, memory_shape):
        return tuple(query_shape)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads,
                "num_layers": self.num_layers, "mlp_ratio": self.mlp_ratio}


@keras.saving.register_keras_serializable(package="aqa_tf")
class DeltaRegressor(layers.Layer):
    """The authors' `MLP_score(64, 1)` (`models/MLP.py`): Dense `hidden` with ReLU, then one
    unit, applied to every token. Call: `[..., dim]` -> `[..., 1]` (float32)."""

    def __init__(self, hidden=(256, 64), **kwargs):
        super().__init__(**kwargs)
        self.hidden = tuple(int(h) for h in hidden)
        self.dense = [layers.Dense(units, activation="relu", dtype=self.dtype_policy,
                                   name=f"dense{k}") for k, units in enumerate(self.hidden, 1)]
        self.dense.append(layers.Dense(1, dtype=self.dtype_policy,
                                       name=f"dense{len(self.hidden) + 1}"))

    def build(self, input_shape):
        shape = tuple(input_shape)
        for dense in self.dense:
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)

    def call(self, inputs):
        x = inputs
        for dense in self.dense:
            x = dense(x)
        return ops.cast(x, "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def get_config(self):
        return {**super().get_config(), "hidden": list(self.hidden)}


def _torch_map_layout(maps):
    """I3D clip maps `[N, clips, T_t, H, W, C]` (channels-last) -> `[N * H * W, clips, C]`, as
    the authors' `video_feamap.mean(-3).reshape(-1, T, C)` (`tools/helper.py`) computes it on
    their `[N, clips, C, T_t, H, W]` tensor. That reshape reinterprets memory rather than moving
    an axis: row `r` of sample `n` holds the numbers `r * clips * C ... (r + 1) * clips * C - 1`
    of that sample's `[clips, C, H, W]` block in PyTorch's order, so clips, channels and
    positions are mixed. PSNet is trained on exactly this, so it is reproduced here: back to
    their axis order, then the same row-major reshape."""
    clips, height, width, channels = (int(maps.shape[i]) for i in (1, 3, 4, 5))
    x = ops.transpose(ops.mean(maps, axis=2), (0, 1, 4, 2, 3))  # [N, clips, C, H, W]
    return ops.reshape(x, (-1, clips, channels)), height, width


STEPS = 3  # the authors' step_num: take-off, flight, entry (two transitions)


def segment_steps(segmenter, features, maps, training=None):
    """PSNet on the videos' clip features and on their clip maps.

    Args:
        features: I3D clip features `[N, clips, dim]`; maps: clip maps `[N, clips, T_t, H, W,
            dim]` (channels-last).

    Returns `(step_features [N, frames, d], step_maps [N, frames, H * W, d], probs [N,
    frames, 2])`, d = dim / 16 (their `u_fea_96`, `u_feamap_96` and `transits_pred`)."""
    step_features, probs = segmenter(features, training=training)
    map_rows, height, width = _torch_map_layout(maps)
    step_maps, _ = segmenter(map_rows, training=training)
    frames, dim = int(step_maps.shape[1]), int(step_maps.shape[2])
    # Theirs: `u_feamap_96.reshape(2N, 96, 64, H, W)`, again a memory reinterpretation: the
    # H * W rows of a sample ([H * W, 96, 64] in memory) are read as [96, 64, H, W]. Then their
    # `transpose(1, 2)` makes the 96 frames the time axis of seg_pool_3d; channels-last here:
    # [N, frames, H * W, dim].
    step_maps = ops.reshape(step_maps, (-1, frames, dim, height, width))
    step_maps = ops.reshape(ops.transpose(step_maps, (0, 1, 3, 4, 2)),
                            (-1, frames, height * width, dim))
    return step_features, step_maps, probs


def step_tokens(pool, sequence, cut):
    """Pooled steps `[N, 3 * fix, ...]` -> `[N * 3, fix * tokens_per_frame, d]`: the decoder
    runs on each step separately (their loop over `step_num`), so the steps go into the batch.
    Map tokens are frame-major, as their cat over the 15 frames of `[H * W]`."""
    pooled = pool(sequence, cut)
    per_frame = 1 if len(sequence.shape) == 3 else int(sequence.shape[2])
    return ops.reshape(pooled, (-1, pool.fix_size * per_frame, int(sequence.shape[-1])))


def step_deltas(decoder, regressor, tokens, memory):
    """Each step's share of the predicted difference `[N, 3]` (their `delta` is the mean of
    the regressor over the 3 * fix tokens: the share of a step is the sum over its tokens
    divided by 3 * fix, so that the shares add up to the difference)."""
    fused = decoder(tokens, memory)  # [N * 3, fix, d]
    fix, dim = int(fused.shape[1]), int(fused.shape[2])
    per_token = regressor(ops.reshape(fused, (-1, STEPS * fix, dim)))[..., 0]  # [N, 15]
    return ops.sum(ops.reshape(per_token, (-1, STEPS, fix)), axis=-1) / (STEPS * fix)


def relative_delta(segmenter, pool, decoder, regressor, query_features, exemplar_features,
                   query_maps, exemplar_maps, query_transitions=None,
                   exemplar_transitions=None, training=None):
    """TSA from I3D outputs to the predicted score difference of (query, exemplar) pairs, as
    the authors' `tools/helper.py` (`network_forward_test`, one exemplar;
    `network_forward_train` with the transitions given).

    Args:
        segmenter: `StepSegmenter`; pool: `StepPool`; decoder: `StepDecoder`; regressor:
            `DeltaRegressor`.
        query_features, exemplar_features: I3D clip features `[N, clips, dim]` (their
            `video_1_fea`, `video_2_fea`: 9 clips of 1024).
        query_maps, exemplar_maps: I3D clip feature maps `[N, clips, T_t, H, W, dim]` (their
            `video_1_feamap`, channels-last).
        query_transitions, exemplar_transitions: `[N, 2]` frames to cut the steps at instead of
            the predicted ones (the ground truth `transits + 1`, as their training does for the
            first `prob_tas_threshold` of the epochs); default: predicted.
        training: passed to the segmenter's BatchNorms.

    Returns a dict: `delta` `[N]` (query - exemplar: their `delta[:N]`), `reverse_delta` `[N]`
    (exemplar - query: `delta[N:]`), `step_deltas` / `reverse_step_deltas` `[N, 3]` (each
    step's share of them, `step_deltas`), `query_probs` / `exemplar_probs` `[N, frames, 2]`
    (their `transits_pred`, the input of the transition loss), `query_transitions` /
    `exemplar_transitions` `[N, 2]` int32 (predicted; their `transits_st_ed`).
    """
    # Query and exemplar go through PSNet as one batch (BatchNorm statistics in training).
    step_features, step_maps, probs = segment_steps(
        segmenter, ops.concatenate([query_features, exemplar_features], axis=0),
        ops.concatenate([query_maps, exemplar_maps], axis=0), training=training)
    predicted = transition_frames(probs)
    query_predicted, exemplar_predicted = ops.split(predicted, 2, axis=0)
    query_probs, exemplar_probs = ops.split(probs, 2, axis=0)
    query_steps, exemplar_steps = ops.split(step_features, 2, axis=0)
    query_step_maps, exemplar_step_maps = ops.split(step_maps, 2, axis=0)
    query_cut = query_predicted if query_transitions is None else query_transitions
    exemplar_cut = exemplar_predicted if exemplar_transitions is None else exemplar_transitions

    forward = step_deltas(decoder, regressor, step_tokens(pool, query_steps, query_cut),
                          step_tokens(pool, exemplar_step_maps, exemplar_cut))
    reverse = step_deltas(decoder, regressor, step_tokens(pool, exemplar_steps, exemplar_cut),
                          step_tokens(pool, query_step_maps, query_cut))
    return {"delta": ops.sum(forward, axis=-1), "reverse_delta": ops.sum(reverse, axis=-1),
            "step_deltas": forward, "reverse_step_deltas": reverse,
            "query_probs": query_probs, "exemplar_probs": exemplar_probs,
            "query_transitions": query_predicted, "exemplar_transitions": exemplar_predicted}


# ------------------------------------------------------------------ the authors' weights ----

def _kernel(value):
    """Linear `[out, in]` -> Dense `[in, out]`; Conv1d `[out, in, k]` -> Conv1D `[k, in, out]`."""
    return value.T if value.ndim == 2 else value.transpose(2, 1, 0)


def _batch_norm(prefix, bn):
    return [(f"{prefix}.weight", bn.gamma, None), (f"{prefix}.bias", bn.beta, None),
            (f"{prefix}.running_mean", bn.moving_mean, None),
            (f"{prefix}.running_var", bn.moving_variance, None)]


def _dense(prefix, dense):
    out = [(f"{prefix}.weight", dense.kernel, _kernel)]
    return out + ([(f"{prefix}.bias", dense.bias, None)] if dense.use_bias else [])


def _norm(prefix, norm):
    return [(f"{prefix}.weight", norm.gamma, None), (f"{prefix}.bias", norm.beta, None)]


def _segmenter_names(segmenter):
    """(their key, Keras variable, conversion) for PSNet (`models/PS.py`, `PS_parts.py`):
    `inc.conv.conv.{0,1,3,4}`, `down<i>.mpconv.1.conv.{0,1,3,4}`, `tas.layer<k>`."""
    pairs = []
    for i, (conv1, bn1, conv2, bn2) in enumerate(segmenter.blocks):
        prefix = "inc.conv.conv" if i == 0 else f"down{i}.mpconv.1.conv"
        for index, (conv, bn) in ((0, (conv1, bn1)), (3, (conv2, bn2))):
            pairs += _dense(f"{prefix}.{index}", conv) + _batch_norm(f"{prefix}.{index + 1}", bn)
    for k, dense in enumerate(segmenter.mlp, 1):
        pairs += _dense(f"tas.layer{k}", dense)
    return pairs


def _decoder_names(decoder):
    """... for `decoder_fuser` (`models/vit_decoder.py`): `model.<i>.{norm_q, norm_v,
    attn.{q,k,v}_map, attn.proj, norm2, mlp.fc1, mlp.fc2}`."""
    pairs = []
    for i, block in enumerate(decoder.blocks):
        p = f"model.{i}"
        pairs += _norm(f"{p}.norm_q", block.norm_q) + _norm(f"{p}.norm_v", block.norm_v)
        for name in ("q_map", "k_map", "v_map", "proj"):
            pairs += _dense(f"{p}.attn.{name}", getattr(block, name))
        pairs += _norm(f"{p}.norm2", block.norm2)
        pairs += _dense(f"{p}.mlp.fc1", block.fc1) + _dense(f"{p}.mlp.fc2", block.fc2)
    return pairs


def _regressor_names(regressor):
    """... for `MLP_score` (`models/MLP.py`): `layer<k>`."""
    return [pair for k, dense in enumerate(regressor.dense, 1)
            for pair in _dense(f"layer{k}", dense)]


def _numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, np.float32)


def procedure_weights_from_torch(segmenter, decoder, regressor, state_dicts):
    """Sets the weights of TSA's built Keras layers from the authors' state dicts.

    Args:
        segmenter, decoder, regressor: built `StepSegmenter`, `StepDecoder`, `DeltaRegressor`.
        state_dicts: a mapping with the entries `psnet_model`, `decoder`, `regressor_delta`
            (their checkpoint, `tools/helper.py` `save_checkpoint`; other entries are
            ignored), each a state dict of numpy arrays or torch tensors. A leading `module.`
            (DataParallel) is stripped from the keys; BatchNorm's `num_batches_tracked` is
            not needed.

    Raises:
        ValueError: naming the first missing key, shape mismatch or unexpected key (and how
            many other problems there are); nothing is assigned then.
    """
    parts = (("psnet_model", segmenter, _segmenter_names), ("decoder", decoder, _decoder_names),
             ("regressor_delta", regressor, _regressor_names))
    problems, assignments = [], []
    for part, layer, names in parts:
        if not layer.built:
            raise ValueError(f"{layer.name} is not built: call it on an input first")
        if part not in state_dicts:
            problems.append(f"missing state dict {part!r} (the checkpoint has "
                            f"{sorted(state_dicts)})")
            continue
        state = {(k[len("module."):] if k.startswith("module.") else k): v
                 for k, v in state_dicts[part].items()}
        used = set()
        for key, variable, convert in names(layer):
            if key not in state:
                problems.append(f"missing key {part}[{key!r}]")
                continue
            used.add(key)
            value = _numpy(state[key])
            value = convert(value) if convert is not None else value
            if value.shape != tuple(variable.shape):
                problems.append(f"shape mismatch {part}[{key!r}]: {value.shape} (converted) "
                                f"for {variable.path} {tuple(variable.shape)}")
                continue
            assignments.append((variable, value))
        problems += [f"unexpected key {part}[{k!r}]" for k in sorted(state)
                     if k not in used and not k.endswith("num_batches_tracked")]
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ValueError(f"the TSA state dicts do not fit the layers: {problems[0]}{more}")
    for variable, value in assignments:
        variable.assign(value)
