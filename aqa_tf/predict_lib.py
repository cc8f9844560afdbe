"""Scoring video files with a trained model: one dive, or a scan over a long video.

`Scorer` wraps an exported SavedModel (its signatures and `assets.extra/aqa_tf.json`) or a Keras
model built from configs and weights (the same signature functions, `aqa_tf.export_lib`). Videos
are decoded by `aqa_tf.data.video` at the model's frame rate and stored size, so the signatures
receive frames exactly as the converter stores them. `aqa_tf.predict` is the command line.
"""

import dataclasses
import json
import os
import sys
from typing import Dict, List, Optional

import numpy as np

from aqa_tf.config import ConfigError
from aqa_tf.data import video as video_lib


def warn(message: str):
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Scorer:
    """A model that scores windows of frames at its stored size.

    The model behind it is a backend: `serve(windows, difficulty)` takes numpy windows
    (`[batch, frames]` JPEG strings as an object array, or uint8 `[batch, frames, h, w, 3]`) and
    float32 `[batch]` difficulties and returns the outputs of `serving_default` as numpy arrays;
    `caption(windows)` returns those of `caption`, or is None. Backends: a SavedModel, a Keras
    model, a LiteRT model (`aqa_tf.tflite_lib`), a TF Serving server (`aqa_tf.serving_client`).

    Attributes:
      meta: the export metadata (`export_lib.metadata`): stored size, frame rate, window,
        clips, class names, clip contribution kind, signatures.
    """

    def __init__(self, serve, caption, meta: Dict, description: str):
        self._serve, self._caption = serve, caption
        self.meta, self.description = meta, description

    @classmethod
    def from_path(cls, path: str) -> "Scorer":
        """A SavedModel folder, or a `.tflite` file (`aqa_tf.export --format=tflite`)."""
        if path.endswith(".tflite"):
            from aqa_tf import tflite_lib
            return tflite_lib.scorer(path)
        return cls.from_saved_model(path)

    @classmethod
    def from_saved_model(cls, path: str) -> "Scorer":
        """Loads an export of `aqa_tf.train` / `aqa_tf.export`.

        Raises:
          ConfigError: not a folder, not a SavedModel, no `serving_default`, no metadata.
        """
        import tensorflow as tf
        from aqa_tf import export_lib
        if not os.path.isdir(path):
            raise ConfigError(f"model {path}: no such folder (expected an export "
                              "<export_dir>/<name>/<version>)")
        if not tf.saved_model.contains_saved_model(path):
            raise ConfigError(f"model {path}: not a SavedModel (no saved_model.pb)")
        loaded = tf.saved_model.load(path)
        if "serving_default" not in loaded.signatures:
            raise ConfigError(f"model {path}: no serving_default signature (it has: "
                              f"{', '.join(loaded.signatures.keys()) or 'none'})")
        meta_path = os.path.join(path, "assets.extra", export_lib.METADATA_FILE)
        if not os.path.exists(meta_path):
            raise ConfigError(f"model {path}: no assets.extra/{export_lib.METADATA_FILE} (not "
                              "an aqa-tf export, or one made before it was recorded: export "
                              "it again with `python -m aqa_tf.export`)")
        with open(meta_path) as f:
            meta = json.load(f)
        signatures = loaded.signatures
        missing = [name for name in meta.get("signatures", []) if name not in signatures]
        if missing:
            raise ConfigError(f"model {path}: lacks the signature(s) {', '.join(missing)} that "
                              f"assets.extra/{export_lib.METADATA_FILE} lists")

        def serve(windows, difficulty, action=None):
            video, difficulty = _tensor(windows), tf.constant(difficulty, tf.float32)
            extra = {} if action is None else {"action": tf.constant(action, tf.int32)}
            if video.dtype == tf.string:
                return signatures["serving_jpeg"](frames=video, difficulty=difficulty, **extra)
            return signatures["serving_default"](video=video, difficulty=difficulty, **extra)

        def caption(windows):
            video = _tensor(windows)
            if video.dtype == tf.string:
                return signatures["caption_jpeg"](frames=video)
            return signatures["caption"](video=video)

        return cls(_numpy_outputs(serve), _numpy_outputs(caption) if "caption" in signatures
                   else None, meta, f"SavedModel {path}")

    @classmethod
    def from_keras(cls, model, data_config, vocab=None, eval_config=None,
                   description: str = "Keras model") -> "Scorer":
        """The same signature functions on a Keras model (a checkpoint not exported)."""
        import tensorflow as tf
        from aqa_tf import export_lib
        from aqa_tf.config import EvalConfig
        from aqa_tf.models import aqa_model
        eval_config = eval_config or EvalConfig()
        serve_uint8 = tf.function(export_lib.serving_fn(model, data_config), autograph=False)

        def serve(windows, difficulty, action=None):
            video = _tensor(windows)
            if video.dtype == tf.string:
                video = export_lib.decode_jpeg_video(video, data_config)
            action = None if action is None else tf.constant(action, tf.int32)
            return serve_uint8(video, tf.constant(difficulty, tf.float32), action)

        caption = None
        if aqa_model.has_caption_head(model) and vocab is not None:
            caption_uint8 = tf.function(export_lib.caption_fn(
                model, data_config, vocab, eval_config.caption_decoding,
                eval_config.caption_beam_size), autograph=False)

            def decode_and_caption(windows):
                video = _tensor(windows)
                if video.dtype == tf.string:
                    video = export_lib.decode_jpeg_video(video, data_config)
                return caption_uint8(video)

            caption = _numpy_outputs(decode_and_caption)

        return cls(_numpy_outputs(serve), caption, export_lib.metadata(model, data_config),
                   description)

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
              action: Optional[np.ndarray] = None) -> Dict:
        """Windows `[batch, frames]` of `model_frames` (or uint8 `[batch, frames, h, w, 3]`) ->
        numpy outputs of `serving_default`. `action`: int `[batch]` action indices, for
        multi-action models (`meta["uses_action"]`, paper 003)."""
        if difficulty is None:
            difficulty = np.zeros([len(windows)], np.float32)
        difficulty = np.asarray(difficulty, np.float32)
        if not self.meta.get("uses_action"):
            return self._serve(windows, difficulty)
        if action is None:
            raise ConfigError("this model scores several actions on their own scales: give "
                              f"the action ({', '.join(self.meta.get('actions', []))})")
        return self._serve(windows, difficulty, np.asarray(action, np.int32))

    def caption(self, windows: np.ndarray) -> Optional[List[str]]:
        """The commentary of each window, or None without a caption head."""
        if self._caption is None:
            return None
        out = self._caption(windows)
        return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in out["caption"]]


