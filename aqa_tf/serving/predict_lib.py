"""Scoring video files with a trained model: one dive, or a scan over a long video.

A `scorer.Scorer` runs the model: an exported SavedModel or `.tflite` file (`open_scorer`), a Keras
model built from configs and weights, or a TF Serving server. Videos are decoded by
`aqa_tf.data.video` at the model's frame rate and stored size, so the signatures receive frames
exactly as the converter stores them. `aqa_tf.predict` is the command line.
"""

import dataclasses
import itertools
import json
import os
import sys
import traceback
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from aqa_tf.config import ConfigError
from aqa_tf.data import video as video_lib
from aqa_tf.serving.scorer import Scorer, window_ending_at


def warn(message: str):
    print(f"warning: {message}", file=sys.stderr, flush=True)


# How far outside the training split's score range (as a fraction of its width) a score may
# lie before predict warns that the video may be unlike the training videos (a noise video
# scored 161 points with a model trained on 20-100).
RANGE_MARGIN = 0.1


def outside_training_range(score: float, meta: Dict) -> str:
    """A warning for a score far outside the training scores (`""` when within, or when the
    export records no range: exports made before it did, or from weights alone)."""
    from aqa_tf.serving import contract
    if contract.TRAINING_SCORE_RANGE not in meta:
        return ""
    low, high = meta[contract.TRAINING_SCORE_RANGE]
    margin = RANGE_MARGIN * (high - low)
    if low - margin <= score <= high + margin:
        return ""
    return (f"score {score:.4g} is far outside the training scores ({low:.4g} to {high:.4g}): "
            "is the video a dive like those the model was trained on?")


def open_scorer(path: str, num_threads: Optional[int] = None) -> Scorer:
    """A scorer of an export: a SavedModel folder, or a `.tflite` file (`aqa_tf.export
    --format=tflite`)."""
    import struct
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    kind = "TFLite file" if path.endswith(".tflite") else "SavedModel"
    try:
        if path.endswith(".tflite"):
            from aqa_tf.serving import tflite_lib
            return tflite_lib.scorer(path, num_threads)
        return Scorer.from_saved_model(path)
    except (tf.errors.OpError, DecodeError, OSError, ValueError, RuntimeError, IndexError,
            struct.error,
            UnicodeDecodeError, json.JSONDecodeError) as error:  # truncated or corrupt files
        reason = (getattr(error, "message", "") or str(error)).strip().splitlines()
        raise ConfigError(f"model {path}: not a readable {kind}, truncated or corrupt "
                          f"({type(error).__name__}: {reason[0][:200] if reason else ''})"
                          ) from None


def read_video(scorer: Scorer, path: str, progress: bool = True) -> video_lib.Video:
    """Decodes `path` at the model's frame rate (its own rate, with a warning, when the model
    does not record one) and stored size."""
    rate = float(scorer.meta.get("frame_rate") or 0.0)
    video = video_lib.read_video(path, rate, scorer.stored_size, progress=progress)
    if rate <= 0:
        warn(f"the model does not record the frame rate it was trained at: {path} is read at "
             f"its own {video.source_rate:.3g} frames/s")
    return video


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
               action: Optional[int] = None, dive_type: Optional[str] = None) -> Dict:
    """Scores `path` as one dive whose window ends at its last frame (or at `end_time` /
    `end_frame`). Returns a JSON-ready dict (score, sub-actions, commentary, per-clip
    contributions, the window's times; for models that compare with exemplars, the exemplars
    used and each one's verdict) plus `"window"` (its uint8 frames) and, for those models,
    `"exemplar_thumbnails"` (JPEG frames), for plots."""
    video, end, window = dive_window(scorer, path, end_time, end_frame, progress, video)
    model_window = scorer.model_frames(window)[None]
    outputs = scorer.score(model_window, None if difficulty is None else np.array([difficulty]),
                           None if action is None else np.array([action]),
                           None if dive_type is None else [dive_type])
    texts = {label: values[0] for label, values in scorer.texts(model_window).items()}
    result = dive_result(scorer.meta, path, source_fields(video),
                         window_times(video, end, scorer.window_length), outputs, texts)
    result["window"] = window
    return result


