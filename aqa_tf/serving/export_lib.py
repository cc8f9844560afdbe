"""SavedModel export (TF Serving layout `<export_dir>/<name>/<version>/`).

The exported model contains its own preprocessing: `serving_default` takes the uint8 frames of a
dive at any size and returns the score, the class probabilities and the per-clip contributions;
`serving_jpeg` takes JPEG-encoded frames; heads with signatures of their own add them (the caption
head: `caption` and `caption_jpeg`, the generated commentary as strings). `assets.extra/aqa_tf.json`
records how a video is prepared (stored size, frame rate, window, clips).

Used by `aqa_tf.train` (after training) and `aqa_tf.export` (from weights alone).
"""

import json
import os
import shutil
from typing import Callable, Dict, Optional, Tuple

import keras
import tensorflow as tf

from aqa_tf import tasks
from aqa_tf.config import DataConfig, EvalConfig, ExportConfig, ModelConfig
from aqa_tf.data import captions
from aqa_tf.data import pipeline
from aqa_tf.models import aqa_model
from aqa_tf.serving import contract
from aqa_tf.weights import sources

EFFECTIVE_FLAGS = "flags.txt"
METADATA_VERSION = 1
# The names an export and its clients share (`contract`, which needs neither TF nor Keras).
METADATA_FILE = contract.METADATA_FILE
SIGNATURES = contract.SIGNATURES


def take_window(video: tf.Tensor, window_length: int) -> tf.Tensor:
    """The last `window_length` frames of `[batch, T, ...]` (the first frame repeated in
    front when T is shorter), i.e. the window ending at the clip's last frame."""
    length = tf.shape(video)[1]
    pad = tf.maximum(window_length - length, 0)
    first = tf.repeat(video[:, :1], pad, axis=1)
    video = tf.concat([first, video], axis=1)
    return video[:, -window_length:]


def blank_padding(window: tf.Tensor, length: tf.Tensor, data_config: DataConfig) -> tf.Tensor:
    """With `pad_mode=zeros`, the frames `take_window` added in front of a video of `length`
    frames become black (uint8 `[batch, window_length, h, w, 3]`)."""
    if data_config.pad_mode != "zeros":
        return window
    pad = tf.maximum(data_config.window_length - length, 0)
    keep = tf.range(data_config.window_length) >= pad
    return window * tf.cast(tf.reshape(keep, [1, -1, 1, 1, 1]), window.dtype)


def resize_to_stored(frames: tf.Tensor, data_config: DataConfig) -> tf.Tensor:
    """uint8 `[N, H, W, 3]` of any size -> uint8 `[N, stored_height, stored_width, 3]`, as the
    converter resizes (`aqa_tf.data.video.resize_frame`): area averaging when the width
    shrinks, bilinear otherwise, rounded back to uint8. Frames already at the stored size
    pass unchanged."""
    height, width = data_config.stored_height, data_config.stored_width
    shape = tf.shape(frames)

    def resize():
        method = tf.cond(shape[2] > width,
                         lambda: tf.image.resize(frames, [height, width], method="area"),
                         lambda: tf.image.resize(frames, [height, width], method="bilinear"))
        return tf.cast(tf.round(tf.clip_by_value(method, 0.0, 255.0)), tf.uint8)

    same = tf.logical_and(tf.equal(shape[1], height), tf.equal(shape[2], width))
    resized = tf.cond(same, lambda: tf.reshape(frames, [-1, height, width, 3]), resize)
    return tf.ensure_shape(resized, [None, height, width, 3])


# What the signatures answer a request without a video or without frames (TF Serving returns
# it as INVALID_ARGUMENT; without the check, the first gather on the empty axis failed with
# "indices[...] = 42 is not in [0, 0)").
NO_VIDEO = "input `{}`: a batch of 0 videos; send at least one"
NO_FRAMES = ("input `{}`: a video of 0 frames; each needs at least one (a short one is padded "
             "with its first frame)")