def _numpy_outputs(fn):
    """`fn` with its dict of tensors returned as numpy arrays."""
    def wrapped(*args):
        return {k: v.numpy() for k, v in fn(*args).items()}
    return wrapped


def _tensor(windows: np.ndarray):
    import tensorflow as tf
    if windows.dtype == object:
        return tf.constant(windows.tolist(), tf.string)
    return tf.constant(windows, tf.uint8)


def read_video(scorer: Scorer, path: str, progress: bool = True) -> video_lib.Video:
    """Decodes `path` at the model's frame rate (its own rate, with a warning, when the model
    does not record one) and stored size."""
    rate = float(scorer.meta.get("frame_rate") or 0.0)
    video = video_lib.read_video(path, rate, scorer.stored_size, progress=progress)
    if rate <= 0:
        warn(f"the model does not record the frame rate it was trained at: {path} is read at "
             f"its own {video.source_rate:.3g} frames/s")
    return video


def window_ending_at(frames: np.ndarray, end: int, length: int,
                     blank: Optional[np.ndarray] = None) -> np.ndarray:
    """The `length` frames ending at index `end`; when there are fewer, the first frame is
    repeated in front (as the signatures pad), or `blank` (a black frame, `pad_mode=zeros`)."""
    window = frames[max(0, end - length + 1):end + 1]
    if len(window) < length:
        fill = window[:1] if blank is None else np.asarray(blank)[None]
        window = np.concatenate([np.repeat(fill, length - len(window), axis=0), window])
    return window


def _blank(scorer: Scorer, frames: np.ndarray) -> Optional[np.ndarray]:
    """The padding frame of a `pad_mode=zeros` model, in the form of `frames` (uint8 or the
    model's JPEG strings); None for models that repeat the first frame."""
    if scorer.meta.get("pad_mode") != "zeros":
        return None
    black = np.zeros(scorer.stored_size + (3,), np.uint8)
    return black if frames.dtype != object else scorer.model_frames(black[None])[0]


def end_index(video: video_lib.Video, end_time: Optional[float] = None,
              end_frame: Optional[int] = None) -> int:
    """Index (at the model's rate) of the window's last frame: the video's last frame, the
    frame shown at `end_time` seconds, or the source video's frame number `end_frame`
    (1-based)."""
    duration = video.times[-1] + 1.0 / video.frame_rate
    if end_frame is not None:
        if end_frame < 1:
            raise ConfigError(f"--end_frame={end_frame}: frame numbers start at 1")
        end_time = (end_frame - 1) / video.source_rate
    if end_time is None:
        return len(video.frames) - 1
    if not 0 <= end_time < duration + 1e-6:
        raise ConfigError(f"window end {end_time:.3f} s is outside {video.path} "
                          f"(0 to {duration:.3f} s)")
    return video.index_at(end_time)