def dive_window(scorer: Scorer, path: str, end_time: Optional[float] = None,
                end_frame: Optional[int] = None, progress: bool = True,
                video: Optional[video_lib.Video] = None):
    """The window a dive is scored on (`score_dive`): `(video, index of the window's last
    frame, uint8 window [frames, h, w, 3])`. Needs only the scorer's metadata (frame rate,
    stored size, window length, padding)."""
    video = video or read_video(scorer, path, progress)
    end = end_index(video, end_time, end_frame)
    length = scorer.window_length
    if end + 1 < length:
        warn(f"{path}: the window ends at frame {end + 1} at {video.frame_rate:.3g} frames/s, "
             f"fewer than the model's {length}-frame window: the first frame is repeated in "
             "front, as the signature does")
    return video, end, window_ending_at(video.frames, end, length, _blank(scorer, video.frames))


def source_fields(video: video_lib.Video) -> Dict:
    """What a result says of the file it scored: its frame size and rate, and the rate it was
    read at."""
    return {"source_size": list(video.source_size), "source_frame_rate": video.source_rate,
            "frame_rate": video.frame_rate}


def window_times(video: video_lib.Video, end: int, length: int) -> List[float]:
    """The times of the window's frames that are in the video (fewer than `length` when the
    window starts before the video's first frame)."""
    return [float(t) for t in video.times[max(0, end - length + 1):end + 1]]


def dive_result(meta: Dict, path: str, source: Dict, times: Sequence[float], outputs: Dict,
                texts: Dict[str, str]) -> Dict:
    """The JSON-ready result of `score_dive` from the model's outputs for one window
    (`outputs`: `serving_default`'s arrays, batch of 1; `texts`: label -> what a head wrote);
    `source`: `source_fields` of the video; `times`: `window_times`."""
    length = int(meta["window_length"])
    result = {
        "video": path, **source,
        "window_start_time": float(times[0]), "window_end_time": float(times[-1]),
        "score": float(outputs["score"][0]),
        "sub_actions": _top_classes(outputs, 0, meta),
    }
    if "score_interval_low" in outputs:  # distribution heads (usdl, musdl): the 90% interval
        result["score_interval"] = [float(outputs["score_interval_low"][0]),
                                    float(outputs["score_interval_high"][0])]
        result["score_std"] = float(outputs["score_std"][0])
    if "score_distribution" in outputs:  # usdl [bins]; musdl [judges, bins]
        result["score_distribution"] = np.asarray(outputs["score_distribution"][0]).tolist()
    if "judge_scores" in outputs:
        result["judge_scores"] = [float(v) for v in outputs["judge_scores"][0]]
    kind = meta.get("clip_contribution")
    if kind and kind in outputs:
        result[kind] = [float(v) for v in outputs[kind][0]]
    if "exemplar_keys" in outputs:  # contrastive regression (CoRe): the voters
        keys = outputs["exemplar_keys"][0]
        used = [i for i, k in enumerate(keys) if k]
        result["exemplar_group"] = outputs["exemplar_group"][0].decode("utf-8")
        result["exemplars"] = [
            {"key": keys[i].decode("utf-8"), "score": float(outputs["exemplar_scores"][0][i]),
             "verdict": float(outputs["voter_scores"][0][i])} for i in used]
        result["exemplar_thumbnails"] = [outputs["exemplar_thumbnails_bytes"][0][i] for i in used]
    if "step_transitions" in outputs:  # procedure-aware heads (TSA): the dive's steps
        result["steps"] = dive_steps(outputs["step_transitions"][0],
                                     outputs["step_contributions"][0], meta, np.asarray(times),
                                     length)
    result.update(texts)
    warning = outside_training_range(result["score"], meta)
    if warning:
        warn(f"{path}: {warning}")
        result["warning"] = warning
    return result