def checked_frames(frames: tf.Tensor, name: str) -> tf.Tensor:
    """`frames` (`[batch, T, ...]`), after asserting in the graph that batch and T are not
    0 (messages `NO_VIDEO`, `NO_FRAMES`)."""
    shape = tf.shape(frames)
    with tf.control_dependencies([
            tf.debugging.Assert(shape[0] > 0, [NO_VIDEO.format(name)]),
            tf.debugging.Assert(shape[1] > 0, [NO_FRAMES.format(name)])]):
        return tf.identity(frames)


def video_at_stored_size(video: tf.Tensor, data_config: DataConfig) -> tf.Tensor:
    """uint8 `[batch, T, H, W, 3]` (any size) -> the window `[batch, window_length, h, w, 3]`
    at the stored size. Only the frames the window uses are resized, and the padding of a
    short video is added after resizing, so that a large frame is never repeated at its full
    size (one 4000x4000 frame took a process from 0.8 to 5.4 GB when it was)."""
    video = checked_frames(video, "video")
    last = video[:, -data_config.window_length:]
    shape = tf.shape(last)
    frames = tf.reshape(last, tf.concat([[-1], shape[2:]], axis=0))
    frames = resize_to_stored(frames, data_config)
    last = tf.reshape(frames, [shape[0], shape[1], data_config.stored_height,
                               data_config.stored_width, 3])
    window = take_window(last, data_config.window_length)
    return blank_padding(window, tf.shape(video)[1], data_config)


def decode_jpeg_video(jpegs: tf.Tensor, data_config: DataConfig) -> tf.Tensor:
    """string `[batch, T]` JPEG frames -> the window, uint8 `[batch, window_length, h, w, 3]`
    at the stored size (each frame decoded and resized on its own, so frames of different
    sizes may share a batch; the padding of a short video is repeated after decoding)."""
    jpegs = checked_frames(jpegs, "frames")
    last = jpegs[:, -data_config.window_length:]
    shape = tf.shape(last)
    frames = decode_jpeg_frames(tf.reshape(last, [-1]), data_config)
    last = tf.reshape(frames, [shape[0], shape[1], data_config.stored_height,
                               data_config.stored_width, 3])
    window = take_window(last, data_config.window_length)
    return blank_padding(window, tf.shape(jpegs)[1], data_config)


def decode_jpeg_frames(jpegs: tf.Tensor, data_config: DataConfig) -> tf.Tensor:
    """string `[N]` JPEG frames -> uint8 `[N, stored_height, stored_width, 3]`."""
    def decode(jpeg):
        frame = tf.io.decode_jpeg(jpeg, channels=3)
        return resize_to_stored(frame[tf.newaxis], data_config)[0]

    return tf.map_fn(decode, jpegs, parallel_iterations=16,
                     fn_output_signature=tf.TensorSpec(
                         [data_config.stored_height, data_config.stored_width, 3], tf.uint8))


def serving_fn(model: keras.Model, data_config: DataConfig):
    """The function behind `serving_default` (also used by tests for parity): uint8 video of
    any size -> `score`, `<sub-action>_probabilities` and, where the model has them, per-clip
    contributions (`clip_weights` or `clip_scores`, see `aqa_model.clip_contributions`).
    `extra`: the heads' string inputs by name (`Head.serving_inputs`)."""
    outputs_of = window_fn(model, data_config)

    def serve(video, difficulty, action=None, extra=None):
        return outputs_of(video_at_stored_size(video, data_config), difficulty, action, extra)

    return serve


def serving_input_names(model: keras.Model) -> Tuple[str, ...]:
    """The string inputs the heads add to `serving_default` and `serving_jpeg`."""
    return tuple(n for head in aqa_model.owner(model).heads.values()
                 for n in head.serving_inputs)


