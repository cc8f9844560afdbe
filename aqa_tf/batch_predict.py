r"""Scores many video files with an exported model, as one Apache Beam pipeline.

  python -m aqa_tf.batch_predict --model saved_models/quickstart/1 \
      --inputs 'videos/*.mp4' --output results/
  python -m aqa_tf.batch_predict ... --runner=FlinkRunner \
      --beam_pipeline_options='--flink_master=HOST:8081 --parallelism=16'

Each video is read as `aqa_tf.predict` reads it (resampled to the model's frame rate, resized
to its stored size) and cut to the model's window ending at its last frame (`--end_time`: at
that time instead), or, with `--scan`, to a window every `--scan_stride` frames (a broadcast's
timeline, as `aqa_tf.predict --scan` writes it); the windows travel as the JPEG frames of the
export's `serving_jpeg` signature, and Beam's `RunInference` scores them in batches with the
SavedModel (`SavedModelHandler`). The output folder gets `results.jsonl`, one JSON line per
video: the entry `aqa_tf.predict --output_json` writes for it (score, sub-actions, per-clip
contributions, commentary, ...), or `{"video": ..., "error": ...}` for a file that could not be
scored, which never ends the job; and `summary.csv` with the table printed at the end (for a
scan, its best window). What a model needs besides the frames (the degree of difficulty,
the dive type of CoRe's exemplars, the action of a multi-action model) comes per video from the
`--labels` CSV file (`read_labels`).

`--runner=local` scores in this process without Beam (what `aqa_tf.predict` does, one video
after the other); the DirectRunner, the default where Beam is installed
(`pip install -r requirements-beam.txt`), runs `--num_workers` processes on this machine.
Another runner's workers must see the model folder, the videos and the output folder at the
same paths (a shared file system), with this project and its requirements installed.
"""

import csv
import functools
import glob
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from absl import flags

from aqa_tf import beam_lib
from aqa_tf.config import BatchScoringOptions, ConfigError, PredictOptions, ScoringOptions

RESULTS, SUMMARY = "results.jsonl", "summary.csv"
ERRORS = "errors"  # tag of the side output of the videos that could not be read


def define_flags():
    """The exported model and the scan (`PredictOptions`), the window's end and the difficulty
    (`ScoringOptions`), and the inputs, their labels, output and runner
    (`BatchScoringOptions`)."""
    from aqa_tf import flag_defs
    flag_defs.define_config_flags(PredictOptions, only=("model", "scan", "scan_stride"))
    flag_defs.define_config_flags(ScoringOptions, only=("end_time", "difficulty"))
    flag_defs.define_config_flags(BatchScoringOptions)


def input_videos(patterns: List[str]) -> List[str]:
    """The files `patterns` (paths or globs) name, in order, each once.

    Raises:
      ConfigError: no pattern, or a pattern that names no file.
    """
    if not patterns:
        raise ConfigError("--inputs: give the videos (paths or glob patterns, comma-separated)")
    videos = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else (
            [pattern] if os.path.exists(pattern) else [])
        if not found:
            raise ConfigError(f"--inputs: {pattern}: no such file")
        videos += [v for v in found if v not in videos]
    return videos


def model_metadata(model: str) -> Dict:
    """The export's metadata (`assets.extra/aqa_tf.json`), read without TensorFlow: what the
    readers need (frame rate, stored size, window, JPEG quality), and the refusals that
    `aqa_tf.predict` makes before any video is read.

    Raises:
      ConfigError: not an export, or a model that needs an input this command does not give.
    """
    from aqa_tf.serving import contract
    if not model:
        raise ConfigError("--model: give the exported model (<export_dir>/<name>/<version>)")
    if model.endswith(".tflite"):
        raise ConfigError(f"--model={model}: batch scoring takes a SavedModel export "
                          "(<export_dir>/<name>/<version>), not a .tflite file")
    path = os.path.join(model, contract.ASSETS_EXTRA, contract.METADATA_FILE)
    if not os.path.isdir(model):
        raise ConfigError(f"--model={model}: no such folder")
    if not os.path.exists(path):
        raise ConfigError(f"--model={model}: no {contract.ASSETS_EXTRA}/"
                          f"{contract.METADATA_FILE} (not an aqa-tf export)")
    with open(path) as f:
        return json.load(f)


LABEL_COLUMNS = ("difficulty", "dive_type", "action")


