"""`Scorer`: the interface every serving backend implements, a model that scores windows of
frames at its stored size and writes what its heads generate (e.g. the commentary).

Backends: a SavedModel (`Scorer.from_saved_model`), a Keras model built from configs and
weights (`Scorer.from_keras`: the same signature functions), a LiteRT model
(`aqa_tf.serving.tflite_lib.scorer`), a TF Serving server (`aqa_tf.serving.client`).
`predict_lib.open_scorer` opens an export of either file kind.
"""

import json
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from aqa_tf.config import ConfigError
from aqa_tf.serving import contract


class Scorer:
    """A model that scores windows of frames at its stored size.

    Args:
      serve: `serve(windows, difficulty[, action])` takes numpy windows (`[batch, frames]` JPEG
        strings as an object array, or uint8 `[batch, frames, h, w, 3]`) and float32 `[batch]`
        difficulties and returns the outputs of `serving_default` as numpy arrays.
      generators: the heads' extra signatures (`contract.head_signatures`): signature name ->
        a function of the windows returning that signature's numpy outputs.
      meta: the export metadata (`export_lib.metadata`): stored size, frame rate, window,
        clips, class names, clip contribution kind, signatures.
      description: what the model is, for messages.
    """

    def __init__(self, serve, generators: Optional[Dict[str, Callable]], meta: Dict,
                 description: str):
        self._serve, self._generators = serve, dict(generators or {})
        self.meta, self.description = meta, description

    @classmethod
    def from_saved_model(cls, path: str) -> "Scorer":
        """Loads an export of `aqa_tf.train` / `aqa_tf.export`.

        Raises:
          ConfigError: not a folder, not a SavedModel, no `serving_default`, no metadata.
        """
        import tensorflow as tf
        if not os.path.isdir(path):
            raise ConfigError(f"model {path}: no such folder (expected an export "
                              "<export_dir>/<name>/<version>)")
        if not tf.saved_model.contains_saved_model(path):
            raise ConfigError(f"model {path}: not a SavedModel (no saved_model.pb)")
        loaded = tf.saved_model.load(path)
        if contract.SCORE_SIGNATURE not in loaded.signatures:
            raise ConfigError(f"model {path}: no {contract.SCORE_SIGNATURE} signature (it has: "
                              f"{', '.join(loaded.signatures.keys()) or 'none'})")
        meta_file = f"{contract.ASSETS_EXTRA}/{contract.METADATA_FILE}"
        meta_path = os.path.join(path, meta_file)
        if not os.path.exists(meta_path):
            raise ConfigError(f"model {path}: no {meta_file} (not an aqa-tf export, or one made "
                              "before it was recorded: export it again with `python -m "
                              "aqa_tf.export`)")
        with open(meta_path) as f:
            meta = json.load(f)
        signatures = loaded.signatures
        missing = [name for name in meta.get("signatures", []) if name not in signatures]
        if missing:
            raise ConfigError(f"model {path}: lacks the signature(s) {', '.join(missing)} that "
                              f"{meta_file} lists")

        def serve(windows, difficulty, action=None, dive_number=None):
            video, difficulty = _tensor(windows), tf.constant(difficulty, tf.float32)
            extra = {} if action is None else {"action": tf.constant(action, tf.int32)}
            if dive_number is not None:
                extra["dive_number"] = tf.constant(dive_number, tf.string)
            if video.dtype == tf.string:
                return signatures[contract.SCORE_JPEG_SIGNATURE](
                    frames=video, difficulty=difficulty, **extra)
            return signatures[contract.SCORE_SIGNATURE](video=video, difficulty=difficulty,
                                                        **extra)

        def generator(name):
            def generate(windows):
                video = _tensor(windows)
                if video.dtype == tf.string:
                    return signatures[name + contract.JPEG_SUFFIX](frames=video)
                return signatures[name](video=video)
            return _numpy_outputs(generate)

        generators = {name: generator(name) for name in contract.head_signatures(meta)
                      if name in signatures}
        return cls(_numpy_outputs(serve), generators, meta, f"SavedModel {path}")

    @classmethod
    def from_keras(cls, model, data_config, vocab=None, eval_config=None,
                   description: str = "Keras model") -> "Scorer":
        """The same signature functions on a Keras model (a checkpoint not exported);
        `vocab`: the words of heads that write text (default: the data configuration's)."""
        import tensorflow as tf
        from aqa_tf.config import EvalConfig
        from aqa_tf.serving import export_lib
        serve_uint8 = tf.function(export_lib.serving_fn(model, data_config), autograph=False)

        def decoded(windows):
            video = _tensor(windows)
            if video.dtype == tf.string:
                video = export_lib.decode_jpeg_video(video, data_config)
            return video

        def serve(windows, difficulty, action=None, dive_number=None):
            action = None if action is None else tf.constant(action, tf.int32)
            extra = {} if dive_number is None else {
                "dive_number": tf.constant(dive_number, tf.string)}
            return serve_uint8(decoded(windows), tf.constant(difficulty, tf.float32), action,
                               extra)

        meta = export_lib.metadata(model, data_config)
        generators = {}
        if contract.head_signatures(meta):
            if vocab is not None:
                from aqa_tf.models import aqa_model
                for head in aqa_model.owner(model).heads.values():
                    head.use_vocabulary(vocab)
            functions = export_lib.head_signature_fns(model, data_config,
                                                      eval_config or EvalConfig())
            for name, fn in functions.items():
                traced = tf.function(fn, autograph=False)
                generators[name] = _numpy_outputs(lambda w, traced=traced: traced(decoded(w)))
        return cls(_numpy_outputs(serve), generators, meta, description)

    @property
    def window_length(self) -> int:
        return int(self.meta["window_length"])

    @property
    def stored_size(self):
        return int(self.meta["stored_height"]), int(self.meta["stored_width"])

    @property
    def jpeg_quality(self) -> int:
        return int(self.meta.get("jpeg_quality") or 0)

    def model_frames(self, frames: np.ndarray) -> np.ndarray:
        """Frames at the stored size -> what `score` takes: JPEG strings at the quality the
        records were stored at (so that the model sees the compression it was trained on,
        decoded in the graph as the training pipeline decodes), or the uint8 frames when the
        model records no quality."""
        if not self.jpeg_quality:
            return frames
        from aqa_tf.data import features
        return np.array([features.encode_jpeg(f, self.jpeg_quality) for f in frames],
                        dtype=object)

    def score(self, windows: np.ndarray, difficulty: Optional[np.ndarray] = None,
              action: Optional[np.ndarray] = None,
              dive_number: Optional[Sequence[str]] = None) -> Dict:
        """Windows `[batch, frames]` of `model_frames` (or uint8 `[batch, frames, h, w, 3]`) ->
        numpy outputs of `serving_default`. `action`: int `[batch]` action indices, for
        multi-action models (`meta["uses_action"]`, paper 003). `dive_number`: `[batch]` FINA
        codes, for models that compare the dive with exemplars of its type
        (`meta["exemplar_match"] == "dive_number"`, CoRe)."""
        windows = checked_windows(windows)
        if difficulty is None:
            difficulty = np.zeros([len(windows)], np.float32)
        difficulty = np.asarray(difficulty, np.float32)
        if self.meta.get("exemplar_match") == "dive_number":
            if dive_number is None:
                known = self.meta.get("exemplar_values", [])
                raise ConfigError(
                    "this model compares the dive with exemplars of its dive type: give the "
                    f"dive number (--dive_type; its bank holds {len(known)} types, e.g. "
                    f"{', '.join(known[:5])})")
            dive_number = np.asarray([str(d).encode() for d in dive_number], object)
        else:
            dive_number = None
        if self.meta.get("uses_action") and action is None:
            raise ConfigError("this model scores several actions on their own scales: give "
                              f"the action ({', '.join(self.meta.get('actions', []))})")
        action = None if not self.meta.get("uses_action") else np.asarray(action, np.int32)
        return self._serve(windows, difficulty, action, dive_number)

    def texts(self, windows: np.ndarray) -> Dict[str, List[str]]:
        """What the heads write about each window, by the label a person reads it under (the
        caption head: `commentary`): the text outputs of every extra signature."""
        labels = contract.head_signatures(self.meta)
        windows = checked_windows(windows)
        result = {}
        for name, generate in self._generators.items():
            for value in generate(windows).values():
                if value.dtype == object or value.dtype.kind in "SU":
                    result[labels.get(name, name)] = [
                        t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in value]
        return result