def window_fn(model: keras.Model, data_config: DataConfig):
    """`serving_fn` after the window is cut and resized: uint8 `[batch, window_length,
    stored_height, stored_width, 3]` and float32 `[batch]` difficulty (plus the action of
    multi-action models and the heads' string inputs, `Head.serving_inputs`, by name in
    `extra`) -> the outputs of `serving_default`, each head's (`Head.serving_outputs`) and the
    per-clip contributions (what the TFLite export contains, `aqa_tf.serving.tflite_lib`).
    Heads that compare with exemplars get their bank first (`attach_exemplar_banks`)."""
    owner = aqa_model.owner(model)
    attach_exemplar_banks(owner, data_config)
    inference = owner.inference_model()
    contributions = owner.clip_contributions()
    heads = list(owner.heads.values())

    def serve(window, difficulty, action=None, extra=None):
        inputs = {"video": pipeline.preprocess_video_batch(window, data_config)}
        if tasks.DIFFICULTY_INPUT in inference.input:
            inputs[tasks.DIFFICULTY_INPUT] = difficulty
        if tasks.ACTION_INPUT in inference.input:
            inputs[tasks.ACTION_INPUT] = action
        for head in heads:
            if head.compares_exemplars:
                inputs.update(exemplar_inputs(head, difficulty, action, extra or {}))
        outputs = inference({k: v for k, v in inputs.items() if k in inference.input},
                            training=False)
        result = {}
        for head in heads:
            result.update(head.serving_outputs(outputs, inputs))
        if contributions is not None:
            name, per_clip = contributions
            result[name] = tf.cast(per_clip(inputs, training=False), tf.float32)
        return result

    return serve


def attach_exemplar_banks(owner: keras.Model, data_config: DataConfig):
    """Gives every head that compares with exemplars (CoRe) the bank an export carries:
    `--voters` training exemplars per match value, their features computed now with the
    model's weights (`data.exemplar_bank.ExemplarBank.rows`). Needs the training records."""
    from aqa_tf.data.exemplar_bank import ExemplarBank
    for head in owner.heads.values():
        if not head.compares_exemplars or getattr(head, "bank", None) is not None:
            continue
        encoder = head.bank_encoder(owner)
        config = head.model_config
        bank = ExemplarBank(data_config, config.exemplar_match, config.core_difficulty,
                            config.voters, lambda video: encoder.predict_on_batch(video))
        head.set_bank(bank.rows())


def exemplar_inputs(head, difficulty, action, extra: Dict) -> Dict[str, tf.Tensor]:
    """The bank row of each request as inputs: `exemplar_features`, `exemplar_targets`, and
    for the outputs `exemplar_mask`, `exemplar_scores` and, unless the row is given, the
    strings `exemplar_keys`, `exemplar_group` (the value of the row used) and
    `exemplar_thumbnails_bytes` (a JPEG frame of each exemplar).

    The row is `extra["exemplar_row"]` where given (TFLite, whose builtin ops compare no
    strings: the client looks the row up in the metadata's `exemplar_bank`), else the row of
    the request's dive number, difficulty or action, as the head matches exemplars, or the
    row of any type where the bank has no such value."""
    from aqa_tf.data.exemplar_bank import ANY_ROW
    from aqa_tf.data.exemplars import EXEMPLAR_FEATURES, EXEMPLAR_TARGETS
    from aqa_tf.models.heads import core
    bank, match = head.bank, head.model_config.exemplar_match
    take = lambda name, row: tf.gather(tf.constant(bank[name]), row)  # noqa: E731
    if core.EXEMPLAR_ROW_INPUT in extra:
        row = tf.cast(extra[core.EXEMPLAR_ROW_INPUT], tf.int32)
        strings = {}
    else:
        batch = tf.shape(difficulty)[0]
        if match == "dive_number":
            value = tf.strings.upper(extra[core.DIVE_NUMBER_INPUT])
        elif match == "difficulty":
            value = tf.strings.as_string(difficulty, precision=2)
        elif match == "action" and action is not None:
            value = tf.strings.as_string(action)
        else:
            value = tf.fill([batch], ANY_ROW)
        values = tf.constant(bank["values"].astype(bytes))
        equal = tf.cast(tf.equal(value[:, None], values[None, :]), tf.int32)
        row = tf.where(tf.reduce_any(equal > 0, axis=1),
                       tf.argmax(equal, axis=1, output_type=tf.int32), len(bank["values"]) - 1)
        strings = {core.EXEMPLAR_KEYS: tf.gather(tf.constant(bank["keys"].astype(bytes)), row),
                   core.EXEMPLAR_ROW: tf.gather(values, row),
                   core.EXEMPLAR_THUMBNAILS: tf.gather(
                       tf.constant(bank["thumbnails"].astype(bytes)), row)}
    return {EXEMPLAR_FEATURES: take("features", row), EXEMPLAR_TARGETS: take("targets", row),
            core.EXEMPLAR_MASK: take("mask", row), core.EXEMPLAR_SCORES: take("scores", row),
            **strings}


