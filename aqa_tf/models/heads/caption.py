"""The caption head: commentary generation with S2VT (paper 001, captioning; paper 000's
variants), `models/captioning.py`.

Training reads the reference words under teacher forcing (input `caption_tokens`, `<sos> w1 ..
wn`) and outputs the next-word logits (`caption`); both exist only to train, so inference
models drop them and captions are written by `CaptionGenerator` (greedy or beam search). Clip
models caption the backbone's clip features before aggregation (C3D: 8192-d pool5 per clip);
MSCADC models caption their caption context net's map as one step.

The evaluation adds BLEU-1..4, METEOR, ROUGE-L and CIDEr and a captions CSV; the export adds a
`caption` signature (`caption` strings and `caption_ids`).
"""

from typing import Dict, Optional

import keras
from keras import layers

from aqa_tf import tasks
from aqa_tf.models.captioning import S2VTCaptioner
from aqa_tf.models.heads import mscadc
from aqa_tf.models.heads.base import Features, Head, Predictions, ReportContext
from aqa_tf.models.losses import CaptionLoss
from aqa_tf.registry import HEADS

CAPTIONER_LAYER = "captioner"
#: generated outputs of an evaluation: the caption word ids `[batch, max_words + 1]`
CAPTION_IDS = "caption_ids"