def read_labels(path: str, videos: List[str]) -> Dict[str, Dict]:
    """`--labels`: video -> its labels (`LABEL_COLUMNS`, those the file gives), from a CSV
    file whose `video` column names each video as --inputs does or by its file name.

    Raises:
      ConfigError: a missing file, no `video` column, an unknown column, a difficulty that is
        not a positive number, a row naming no input video or one named twice.
    """
    if not path:
        return {}
    if not os.path.isfile(path):
        raise ConfigError(f"--labels={path}: no such file")
    by_name = {}
    for video in videos:
        by_name.setdefault(video, video)
        by_name.setdefault(os.path.basename(video), video)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "video" not in columns:
            raise ConfigError(f"--labels={path}: no `video` column (columns: "
                              f"{', '.join(columns) or 'none'})")
        unknown = [c for c in columns if c != "video" and c not in LABEL_COLUMNS]
        if unknown:
            raise ConfigError(f"--labels={path}: unknown column {unknown[0]!r} (known: video, "
                              f"{', '.join(LABEL_COLUMNS)})")
        labels = {}
        for row_number, row in enumerate(reader, start=2):
            where = f"--labels={path} line {row_number}"
            video = by_name.get(row["video"])
            if video is None:
                raise ConfigError(f"{where}: {row['video']!r} is not one of the --inputs")
            if video in labels:
                raise ConfigError(f"{where}: {row['video']!r} is labelled twice")
            entry = {k: row[k].strip() for k in LABEL_COLUMNS if (row.get(k) or "").strip()}
            if "difficulty" in entry:
                try:
                    entry["difficulty"] = float(entry["difficulty"])
                except ValueError:
                    entry["difficulty"] = float("nan")
                if not entry["difficulty"] > 0:
                    raise ConfigError(f"{where}: difficulty {row['difficulty']!r} is not a "
                                      "positive number")
            labels[video] = entry
    return labels


def video_inputs(meta: Dict, videos: List[str], labels: Dict[str, Dict],
                 difficulty: Optional[float]) -> Dict[str, Dict]:
    """Video -> what the model takes besides the frames: `difficulty` (the labels', else
    --difficulty), `action` (the model's index of the labelled action) and `dive_type`, each
    None where the model does not use it.

    Raises:
      ConfigError: a video without what the model needs (named, with the option that gives
        it), an action the model does not know.
    """
    from aqa_tf import flag_defs
    needs = {"difficulty": bool(meta.get("uses_difficulty")),
             "dive_type": meta.get("exemplar_match") == "dive_number",
             "action": bool(meta.get("uses_action"))}
    what = {"difficulty": "the degree of difficulty (--difficulty, or a `difficulty` column "
                          "in --labels)",
            "dive_type": "its dive type (a `dive_type` column in --labels: this model "
                         "compares the dive with exemplars of its type)",
            "action": "its action (an `action` column in --labels: "
                      + ", ".join(meta.get("actions", [])) + ")"}
    inputs = {}
    for video in videos:
        given = dict(labels.get(video, {}))
        given.setdefault("difficulty", difficulty)
        inputs[video] = {k: given.get(k) if needs[k] else None for k in needs}
    for name, needed in needs.items():
        missing = [v for v in videos if needed and inputs[v][name] is None]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ConfigError(f"this model needs {what[name]}; none for "
                              f"{', '.join(missing[:3])}{more}")
    for video, entry in inputs.items():
        if entry["action"] is not None:
            if entry["action"] not in meta.get("actions", []):
                raise ConfigError(f"--labels: {video}: action {entry['action']!r} is not one "
                                  f"of the model's ({', '.join(meta.get('actions', []))})")
            entry["action"] = flag_defs.scoring_action(meta, entry["action"])
    return inputs


def _reader(meta: Dict):
    """A `Scorer` that only knows the export's metadata: what `predict_lib.dive_window` and
    `Scorer.model_frames` need, without loading the model."""
    from aqa_tf.serving.scorer import Scorer
    return Scorer(None, None, meta, "metadata")


def read_window(path: str, meta: Dict, end_time: Optional[float]):
    """`(key, model window)` of the video `path` (the JPEG frames of its window), where `key`
    is the JSON of what its result needs besides the model's outputs; raises the readers'
    errors (`predict_lib.USER_ERRORS`)."""
    from aqa_tf.serving import predict_lib
    reader = _reader(meta)
    video, end, window = predict_lib.dive_window(reader, path, end_time, None, progress=False)
    info = {"video": path, "source": predict_lib.source_fields(video),
            "times": predict_lib.window_times(video, end, reader.window_length)}
    return json.dumps(info), reader.model_frames(window)