def exemplar_bank_metadata(model: keras.Model) -> Dict:
    """The bank of a model that compares with exemplars, without its features: per row the
    match value and the exemplars' keys and scores (for TFLite clients, which get the row's
    numbers from the flatbuffer and its names from here); {} for other models."""
    for head in aqa_model.owner(model).heads.values():
        if head.compares_exemplars:
            bank = head.bank
            mask = bank["mask"] > 0
            return {"values": [v.decode() for v in bank["values"]],
                    "keys": [[k.decode() for k, m in zip(keys, row) if m]
                             for keys, row in zip(bank["keys"], mask)],
                    "scores": [[float(v) for v, m in zip(scores, row) if m]
                               for scores, row in zip(bank["scores"], mask)]}
    return {}


def _endpoint(serve, names, to_video, data_config: DataConfig):
    """A function of `(video or frames, difficulty, *inputs named names)` for `serve`."""
    def call(video, difficulty, rest):
        named = dict(zip(names, rest))
        if to_video is not None:
            video = to_video(video)
        return serve(video, difficulty, named.pop(tasks.ACTION_INPUT, None), named)

    # Explicit arities: the endpoint's function keeps one argument per input spec.
    if len(names) == 0:
        return lambda video, difficulty: call(video, difficulty, ())
    if len(names) == 1:
        return lambda video, difficulty, a: call(video, difficulty, (a,))
    if len(names) == 2:
        return lambda video, difficulty, a, b: call(video, difficulty, (a, b))
    raise ValueError(f"serving inputs {names}: at most two beside video and difficulty")


def head_signature_fns(model: keras.Model, data_config: DataConfig,
                       eval_config: EvalConfig = EvalConfig()) -> Dict[str, object]:
    """The heads' extra signatures (`Head.signatures`, e.g. `caption`) as functions of a uint8
    video of any size (cut, resized and preprocessed as `serving_default` does)."""
    owner = aqa_model.owner(model)
    functions = {}
    for head in owner.heads.values():
        for name, fn in head.signatures(owner, eval_config).items():
            functions[name] = _on_video(fn, data_config)
    return functions


def _on_video(fn, data_config: DataConfig):
    """`fn` of the preprocessed window -> the same of a uint8 video of any size."""
    def on_video(video):
        window = video_at_stored_size(video, data_config)
        return fn(pipeline.preprocess_video_batch(window, data_config))
    return on_video


def _on_jpeg(fn, data_config: DataConfig):
    """`fn` of a uint8 video -> the same of JPEG frames `[batch, frames]`."""
    return lambda frames: fn(decode_jpeg_video(frames, data_config))


def caption_fn(model: keras.Model, data_config: DataConfig, vocab: captions.Vocabulary,
               method: str = "greedy", beam_size: int = 3):
    """The `caption` signature's function (tests compare exports with it)."""
    owner = aqa_model.owner(model)
    for head in owner.heads.values():
        head.use_vocabulary(vocab)
    return head_signature_fns(owner, data_config, EvalConfig(caption_decoding=method,
                                                              caption_beam_size=beam_size)
                              )[contract.CAPTION_SIGNATURE]