@HEADS.register("caption")
class CaptionHead(Head):
    """S2VT over the clip features; `vocab` (a `data.captions.Vocabulary`) is read from the
    data configuration's vocabulary file the first time words are needed."""

    name = "caption"
    training_inputs = (tasks.CAPTION_TOKENS,)
    training_outputs = (tasks.CAPTION_OUTPUT,)
    dataset_options = {"include_caption": True}
    signature_names = ("caption",)
    writes_words = True

    @classmethod
    def check_config(cls, model_config):
        from aqa_tf.config import ConfigError
        if model_config.vocab_size < 3:
            raise ConfigError(f"the caption head needs the vocabulary: vocab_size="
                              f"{model_config.vocab_size} (read from vocab.json, see "
                              "--vocab_file)")
        if model_config.caption_layers < 1:
            raise ConfigError(f"caption_layers={model_config.caption_layers} must be >= 1")
        if not 0.0 <= model_config.caption_dropout < 1.0:
            raise ConfigError(f"caption_dropout={model_config.caption_dropout} must be in "
                              "[0, 1)")

    def __init__(self, model_config, data_config):
        super().__init__(model_config, data_config)
        self._vocab = None

    @property
    def vocab(self):
        if self._vocab is None:
            from aqa_tf.data.captions import Vocabulary
            self._vocab = Vocabulary.load(self.data_config.vocab_path)
        return self._vocab

    def use_vocabulary(self, vocab):
        self._vocab = vocab

    def add_inputs(self, inputs):
        inputs[tasks.CAPTION_TOKENS] = keras.Input(
            (self.data_config.max_caption_words + 1,), dtype="int32", name=tasks.CAPTION_TOKENS)

    def build(self, features: Features) -> Dict[str, keras.KerasTensor]:
        visual = features.clips
        if features.feature_map is not None:
            # The caption head's context net gives one 1200-d feature: a one-step sequence.
            caption_map = mscadc.caption_features(features.feature_map)
            visual = layers.Reshape((1, int(caption_map.shape[-1])), name="cap_sequence")(
                caption_map)
        config = self.model_config
        self.captioner = S2VTCaptioner(
            config.vocab_size, cell=config.caption_cell, num_layers=config.caption_layers,
            hidden_units=config.caption_hidden, embedding_dim=config.caption_embedding,
            dropout=config.caption_dropout, attention=config.caption_attention,
            name=CAPTIONER_LAYER,
            # float32 under any policy: its recurrent steps are small matrix products that
            # gain nothing from bfloat16 and pay its casts (docs/benchmarks.md).
            dtype="float32")
        self.visual_features = visual
        tokens = features.inputs[tasks.CAPTION_TOKENS]
        return {tasks.CAPTION_OUTPUT: self.captioner([visual, tokens])}

    def losses(self, train_config):
        return {tasks.CAPTION_OUTPUT: (CaptionLoss(), train_config.caption_loss_weight)}

    def synthetic_batch(self, rng, batch, x, y):
        import numpy as np
        words = rng.integers(2, self.model_config.vocab_size,
                             (batch, self.data_config.max_caption_words)).astype("int32")
        x[tasks.CAPTION_TOKENS] = np.concatenate([np.ones((batch, 1), "int32"), words], axis=1)
        y[tasks.CAPTION_OUTPUT] = np.concatenate([words, np.zeros((batch, 1), "int32")], axis=1)

    def generator(self, model, eval_config):
        generate = CaptionGenerator(model, self.data_config.max_caption_words,
                                    eval_config.caption_decoding, eval_config.caption_beam_size)
        return lambda video: {CAPTION_IDS: generate(video)}

    def texts(self, predictions: Predictions):
        """(references, generated): sample key -> [reference caption] and -> generated caption;
        samples without a reference caption are left out of the references."""
        from aqa_tf.metrics import captions as caption_metrics
        keys = predictions.keys
        references = {k: [r] for k, r in zip(keys, caption_metrics.decode_captions(
            predictions.targets[tasks.CAPTION_OUTPUT], self.vocab)) if r}
        generated = dict(zip(keys, caption_metrics.decode_captions(
            predictions.outputs[CAPTION_IDS], self.vocab)))
        return references, generated

    def metrics(self, predictions: Predictions, context: ReportContext) -> Dict[str, float]:
        from aqa_tf.metrics import captions as caption_metrics
        if CAPTION_IDS not in predictions.outputs:
            return {}
        return caption_metrics.caption_scores(*self.texts(predictions))

    def report(self, predictions, metrics, files_prefix, context):
        from aqa_tf.metrics import captions as caption_metrics
        if CAPTION_IDS in predictions.outputs:
            caption_metrics.write_captions(f"{files_prefix}_captions.csv", predictions.keys,
                                           *self.texts(predictions))
        return {}

    def signatures(self, model, eval_config):
        """`caption`: the preprocessed video -> `caption` strings `[batch]` (words up to the
        first `<eos>`) and `caption_ids` int32 `[batch, max_words + 1]` (TensorFlow only)."""
        import tensorflow as tf
        generator = CaptionGenerator(model, self.data_config.max_caption_words,
                                     eval_config.caption_decoding, eval_config.caption_beam_size)
        vocab = self.vocab
        words = tf.constant([vocab.ix_to_word.get(i, "<unk>")
                             for i in range(max(vocab.ix_to_word) + 1)])

        def caption(video):
            ids = tf.cast(generator(video), tf.int32)
            keep = tf.cumsum(tf.cast(tf.equal(ids, tasks.EOS_ID), tf.int32), axis=1) == 0
            text = tf.strings.reduce_join(tf.ragged.boolean_mask(tf.gather(words, ids), keep),
                                          axis=1, separator=" ")
            return {tasks.CAPTION_OUTPUT: text, CAPTION_IDS: ids}

        return {"caption": caption}

    def describe(self) -> str:
        return "commentary"


class CaptionGenerator:
    """Writes captions for a model with a caption head: `video` -> token ids `[batch,
    max_words + 1]` (ending at their first `<eos>`), greedy or beam-search decoding."""

    def __init__(self, model: keras.Model, max_words: int, method: str = "greedy",
                 beam_size: int = 3):
        head = caption_head(model)
        if head is None:
            raise ValueError(f"model {model.name} has no caption head")
        self.features = keras.Model({"video": model.input["video"]}, head.visual_features,
                                    name="caption_features")
        self.captioner = head.captioner
        self.max_words, self.method, self.beam_size = max_words, method, beam_size

    def __call__(self, video):
        clip_features = self.features({"video": video}, training=False)
        return self.captioner.generate(clip_features, self.max_words, self.method, self.beam_size)


def caption_head(model: keras.Model) -> Optional[CaptionHead]:
    """The caption head of an `AQAModel`, or None."""
    for head in getattr(model, "heads", {}).values():
        if isinstance(head, CaptionHead):
            return head
    return None