def read_scan(path: str, meta: Dict, stride: int):
    """`(key, model window)` of every scanned window of the video `path`
    (`predict_lib.scan_windows`), where `key` is the JSON of the video and the window's place
    (`predict_lib.scan_place`), as a generator; raises the readers' errors
    (`predict_lib.USER_ERRORS`) here, before the first window (the video is read at the call)."""
    from aqa_tf.serving import predict_lib
    reader = _reader(meta)
    video = predict_lib.read_video(reader, path, progress=False)
    return ((json.dumps({"video": path, "place": predict_lib.scan_place(
        video, end, reader.window_length)}), window)
        for end, window in predict_lib.scan_windows(reader, video, stride))


def scan_row(info_json: str, outputs: Dict, meta: Dict) -> Tuple[str, Dict]:
    """`(video, timeline row)` of one scanned window (`predict_lib.scan_row`)."""
    from aqa_tf.serving import predict_lib
    info = json.loads(info_json)
    return info["video"], predict_lib.scan_row(info["place"], outputs, 0, meta)


def timeline_line(video: str, rows) -> str:
    """The JSON line of a scanned video: `{"video", "timeline"}`, as `aqa_tf.predict --scan
    --output_json` writes it, its rows in time order."""
    return json.dumps({"video": video,
                       "timeline": sorted(rows, key=lambda row: row["end_index"])})


def result_line(info_json: str, outputs: Dict, texts: Dict, meta: Dict) -> str:
    """The JSON line of one video: `predict_lib.dive_result` of its window's outputs."""
    from aqa_tf.serving import predict_lib
    info = json.loads(info_json)
    result = predict_lib.dive_result(meta, info["video"], info["source"], info["times"],
                                     outputs, texts)
    result.pop("exemplar_thumbnails", None)
    return json.dumps(predict_lib.json_ready(result))


def error_line(path: str, error: Exception) -> str:
    from aqa_tf.serving import predict_lib
    return json.dumps({"video": path, "error": predict_lib.error_message(path, error)})


def score_windows(scorer, windows: List[np.ndarray], inputs: List[Dict]):
    """Per window: (outputs of `serving_default` as a batch of 1, texts of the heads);
    `inputs`: per window, its video's `video_inputs`."""
    batch = np.stack(windows)
    difficulties = np.array([i["difficulty"] or 0.0 for i in inputs], np.float32)
    actions = (np.array([i["action"] for i in inputs], np.int32)
               if inputs[0]["action"] is not None else None)
    dive_types = ([i["dive_type"] for i in inputs]
                  if inputs[0]["dive_type"] is not None else None)
    outputs = scorer.score(batch, difficulties, actions, dive_types)
    texts = scorer.texts(batch)
    return [({k: v[i:i + 1] for k, v in outputs.items()},
             {label: values[i] for label, values in texts.items()})
            for i in range(len(batch))]