def dive_steps(transitions, contributions, meta: Dict, times, length: int) -> List[Dict]:
    """The steps a procedure-aware model found in a window: per step its name, first and last
    window frame, their times (`times`: of the window's frames present in the video; frames
    repeated in front take the first time) and its share of the score difference to the
    exemplars (`step_contributions`). The transitions count the model's frames
    (`meta["step_frames"]`: the window frame of each)."""
    frames = meta.get("step_frames") or list(range(length))
    names = meta.get("step_names") or [f"step {i + 1}" for i in range(len(contributions))]
    first, second = (int(t) for t in transitions)
    bounds = [(0, first - 1), (first, second - 1), (second, len(frames) - 1)]
    pad = length - len(times)  # window frames before the video's first

    def time_of(window_frame):
        return float(times[max(0, window_frame - pad)])

    steps = []
    for name, (low, high), share in zip(names, bounds, contributions):
        high = max(low, high)
        start, stop = frames[min(low, len(frames) - 1)], frames[min(high, len(frames) - 1)]
        steps.append({"name": name, "first_frame": int(start), "last_frame": int(stop),
                      "start_time": time_of(start), "end_time": time_of(stop),
                      "contribution": float(share)})
    return steps


def scan_ends(num_frames: int, length: int, stride: int) -> range:
    """End indices of the scanned windows of a video of `num_frames` frames (at the model's
    rate): the first full window's, then every `stride` frames."""
    if stride <= 0:
        raise ConfigError(f"--scan_stride={stride} must be positive")
    return range(min(length, num_frames) - 1, num_frames, stride)


def scan_windows(scorer: Scorer, video: video_lib.Video, stride: int):
    """`(end index, window)` of every window position of `video` (`scan_ends`), in the form
    the scorer takes (each frame encoded once); lazily, so that a long video is never held as
    windows at once."""
    length = scorer.window_length
    ends = scan_ends(len(video.frames), length, stride)
    frames = scorer.model_frames(video.frames)  # each frame encoded once
    blank = _blank(scorer, frames)  # and the padding frame once
    for end in ends:
        yield end, window_ending_at(frames, end, length, blank)


def scan_place(video: video_lib.Video, end: int, length: int) -> Dict:
    """Where the scanned window ending at `end` lies: its start and end time, its end index."""
    return {"start_time": float(video.times[max(0, end - length + 1)]),
            "end_time": float(video.times[end]), "end_index": end}


def scan_row(place: Dict, outputs: Dict, index: int, meta: Dict) -> Dict:
    """The timeline row of a scanned window: its place (`scan_place`), score and top-1
    sub-actions (row `index` of the batch `outputs`)."""
    row = {**place, "score": float(outputs["score"][index])}
    for name, ranked in _top_classes(outputs, index, meta, top=1).items():
        row[name], row[f"{name}_probability"] = ranked[0]
    return row


def warn_far_windows(path: str, rows: List[Dict], meta: Dict):
    """One warning when scanned windows score far outside the training scores."""
    far = [row for row in rows if outside_training_range(row["score"], meta)]
    if far:
        worst = max(far, key=lambda row: abs(row["score"]))
        warn(f"{path}: {len(far)} of {len(rows)} windows score far outside the training "
             f"scores; e.g. at {worst['end_time']:.1f} s: "
             + outside_training_range(worst["score"], meta))