def _top_classes(outputs: Dict, index: int, meta: Dict, top: int = 3) -> Dict[str, List]:
    result = {}
    for name, labels in meta.get("class_names", {}).items():
        probs = outputs.get(f"{name}_probabilities")
        if probs is None:
            continue
        order = np.argsort(-probs[index])[:top]
        result[name] = [[labels[i], float(probs[index][i])] for i in order]
    return result


def score_dive(scorer: Scorer, path: str, end_time: Optional[float] = None,
               end_frame: Optional[int] = None, difficulty: Optional[float] = None,
               progress: bool = True, video: Optional[video_lib.Video] = None,
               action: Optional[int] = None) -> Dict:
    """Scores `path` as one dive whose window ends at its last frame (or at `end_time` /
    `end_frame`). Returns a JSON-ready dict (score, sub-actions, commentary, per-clip
    contributions, the window's times) plus `"window"` (its uint8 frames, for plots)."""
    video = video or read_video(scorer, path, progress)
    end = end_index(video, end_time, end_frame)
    length = scorer.window_length
    if end + 1 < length:
        warn(f"{path}: the window ends at frame {end + 1} at {video.frame_rate:.3g} frames/s, "
             f"fewer than the model's {length}-frame window: the first frame is repeated in "
             "front, as the signature does")
    window = window_ending_at(video.frames, end, length, _blank(scorer, video.frames))
    model_window = scorer.model_frames(window)[None]
    outputs = scorer.score(model_window, None if difficulty is None else np.array([difficulty]),
                           None if action is None else np.array([action]))
    result = {
        "video": path, "source_size": list(video.source_size),
        "source_frame_rate": video.source_rate, "frame_rate": video.frame_rate,
        "window_start_time": float(video.times[max(0, end - length + 1)]),
        "window_end_time": float(video.times[end]),
        "score": float(outputs["score"][0]),
        "sub_actions": _top_classes(outputs, 0, scorer.meta),
    }
    kind = scorer.meta.get("clip_contribution")
    if kind and kind in outputs:
        result[kind] = [float(v) for v in outputs[kind][0]]
    commentary = scorer.caption(model_window)
    if commentary is not None:
        result["commentary"] = commentary[0]
    result["window"] = window
    return result


def scan(scorer: Scorer, path: str, stride: int, batch_size: int = 8,
         difficulty: Optional[float] = None, progress: bool = True,
         video: Optional[video_lib.Video] = None, action: Optional[int] = None) -> List[Dict]:
    """Scores every window position of a long video, ends `stride` frames apart (at the
    model's rate). Returns one row per window: its start and end time, score and top-1
    sub-actions."""
    from tqdm import tqdm
    video = video or read_video(scorer, path, progress)
    length = scorer.window_length
    if stride <= 0:
        raise ConfigError(f"--scan_stride={stride} must be positive")
    ends = list(range(min(length, len(video.frames)) - 1, len(video.frames), stride))
    frames = scorer.model_frames(video.frames)  # each frame encoded once
    rows = []
    for first in tqdm(range(0, len(ends), batch_size), desc=f"scanning {os.path.basename(path)}",
                      unit="batch", disable=not progress, leave=False):
        batch_ends = ends[first:first + batch_size]
        windows = np.stack([window_ending_at(frames, e, length, _blank(scorer, frames))
                            for e in batch_ends])
        difficulties = None if difficulty is None else np.full([len(windows)], difficulty)
        actions = None if action is None else np.full([len(windows)], action)
        outputs = scorer.score(windows, difficulties, actions)
        for i, end in enumerate(batch_ends):
            row = {"start_time": float(video.times[max(0, end - length + 1)]),
                   "end_time": float(video.times[end]), "end_index": end,
                   "score": float(outputs["score"][i])}
            for name, ranked in _top_classes(outputs, i, scorer.meta, top=1).items():
                row[name], row[f"{name}_probability"] = ranked[0]
            rows.append(row)
    return rows


def json_ready(result: Dict) -> Dict:
    return {k: v for k, v in result.items() if k != "window"}


def write_results(path: str, results: List[Dict]):
    """`--output_json` of the scoring CLIs (`aqa_tf.predict`, `aqa_tf.serving_client`)."""
    if not path:
        return
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Results: {path}", flush=True)


@dataclasses.dataclass
class OutputPaths:
    """Where `aqa_tf.predict` writes the files of one video."""

    folder: str
    video: str

    def file(self, suffix: str) -> str:
        stem = os.path.splitext(os.path.basename(self.video))[0]
        return os.path.join(self.folder, f"{stem}_{suffix}")
