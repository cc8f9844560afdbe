"""SavedModel export (TF Serving layout `<export_dir>/<name>/<version>/`).

The exported model contains its own preprocessing: `serving_default` takes the raw uint8 frames
of a dive and returns the score and the class probabilities; models with a caption head also get
a `caption` signature that returns the generated commentary as strings.
"""

import os
import shutil
from typing import Optional

import keras
import tensorflow as tf

from aqa_tf import tasks
from aqa_tf.config import DataConfig, EvalConfig, ExportConfig, ModelConfig
from aqa_tf.data import captions
from aqa_tf.data import pipeline
from aqa_tf.models import aqa_model

EFFECTIVE_FLAGS = "flags.txt"


def take_window(video: tf.Tensor, window_length: int) -> tf.Tensor:
    """The last `window_length` frames of `[batch, T, H, W, 3]` (the first frame repeated in
    front when T is shorter), i.e. the window ending at the clip's last frame."""
    length = tf.shape(video)[1]
    pad = tf.maximum(window_length - length, 0)
    first = tf.repeat(video[:, :1], pad, axis=1)
    video = tf.concat([first, video], axis=1)
    return video[:, -window_length:]


def serving_fn(model: keras.Model, data_config: DataConfig):
    """The function behind `serving_default` (also used by tests for parity)."""
    model = aqa_model.inference_model(model)
    class_names = [n for n in tasks.CLASS_OUTPUTS if n in model.output]

    def serve(video, difficulty):
        window = take_window(video, data_config.window_length)
        inputs = {"video": pipeline.preprocess_video_batch(window, data_config)}
        if "difficulty" in model.input:
            inputs["difficulty"] = difficulty
        outputs = model(inputs, training=False)
        result = {"score": tf.cast(outputs["score"], tf.float32)}
        for name in class_names:
            result[f"{name}_probabilities"] = tf.nn.softmax(tf.cast(outputs[name], tf.float32))
        return result

    return serve


def caption_fn(model: keras.Model, data_config: DataConfig, vocab: captions.Vocabulary,
               method: str = "greedy", beam_size: int = 3):
    """The function behind the `caption` signature: uint8 video -> `caption` strings `[batch]`
    (words up to the first `<eos>`) and `caption_ids` int32 `[batch, max_words + 1]`."""
    generator = aqa_model.CaptionGenerator(model, data_config.max_caption_words, method,
                                           beam_size)
    words = tf.constant([vocab.ix_to_word.get(i, "<unk>")
                         for i in range(max(vocab.ix_to_word) + 1)])

    def caption(video):
        window = take_window(video, data_config.window_length)
        ids = tf.cast(generator(pipeline.preprocess_video_batch(window, data_config)), tf.int32)
        keep = tf.cumsum(tf.cast(tf.equal(ids, tasks.EOS_ID), tf.int32), axis=1) == 0
        text = tf.strings.reduce_join(tf.ragged.boolean_mask(tf.gather(words, ids), keep),
                                      axis=1, separator=" ")
        return {"caption": text, "caption_ids": ids}

    return caption


def export_saved_model(model: keras.Model, data_config: DataConfig, export_path: str,
                       flags_file: str = "", vocab: Optional[captions.Vocabulary] = None,
                       eval_config: EvalConfig = EvalConfig()) -> str:
    """Writes a SavedModel with a `serving_default` signature to `export_path`.

    Signature inputs: `video` uint8 `[batch, frames, height, width, 3]` (the frames of the dive
    ending at its last frame, at the stored resolution) and `difficulty` float32 `[batch]`
    (used only by models that multiply by difficulty; pass anything otherwise).
    Outputs: `score` `[batch]` and `<sub-action>_probabilities` `[batch, classes]`.
    With a caption head (and `vocab`), a second signature `caption`: input `video` as above,
    outputs `caption` (string `[batch]`) and `caption_ids` (int32 `[batch, max_words + 1]`).
    """
    if os.path.exists(export_path):
        shutil.rmtree(export_path)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default", fn=serving_fn(model, data_config),
        input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.uint8, name="video"),
                         tf.TensorSpec([None], tf.float32, name="difficulty")])
    if aqa_model.has_caption_head(model):
        if vocab is None:
            raise ValueError("a model with a caption head is exported with its vocabulary")
        archive.add_endpoint(
            name="caption", fn=caption_fn(model, data_config, vocab,
                                          eval_config.caption_decoding,
                                          eval_config.caption_beam_size),
            input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.uint8,
                                           name="video")])
    archive.write_out(export_path, verbose=False)
    if flags_file and os.path.exists(flags_file):
        # assets.extra/ is where SavedModel consumers (TF Serving) expect non-graph files.
        os.makedirs(os.path.join(export_path, "assets.extra"), exist_ok=True)
        shutil.copy(flags_file, os.path.join(export_path, "assets.extra", EFFECTIVE_FLAGS))
    return export_path


def export_trained_model(model: keras.Model, model_config: ModelConfig, data_config: DataConfig,
                         export_config: ExportConfig, model_dir: str,
                         eval_config: EvalConfig = EvalConfig(), flags_file: str = "",
                         vocab: Optional[captions.Vocabulary] = None) -> str:
    """Exports a trained model to `export_config.export_path(model_dir)`; returns that path.

    A model trained under mixed precision keeps float32 variables; with `export_dtype=float32`
    (the default) it is rebuilt with the float32 policy for serving (bfloat16 activations would
    move scores by ~0.1 point); `export_dtype=training` keeps the training policy (faster on
    bf16 hardware). Caption models are exported with `vocab` (default: read from
    `data_config.vocab_path`).
    """
    policy = keras.mixed_precision.global_policy()
    if export_config.export_dtype == "float32" and policy.name != "float32":
        keras.mixed_precision.set_global_policy("float32")
        try:
            rebuilt = aqa_model.build_aqa_model(model_config, data_config)
            rebuilt.set_weights(model.get_weights())
            model = rebuilt
        finally:
            keras.mixed_precision.set_global_policy(policy)
    if vocab is None and aqa_model.has_caption_head(model):
        vocab = captions.Vocabulary.load(data_config.vocab_path)
    return export_saved_model(model, data_config, export_config.export_path(model_dir),
                              flags_file, vocab=vocab, eval_config=eval_config)