def metadata(model: keras.Model, data_config: DataConfig,
             score_range: Optional[Tuple[float, float]] = None) -> Dict:
    """What `assets.extra/aqa_tf.json` records: how a video is prepared for the signatures
    (stored size, frame rate, window and clips), what they return (each head's entries) and,
    when known, the (min, max) score of the training split (`training_score_range`: clients
    warn about a score far outside it)."""
    owner = aqa_model.owner(model)
    contributions = owner.clip_contributions()
    head_signatures = {name: head.name for head in owner.heads.values()
                       for name in head.signature_names}
    meta = {
        "version": METADATA_VERSION,
        "stored_height": data_config.stored_height, "stored_width": data_config.stored_width,
        "frame_rate": data_config.frame_rate, "jpeg_quality": data_config.stored_jpeg_quality,
        "window_length": data_config.window_length,
        "num_clips": data_config.num_clips, "clip_length": data_config.clip_length,
        # Window-relative frame index of every clip frame, [num_clips][clip_length].
        "clip_frames": pipeline.clip_indices(data_config).numpy().tolist(),
        "crop_size": data_config.crop_size,
        "class_names": {},
        "pad_mode": data_config.pad_mode,
        "clip_contribution": contributions[0] if contributions else None,
    }
    for head in owner.heads.values():
        meta.update(head.metadata())
    meta["heads"] = list(owner.heads)
    if score_range is not None:
        meta[contract.TRAINING_SCORE_RANGE] = [float(score_range[0]), float(score_range[1])]
    # Each extra signature, named after what it gives (`<name>` takes uint8 video,
    # `<name>_jpeg` JPEG frames), with the label a person reads it under.
    meta[contract.HEAD_SIGNATURES] = {
        name: owner.heads[head].describe() for name, head in head_signatures.items()}
    meta["signatures"] = list(SIGNATURES) + [
        n for name in head_signatures for n in (name, name + contract.JPEG_SUFFIX)]
    return meta


def save_endpoints(endpoints: Dict[str, Tuple[Callable, list]], export_path: str):
    """Writes a SavedModel whose signatures are `endpoints`: name -> (function, input
    signature), each traced once, without autograph (`tf.saved_model.load(path).signatures`;
    not also attributes of the loaded object: saving those traced them again).

    The SavedModel holds the TensorFlow variables the traced functions use (the model's
    weights) and nothing else of the Keras model. Keras's `ExportArchive` did the same but also
    walked the tracked model's layers for lookup tables (this project's exports have none: the
    exemplar banks are constants), tracing their functions on the way: the whole export took
    twice as long (I3D at 1/8 width, three signatures, 2-core AMD EPYC Zen 3: 28 s with the
    archive)."""
    signatures = {name: tf.function(fn, input_signature=input_signature,
                                    autograph=False).get_concrete_function()
                  for name, (fn, input_signature) in endpoints.items()}
    module = tf.Module()
    module.endpoint_variables = list(
        {id(v): v for concrete in signatures.values() for v in concrete.variables}.values())
    tf.saved_model.save(module, export_path, signatures=signatures)