def scan(scorer: Scorer, path: str, stride: int, batch_size: int = 8,
         difficulty: Optional[float] = None, progress: bool = True,
         video: Optional[video_lib.Video] = None, action: Optional[int] = None,
         dive_type: Optional[str] = None) -> List[Dict]:
    """Scores every window position of a long video, ends `stride` frames apart (at the
    model's rate). Returns one row per window (`scan_row`)."""
    from tqdm import tqdm
    video = video or read_video(scorer, path, progress)
    length = scorer.window_length
    total = len(scan_ends(len(video.frames), length, stride))
    windows = scan_windows(scorer, video, stride)
    rows = []
    with tqdm(total=-(-total // batch_size), desc=f"scanning {os.path.basename(path)}",
              unit="batch", disable=not progress, leave=False) as bar:
        while True:
            batch = list(itertools.islice(windows, batch_size))
            if not batch:
                break
            ends = [end for end, _ in batch]
            stacked = np.stack([window for _, window in batch])
            difficulties = None if difficulty is None else np.full([len(batch)], difficulty)
            actions = None if action is None else np.full([len(batch)], action)
            outputs = scorer.score(stacked, difficulties, actions,
                                   None if dive_type is None else [dive_type] * len(batch))
            rows += [scan_row(scan_place(video, end, length), outputs, i, scorer.meta)
                     for i, end in enumerate(ends)]
            bar.update()
    warn_far_windows(path, rows, scorer.meta)
    return rows


# Result entries for plots, not for JSON.
PLOT_ONLY = ("window", "exemplar_thumbnails")


def json_ready(result: Dict) -> Dict:
    return {k: v for k, v in result.items() if k not in PLOT_ONLY}


# What a user's input can raise (a file that is not a video, a window outside it, a server's
# refusal): one line each. Anything else is a defect and keeps its traceback.
USER_ERRORS = (ConfigError, OSError, video_lib.VideoError)


def error_message(video: str, error: Exception) -> str:
    """The one line a user's error (`USER_ERRORS`) on `video` is reported with (after
    `error: `), naming the video."""
    return str(error) if video in str(error) else f"{video}: {error}"


def check_output_json(path: str):
    """Refuses an `--output_json` that could not be written, before any scoring is done."""
    if path and os.path.isdir(path):
        raise ConfigError(f"--output_json={path} is a folder: give a file name")
    folder = os.path.dirname(os.path.abspath(path)) if path else ""
    if folder and os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"--output_json={path}: {folder} is a file, not a folder")


class Results:
    """The results of the scoring CLIs (`aqa_tf.predict`, `aqa_tf.serving_client`): one entry
    per video, its result or its error. `--output_json` is rewritten after each video (into a
    temporary file that replaces it), so that a kill loses at most the video being scored."""

    def __init__(self, path: str):
        check_output_json(path)
        self.path = path
        self.entries: List[Dict] = []
        self.failures: List[str] = []
        self.defects = 0
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def add(self, entry: Dict):
        self.entries.append(entry)
        self._write()

    def fail(self, video: str, message: str):
        self.entries.append({"video": video, "error": message})
        self.failures.append(video)
        self._write()

    def _write(self):
        if not self.path:
            return
        partial = f"{self.path}.partial"
        with open(partial, "w") as f:
            json.dump(self.entries, f, indent=2)
        os.replace(partial, self.path)

    def score_each(self, videos: List[str], score: Callable[[str], Dict]) -> int:
        """Scores each video with `score` (which returns its JSON entry); a video that fails
        is reported in one line and recorded, and the next one is scored. Returns the exit
        status: 0, 2 when a video failed, 1 when a failure was a defect (its traceback is
        printed)."""
        for video in videos:
            try:
                entry = score(video)
            except USER_ERRORS as error:
                message = error_message(video, error)
                print(f"error: {message}", file=sys.stderr, flush=True)
                self.fail(video, message)
                continue
            except Exception as error:  # a defect: say so, and go on with the next video
                traceback.print_exc()
                self.defects += 1
                self.fail(video, f"internal error: {type(error).__name__}: {error}")
                continue
            self.add(entry)
        return self.finish(len(videos))

    def finish(self, total: int) -> int:
        if self.path:
            print(f"Results: {self.path}", flush=True)
        if not self.failures:
            return 0
        if total > 1:  # one video: its own error line says it all
            report_failures(self.failures, total)
        return 1 if self.defects else 2


def report_failures(failures: Sequence[str], total: int):
    """The last line of a scoring command some of whose videos failed."""
    print(f"error: {len(failures)} of {total} videos failed ({', '.join(failures)}); the "
          "others' results are kept", file=sys.stderr, flush=True)


@dataclasses.dataclass
class OutputPaths:
    """Where `aqa_tf.predict` writes the files of one video."""

    folder: str
    video: str

    def file(self, suffix: str) -> str:
        stem = os.path.splitext(os.path.basename(self.video))[0]
        return os.path.join(self.folder, f"{stem}_{suffix}")
