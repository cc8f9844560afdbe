"""Commentary generation: the S2VT caption model of the MTL-AQA authors (paper 001) and the
variants of paper 000 (LSTM cells, deeper stacks, attention).

S2VT ("sequence to sequence, video to text") as the MTL-AQA code runs it:
  - an encoder RNN (`rnn1`, `layers` stacked cells) reads the clip features, one step per clip
    (C3D-AVG: the 8192-d pool5 feature of each clip, before averaging; MSCADC: the caption
    head's 1200-d map as one step), then keeps running on zero input, one step per word;
  - a decoder RNN (`rnn2`) reads, at every step, `[encoder output, word embedding]`: zeros in
    place of the word while the video is read, then the previous word (teacher forcing during
    training, its own last prediction when generating); a linear layer (`out`) gives the logits
    of the next word.
Stacked cells have dropout between layers (PyTorch's `dropout=` of a multi-layer RNN): the
authors' settings use 0.5 (the paper's text says 0.2; `--caption_dropout`).

Attention (paper 000, Table 1, `attention=True`): additive (Bahdanau) attention over the clip
features; the query at each step is the encoder stream's state, so (as the paper describes it:
"a linear layer that takes the video features as input", whose output feeds the RNN) the
context vector depends on the video and the step, not on the words generated so far. It is
concatenated to the decoder input. Because nothing on the encoder side depends on the words,
teacher-forced training runs as one sequence pass and generation reuses the same layers step
by step (`begin` / `step`), with identical outputs for the same prefix.

Generation uses keras-hub's samplers (greedy, beam search) through `generate`. keras-hub is
imported there, not at module level: importing it imports TensorFlow whenever TensorFlow is
installed, and the model itself (build, train, teacher forcing) must not need TensorFlow on the
other Keras backends.
"""

import keras
from keras import layers, ops

from aqa_tf import tasks
from aqa_tf.models.layers import recurrent

CELLS = ("gru", "lstm")