@functools.lru_cache(maxsize=None)
def _beam_classes():
    """The `DoFn` and the `ModelHandler` (defined once Beam is imported: Beam is optional)."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class ReadWindowFn(beam.DoFn):
        """Video path -> `(key, JPEG window)`; a video that cannot be read -> its error line on
        the `ERRORS` output."""

        def __init__(self, meta: Dict, end_time: Optional[float], scan_stride: int,
                     inputs: Dict[str, Dict]):
            super().__init__()
            self._meta, self._end_time, self._stride = meta, end_time, scan_stride
            self._inputs = inputs

        def process(self, path: str):
            from aqa_tf.serving import predict_lib
            try:
                if self._stride:  # every scanned window, each its own element
                    windows = read_scan(path, self._meta, self._stride)
                else:
                    windows = [read_window(path, self._meta, self._end_time)]
            except predict_lib.USER_ERRORS as error:
                yield beam.pvalue.TaggedOutput(ERRORS, error_line(path, error))
                return
            for key, window in windows:  # each window with its video's other inputs
                yield key, (window, self._inputs[path])

    class SavedModelHandler(ModelHandler):
        """RunInference's handler of an aqa-tf SavedModel: loads it with the project's
        `Scorer` (its `serving_jpeg` signature for JPEG windows, and the heads' text
        signatures) and scores a batch of windows in one call. (Beam's own
        `TFModelHandlerTensor` loads with `tf.keras.models.load_model`, which Keras 3 cannot
        do for a SavedModel of signatures.)"""

        def __init__(self, model: str, max_batch_size: int):
            super().__init__()
            self._model, self._max_batch_size = model, max_batch_size

        def load_model(self):
            from aqa_tf.serving import predict_lib
            return predict_lib.open_scorer(self._model)

        def run_inference(self, batch, model, inference_args=None):
            scored = score_windows(model, [window for window, _ in batch],
                                   [inputs for _, inputs in batch])
            return [PredictionResult(None, item) for item in scored]

        def get_num_bytes(self, batch) -> int:
            return sum(len(frame) for window, _ in batch for frame in window)

        def batch_elements_kwargs(self):
            return {"max_batch_size": self._max_batch_size}

    return ReadWindowFn, SavedModelHandler


def _format(element, meta: Dict) -> str:
    key, prediction = element
    outputs, texts = prediction.inference
    return result_line(key, outputs, texts, meta)


def _format_row(element, meta: Dict) -> Tuple[str, Dict]:  # (a key-value pair for Beam)
    key, prediction = element
    outputs, _ = prediction.inference
    return scan_row(key, outputs, meta)


def run_beam(videos: List[str], model: str, meta: Dict, output: str, end_time,
             inputs: Dict[str, Dict], batch_size: int, runner: str, num_workers: int = 0,
             extra: str = "", scan_stride: int = 0) -> str:
    """Scores `videos` (with their `video_inputs`) in one Beam pipeline (with `scan_stride`,
    every scanned window, the rows grouped back by video); returns the results file (its
    lines unsorted)."""
    options = beam_lib.pipeline_options(runner, num_workers, extra)
    import apache_beam as beam
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
    read_fn, handler = _beam_classes()
    pipeline = beam_lib.make_pipeline(runner, options)
    with beam_lib.quiet_local_runner(runner), pipeline:
        windows = (pipeline
                   | "list videos" >> beam.Create(videos)
                   | "read windows" >> beam.ParDo(read_fn(meta, end_time, scan_stride, inputs))
                   .with_outputs(ERRORS, main="windows"))
        scored = (windows.windows
                  | "score" >> RunInference(KeyedModelHandler(handler(model, batch_size))))
        if scan_stride:
            scored = (scored
                      | "timeline rows" >> beam.Map(_format_row, meta=meta)
                      | "by video" >> beam.GroupByKey()
                      | "timeline lines" >> beam.MapTuple(timeline_line))
        else:
            scored = scored | "result lines" >> beam.Map(_format, meta=meta)
        _ = ((scored, windows[ERRORS]) | "all lines" >> beam.Flatten()
             | "write" >> beam.io.WriteToText(os.path.join(output, RESULTS),
                                              shard_name_template="", num_shards=1))
    return os.path.join(output, RESULTS)


def run_local(videos: List[str], model: str, meta: Dict, output: str, end_time,
              inputs: Dict[str, Dict], progress=print, scan_stride: int = 0,
              batch_size: int = 8) -> str:
    """Scores `videos` one after the other in this process (with `scan_stride`, as
    `aqa_tf.predict --scan` does); each line is written (and flushed) as its video is done,
    so that a kill loses at most the video in progress."""
    from aqa_tf.serving import predict_lib
    scorer = predict_lib.open_scorer(model)
    path = os.path.join(output, RESULTS)
    with open(path, "w") as f:
        for video in videos:
            try:
                given = inputs[video]
                if scan_stride:
                    rows = predict_lib.scan(scorer, video, scan_stride, batch_size,
                                            given["difficulty"], progress=False,
                                            action=given["action"],
                                            dive_type=given["dive_type"])
                else:
                    key, window = read_window(video, meta, end_time)
            except predict_lib.USER_ERRORS as error:
                line = error_line(video, error)
            else:
                if scan_stride:
                    line = timeline_line(video, rows)
                else:
                    (outputs, texts), = score_windows(scorer, [window], [given])
                    line = result_line(key, outputs, texts, meta)
            f.write(line + "\n")
            f.flush()
            progress(f"{video}: done")
    return path


def summarize(path: str, videos: List[str], summary_path: str) -> List[Dict]:
    """Reads the results file, rewrites it in the order of `videos`, writes the summary table
    (CSV) and returns the entries."""
    with open(path) as f:
        entries = {e["video"]: e for e in map(json.loads, f)}
    ordered = [entries[v] for v in videos if v in entries]
    partial = path + ".partial"
    with open(partial, "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in ordered)
    os.replace(partial, path)
    with open(summary_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "score", "window_start_time", "window_end_time",
                         "sub_actions", "error"])
        for e in ordered:
            best = summary_row(e)
            writer.writerow([e["video"], *(f"{best[k]:.4f}" if best else "" for k in (
                "score", "window_start_time", "window_end_time")),
                best.get("sub_actions", ""), e.get("error", "")])
    return ordered


def summary_row(entry: Dict) -> Dict:
    """A video's line of the summary: its window's score, times and top sub-actions (a scan's
    best window); empty for an error."""
    if "error" in entry:
        return {}
    if "timeline" in entry:
        best = max(entry["timeline"], key=lambda row: row["score"])
        names = [k for k in best if f"{k}_probability" in best]
        return {"score": best["score"], "window_start_time": best["start_time"],
                "window_end_time": best["end_time"],
                "sub_actions": "; ".join(f"{name} {best[name]}" for name in names)}
    return {"score": entry["score"], "window_start_time": entry["window_start_time"],
            "window_end_time": entry["window_end_time"],
            "sub_actions": "; ".join(f"{name} {ranked[0][0]}" for name, ranked in
                                     entry.get("sub_actions", {}).items())}


def main(argv):
    from aqa_tf import flag_defs
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments {' '.join(argv[1:])}: give the videos with "
                          "--inputs")
    options = flag_defs.config_from_flags(BatchScoringOptions)
    scoring = flag_defs.config_from_flags(ScoringOptions)
    predict_options = flag_defs.config_from_flags(PredictOptions)
    model = predict_options.model
    if not options.output:
        raise ConfigError("--output: give the output folder")
    runner = beam_lib.resolve_runner(options.runner, flags.FLAGS["runner"].present, "scoring")
    beam_lib.check_runner(runner, options.num_workers, options.beam_pipeline_options)
    meta = model_metadata(model)
    stride = 0
    if predict_options.scan:
        if scoring.end_time is not None:
            raise ConfigError("--end_time: a scan scores every window; give one or the other")
        stride = predict_options.scan_stride or int(meta["clip_length"])
        if stride <= 0:
            raise ConfigError(f"--scan_stride={stride} must be positive")
    videos = input_videos(list(options.inputs))
    inputs = video_inputs(meta, videos, read_labels(options.labels, videos), scoring.difficulty)
    if os.path.exists(options.output) and not os.path.isdir(options.output):
        raise ConfigError(f"--output={options.output} is a file, not a folder")
    os.makedirs(options.output, exist_ok=True)
    print(f"Scoring {len(videos)} videos with {model} on --runner={runner}", flush=True)
    if runner == beam_lib.LOCAL:
        path = run_local(videos, model, meta, options.output, scoring.end_time, inputs,
                         scan_stride=stride, batch_size=options.inference_batch_size)
    else:
        path = run_beam(videos, model, meta, options.output, scoring.end_time, inputs,
                        options.inference_batch_size, runner, options.num_workers,
                        options.beam_pipeline_options, stride)
    summary = os.path.join(options.output, SUMMARY)
    entries = summarize(path, videos, summary)
    width = max(len(e["video"]) for e in entries) if entries else 5
    print(f"{'video':<{width}}  {'score':>8}  window (s)" + ("  (best of the scan)" if stride
                                                             else ""))
    failed = []
    for e in entries:
        if "error" in e:
            failed.append(e["video"])
            print(f"{e['video']:<{width}}  {'error':>8}  {e['error']}")
            continue
        if stride and runner != beam_lib.LOCAL:  # (the local scan warned as it went)
            from aqa_tf.serving import predict_lib
            predict_lib.warn_far_windows(e["video"], e["timeline"], meta)
        best = summary_row(e)
        print(f"{e['video']:<{width}}  {best['score']:8.2f}  "
              f"{best['window_start_time']:.2f}-{best['window_end_time']:.2f}")
    print(f"Results: {path}\nSummary: {summary}", flush=True)
    if failed:
        from aqa_tf.serving import predict_lib
        predict_lib.report_failures(failed, len(videos))
        return 2
    return 0


if __name__ == "__main__":
    from aqa_tf import flag_defs
    define_flags()
    flag_defs.run(main)