def checked_windows(windows) -> np.ndarray:
    """`windows` as the signatures take them: JPEG strings `[batch, frames]` (an object
    array), or uint8 `[batch, frames, h, w, 3]`; grey frames (`[batch, frames, h, w]` or a
    last axis of 1) are made RGB by repeating the grey value, as `decode_jpeg(channels=3)`
    does with a grey JPEG.

    Raises:
      ConfigError: no window or no frames, a dtype or shape the signatures do not take.
    """
    windows = np.asarray(windows)
    what = f"window of shape {list(windows.shape)}"
    if windows.dtype.kind in "SU":
        windows = windows.astype(object)
    if windows.ndim < 2 or windows.shape[1] == 0:
        raise ConfigError(f"{what}: no frames; the signatures pad a short window with its "
                          "first frame, so they need at least one frame per window")
    if windows.shape[0] == 0:
        raise ConfigError(f"{what}: a batch of 0 windows")
    if windows.dtype == object:
        if windows.ndim != 2:
            raise ConfigError(f"{what}: JPEG frames are [batch, frames] strings")
        return windows
    if windows.dtype != np.uint8:
        raise ConfigError(f"{what}: dtype {windows.dtype}; frames are uint8 (0-255)")
    if windows.ndim == 4:
        windows = windows[..., None]
    if windows.ndim != 5 or windows.shape[-1] not in (1, 3):
        raise ConfigError(f"{what}: frames are uint8 [batch, frames, height, width, 3] (RGB) "
                          "or [batch, frames, height, width] (grey)")
    if windows.shape[-1] == 1:
        windows = np.repeat(windows, 3, axis=-1)
    return windows


def _numpy_outputs(fn):
    """`fn` with its dict of tensors returned as numpy arrays."""
    def wrapped(*args):
        return {k: np.asarray(v) for k, v in fn(*args).items()}
    return wrapped


def _tensor(windows: np.ndarray):
    import tensorflow as tf
    if windows.dtype == object:
        return tf.constant(windows.tolist(), tf.string)
    return tf.constant(windows, tf.uint8)


def window_ending_at(frames: np.ndarray, end: int, length: int,
                     blank: Optional[np.ndarray] = None) -> np.ndarray:
    """The `length` frames ending at index `end`; when there are fewer, the first frame is
    repeated in front (as the signatures pad), or `blank` (a black frame, `pad_mode=zeros`)."""
    window = frames[max(0, end - length + 1):end + 1]
    if len(window) < length:
        fill = window[:1] if blank is None else np.asarray(blank)[None]
        window = np.concatenate([np.repeat(fill, length - len(window), axis=0), window])
    return window