def export_saved_model(model: keras.Model, data_config: DataConfig, export_path: str,
                       flags_file: str = "", vocab: Optional[captions.Vocabulary] = None,
                       eval_config: EvalConfig = EvalConfig(),
                       score_range: Optional[Tuple[float, float]] = None) -> str:
    """Writes a SavedModel to `export_path` (the contract: docs/export.md).

    - `serving_default`: `video` uint8 `[batch, frames, height, width, 3]` (the frames of the
      dive ending at its last frame, any size: resized in the graph to the stored size, as the
      converter does) and `difficulty` float32 `[batch]` (read only by models that multiply by
      difficulty; pass anything otherwise). Outputs: `score` `[batch]`,
      `<sub-action>_probabilities` `[batch, classes]`, and `clip_weights` or `clip_scores`
      `[batch, num_clips]` where the model has them.
    - `serving_jpeg`: the same with `frames` string `[batch, frames]` of JPEG-encoded frames.
    - Each head's own signatures (`Head.signatures`), as `<name>` (input `video` as above) and
      `<name>_jpeg` (input `frames`); the caption head's `caption` returns `caption` (string
      `[batch]`) and `caption_ids` (int32 `[batch, max_words + 1]`), in words of `vocab`
      (default: the data configuration's vocabulary file).
    - `metadata`: input `batch` int32 `[batch]` (any values); output `json` string `[batch]`,
      each the text of `aqa_tf.json`, so that a client of a model server learns how to prepare
      a video from the server itself.
    - `assets.extra/aqa_tf.json` (`metadata`, with `score_range` of the training split
      when given) and the run's effective flags (`flags.txt`).
    """
    if os.path.exists(export_path):
        shutil.rmtree(export_path)
    owner = aqa_model.owner(model)
    if vocab is not None:
        for head in owner.heads.values():
            head.use_vocabulary(vocab)
    endpoints = {}
    serve = serving_fn(model, data_config)
    video_spec = tf.TensorSpec([None, None, None, None, 3], tf.uint8, name="video")
    jpeg_spec = tf.TensorSpec([None, None], tf.string, name="frames")
    difficulty_spec = tf.TensorSpec([None], tf.float32, name=tasks.DIFFICULTY_INPUT)
    # Inputs after video (or frames) and difficulty: the action of multi-action models
    # (paper 003) and the heads' string inputs (CoRe's dive number).
    names = ([tasks.ACTION_INPUT] if tasks.ACTION_INPUT in model.input else []) + list(
        serving_input_names(model))
    specs = [tf.TensorSpec([None], tf.int32 if n == tasks.ACTION_INPUT else tf.string, name=n)
             for n in names]
    for name, spec, to_video in ((contract.SCORE_SIGNATURE, video_spec, None),
                                 (contract.SCORE_JPEG_SIGNATURE, jpeg_spec,
                                  lambda frames: decode_jpeg_video(frames, data_config))):
        endpoints[name] = (_endpoint(serve, names, to_video, data_config),
                           [spec, difficulty_spec] + specs)
    meta_json = json.dumps(metadata(model, data_config, score_range), indent=2)
    # One ignored input: TF Serving's REST API and its request batching need a signature
    # with a batched input.
    endpoints[contract.METADATA_SIGNATURE] = (
        lambda batch: {contract.METADATA_OUTPUT: tf.fill(tf.shape(batch), tf.constant(meta_json))},
        [tf.TensorSpec([None], tf.int32, name=contract.METADATA_INPUT)])
    for name, fn in head_signature_fns(model, data_config, eval_config).items():
        endpoints[name] = (fn, [video_spec])
        endpoints[name + contract.JPEG_SUFFIX] = (_on_jpeg(fn, data_config), [jpeg_spec])
    save_endpoints(endpoints, export_path)
    extra = os.path.join(export_path, contract.ASSETS_EXTRA)
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILE), "w") as f:
        f.write(meta_json)
    if flags_file and os.path.exists(flags_file):
        shutil.copy(flags_file, os.path.join(extra, EFFECTIVE_FLAGS))
    return export_path


def export_trained_model(model: keras.Model, model_config: ModelConfig, data_config: DataConfig,
                         export_config: ExportConfig, model_dir: str,
                         eval_config: EvalConfig = EvalConfig(), flags_file: str = "",
                         vocab: Optional[captions.Vocabulary] = None,
                         score_range: Optional[Tuple[float, float]] = None) -> str:
    """Exports a trained model to `export_config.export_path(model_dir)`; returns that path.
    `score_range`: (min, max) score of the training split, recorded in the metadata.

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
    return export_saved_model(model, data_config, export_config.export_path(model_dir),
                              flags_file, vocab=vocab, eval_config=eval_config,
                              score_range=score_range)


def export_from_checkpoint(model_config: ModelConfig, data_config: DataConfig,
                           export_config: ExportConfig, checkpoint: str,
                           source: str = "keras_model", eval_config: EvalConfig = EvalConfig(),
                           flags_file: str = "",
                           vocab: Optional[captions.Vocabulary] = None) -> str:
    """Exports a model that was not trained here: builds it from the configs, loads
    `checkpoint` (a checkpoint source of `aqa_tf.registry.CHECKPOINT_SOURCES`: our
    `.weights.h5`, or e.g. the MTL-AQA authors' PyTorch files converted on the fly) and writes
    the same SavedModel as training does. The export is named after `experiment_name`, else
    after the checkpoint file. Returns its path."""
    model = sources.model_from_checkpoint(model_config, data_config, checkpoint, source)
    name = os.path.basename(checkpoint).split(".")[0]
    return export_trained_model(model, model_config, data_config, export_config, name,
                                eval_config, flags_file, vocab,
                                training_score_range(data_config))


def training_score_range(data_config: DataConfig) -> Optional[Tuple[float, float]]:
    """(min, max) score of `data_config`'s training records, or None where they cannot be
    read (an export from weights alone, without the dataset) or hold no score."""
    from aqa_tf.data import statistics
    try:
        low, high = statistics.score_range(data_config)
    except (tf.errors.OpError, ValueError, OSError):
        return None
    return low, high