@keras.saving.register_keras_serializable(package="aqa_tf")
class S2VTCaptioner(layers.Layer):
    """S2VT caption model.

    Args:
      vocab_size: words in the vocabulary (MTL-AQA: 5781; `<eos>` = 0, `<sos>` = 1).
      cell: "gru" (the authors') or "lstm".
      num_layers: stacked cells in each RNN (authors: 2; paper 000 also 8).
      hidden_units: RNN width (authors: 512).
      embedding_dim: word embedding width (authors: 512).
      dropout: dropout between stacked cells (authors' settings: 0.5).
      attention: additive attention over the clip features (paper 000).

    Call: `(clip_features [batch, clips, dim], tokens [batch, steps] int)` -> logits
    `[batch, steps, vocab_size]` (float32): position t predicts the word after `tokens[:, t]`.
    Token ids < 0 (padding) are read as `<eos>`; the loss masks their targets.
    """

    def __init__(self, vocab_size: int, cell: str = "gru", num_layers: int = 2,
                 hidden_units: int = 512, embedding_dim: int = 512, dropout: float = 0.5,
                 attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        if cell not in CELLS:
            raise ValueError(f"caption cell {cell!r}; expected one of {CELLS}")
        if num_layers < 1 or vocab_size < 3:
            raise ValueError(f"num_layers={num_layers} must be >= 1 and vocab_size={vocab_size} "
                             ">= 3 (<eos>, <sos> and a word)")
        self.vocab_size = int(vocab_size)
        self.cell = cell
        self.num_layers = int(num_layers)
        self.hidden_units = int(hidden_units)
        self.embedding_dim = int(embedding_dim)
        self.dropout_rate = float(dropout)
        self.attention = bool(attention)
        # Keras's GRU / LSTM with every step's input product done before the loop (5.6x faster
        # forward + backward for the 8192-d first encoder GRU on a CPU; models/layers/recurrent).
        rnn = recurrent.GRU if cell == "gru" else recurrent.LSTM
        # The sublayers compute in this layer's dtype policy (the global one unless `dtype` is
        # given); the output projection always in float32.
        policy = self.dtype_policy
        # reset_after=True (the Keras default) is PyTorch's GRU formulation.
        self.encoder = [rnn(self.hidden_units, return_sequences=True, return_state=True,
                            dtype=policy, name=f"rnn1_l{i}") for i in range(self.num_layers)]
        self.decoder = [rnn(self.hidden_units, return_sequences=True, return_state=True,
                            dtype=policy, name=f"rnn2_l{i}") for i in range(self.num_layers)]
        self.embedding = layers.Embedding(self.vocab_size, self.embedding_dim, dtype=policy,
                                          name="embedding")
        self.out = layers.Dense(self.vocab_size, dtype="float32", name="out")
        self.between_layers = layers.Dropout(self.dropout_rate, dtype=policy,
                                             name="between_layers")
        if self.attention:
            self.attention_query = layers.Dense(self.hidden_units, use_bias=False,
                                                dtype=policy, name="attention_query")
            self.attention_key = layers.Dense(self.hidden_units, dtype=policy,
                                              name="attention_key")
            self.attention_score = layers.AdditiveAttention(dtype=policy,
                                                            name="attention_score")

    def build(self, input_shapes):
        clip_shape, _ = input_shapes
        batch, dim = clip_shape[0], clip_shape[-1]
        visual = self.hidden_units * (2 if self.attention else 1)
        shapes = [(rnn, (batch, None, dim if i == 0 else self.hidden_units))
                  for i, rnn in enumerate(self.encoder)]
        shapes += [(rnn, (batch, None, visual + self.embedding_dim if i == 0
                          else self.hidden_units)) for i, rnn in enumerate(self.decoder)]
        shapes += [(self.embedding, (batch, None)), (self.out, (batch, None, self.hidden_units))]
        if self.attention:
            spec = (batch, None, self.hidden_units)
            shapes += [(self.attention_query, spec), (self.attention_key, (batch, None, dim)),
                       (self.attention_score, [spec, spec, spec])]
        for layer, shape in shapes:
            if not layer.built:
                layer.build(shape)
        self.built = True

    @property
    def states_per_layer(self) -> int:
        return 1 if self.cell == "gru" else 2

    # --- building blocks ---------------------------------------------------------------------
    def _run(self, stack, x, initial_states=None, training=None):
        """Runs stacked RNN layers; returns (outputs, flat list of final states)."""
        states = []
        for i, rnn in enumerate(stack):
            if i:
                x = self.between_layers(x, training=training)
            initial = None
            if initial_states is not None:
                k = self.states_per_layer
                initial = list(initial_states[i * k:(i + 1) * k])
            result = rnn(x, initial_state=initial, training=training)
            x, layer_states = result[0], list(result[1:])
            states += layer_states
        return x, states

    def _visual_stream(self, clip_features, steps, training=None):
        """Encoder outputs (plus attention context) for the clip steps and `steps` word steps:
        `[batch, clips + steps, features]`."""
        shape = ops.shape(clip_features)
        padding = ops.zeros((shape[0], steps, shape[2]), dtype=clip_features.dtype)
        encoded, _ = self._run(self.encoder, ops.concatenate([clip_features, padding], axis=1),
                               training=training)
        if not self.attention:
            return encoded
        keys = self.attention_key(clip_features)
        context = self.attention_score([self.attention_query(encoded), keys, keys])
        return ops.concatenate([encoded, ops.cast(context, encoded.dtype)], axis=-1)

    def _word_inputs(self, tokens):
        return self.embedding(ops.maximum(ops.cast(tokens, "int32"), 0))

    # --- teacher forcing ---------------------------------------------------------------------
    def call(self, inputs, training=None):
        clip_features, tokens = inputs
        num_clips = ops.shape(clip_features)[1]
        steps = ops.shape(tokens)[1]
        visual = self._visual_stream(clip_features, steps, training)
        words = self._word_inputs(tokens)
        no_words = ops.zeros((ops.shape(words)[0], num_clips, self.embedding_dim),
                             dtype=words.dtype)
        words = ops.concatenate([no_words, words], axis=1)
        decoded, _ = self._run(self.decoder,
                               ops.concatenate([visual, ops.cast(words, visual.dtype)], -1),
                               training=training)
        return self.out(decoded[:, num_clips:])

    def compute_output_shape(self, input_shapes):
        clip_shape, token_shape = input_shapes
        return (clip_shape[0], token_shape[1], self.vocab_size)

    # --- step by step ------------------------------------------------------------------------
    def begin(self, clip_features, steps):
        """Reads the video: returns (visual stream of the word steps `[batch, steps, f]`,
        decoder states after the clip steps)."""
        if not self.built:
            self.build((tuple(clip_features.shape), (None, None)))
        num_clips = ops.shape(clip_features)[1]
        visual = self._visual_stream(clip_features, steps, training=False)
        batch = ops.shape(visual)[0]
        no_words = ops.zeros((batch, num_clips, self.embedding_dim), dtype=visual.dtype)
        _, states = self._run(self.decoder,
                              ops.concatenate([visual[:, :num_clips], no_words], axis=-1),
                              training=False)
        return visual[:, num_clips:], states

    def step(self, previous_tokens, visual_step, states):
        """One decoding step: previous word `[batch]`, visual stream `[batch, f]` -> (logits
        `[batch, vocab]`, new states)."""
        words = ops.cast(self._word_inputs(previous_tokens), visual_step.dtype)
        x = ops.concatenate([visual_step, words], axis=-1)[:, None, :]
        decoded, states = self._run(self.decoder, x, initial_states=states, training=False)
        return self.out(decoded[:, 0]), states

    def generate(self, clip_features, max_words: int, method: str = "greedy",
                 beam_size: int = 3):
        """Generates captions: int32 `[batch, max_words + 1]` token ids (without `<sos>`), each
        caption ending at its first `<eos>` (a caption that does not finish within `max_words`
        words ends with `<eos>` at the last position). Decoding: keras-hub's GreedySampler or
        BeamSampler (`beam_size` beams), stopping when every caption has produced `<eos>`."""
        steps = max_words + 1
        visual, states = self.begin(clip_features, steps)
        batch = ops.shape(visual)[0]
        # Positions still to generate hold <sos> (not a stop token: the samplers stop once
        # every row has an <eos> outside the mask).
        prompt = ops.full((batch, steps + 1), tasks.SOS_ID, dtype="int32")
        mask = ops.concatenate([ops.ones((batch, 1), "bool"), ops.zeros((batch, steps), "bool")],
                               axis=1)

        def next_fn(prompt, cache, index):
            visual, *states = cache
            previous = ops.take_along_axis(prompt, ops.full((ops.shape(prompt)[0], 1), index - 1,
                                                            dtype="int32"), axis=1)[:, 0]
            visual_step = ops.take(visual, index - 1, axis=1)
            logits, states = self.step(previous, visual_step, states)
            return logits, None, (visual, *states)

        import keras_hub  # here only: it imports TensorFlow where installed (module docstring)
        if method == "greedy":
            sampler = keras_hub.samplers.GreedySampler()
        elif method == "beam":
            sampler = keras_hub.samplers.BeamSampler(num_beams=beam_size)
        else:
            raise ValueError(f"caption decoding {method!r}; expected greedy or beam")
        tokens = sampler(next_fn, prompt, cache=(visual, *states), index=1, mask=mask,
                         stop_token_ids=[tasks.EOS_ID])
        tokens = ops.cast(tokens[:, 1:], "int32")
        # Everything after the first <eos> becomes <eos>; the last position is always <eos>.
        tokens = ops.concatenate([tokens[:, :-1], ops.zeros((batch, 1), "int32")], axis=1)
        ended = ops.cumsum(ops.cast(tokens == tasks.EOS_ID, "int32"), axis=1) > 0
        return ops.where(ended, tasks.EOS_ID, tokens)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "cell": self.cell,
                "num_layers": self.num_layers, "hidden_units": self.hidden_units,
                "embedding_dim": self.embedding_dim, "dropout": self.dropout_rate,
                "attention": self.attention}
