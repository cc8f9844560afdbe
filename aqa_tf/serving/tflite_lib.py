"""TFLite / LiteRT export of the score and sub-action model, and its interpreter as a `Scorer`.

A `.tflite` file holds the model from the window on: input `video` uint8 `[1, window_length,
stored_height, stored_width, 3]` (the frames of the dive at the records' size, ending at its last
frame) and, for models that multiply by it, `difficulty` float32 `[1]`; outputs as
`serving_default` (`score`, `<sub-action>_probabilities`, `clip_scores`/`clip_weights`). Center
crop, normalisation and clip cutting are inside; decoding, frame-rate resampling and resizing
are the host's (on a desktop `aqa_tf.predict --model X.tflite` does them as for a SavedModel).
The export metadata (`export_lib.metadata`, plus the quantisation) travels inside the file as
the flatbuffer metadata entry `aqa_tf`.

Only builtin ops: the model is traced inside `tflite_ops.builtin_graph()`, where each 3D pooling (no
TFLite kernel) runs as two exact 2D poolings and dilated Conv3D (MSCADC) as TFLite's own dilated
`CONV_3D`; convolutions, LSTM/GRU loops, Weight-Decider and the heads are builtins. The caption
decoder is not exported here (docs/tflite.md).

Quantisations (`QUANTIZATIONS`): `none` (float32), `float16` (weights stored as float16,
computed in float32), `dynamic_int8` (weights int8, activations quantised on the fly where a
kernel supports it), `int8` (weights and activations int8 from a representative dataset, with
float fallback for ops without an int8 kernel).
"""

import json
import os
import tempfile
from typing import Callable, Dict, Iterable, Optional

import numpy as np

QUANTIZATIONS = ("none", "float16", "dynamic_int8", "int8")


class ConversionError(RuntimeError):
    """The TFLite converter (or its int8 calibration) failed; the message says where."""
METADATA_NAME = "aqa_tf"
SIGNATURE = "serving_default"


def tflite_path(export_dir: str, name: str, version: int, quantize: str) -> str:
    """`<export_dir>/<name>/tflite/<name>_v<version>_<quantize>.tflite` (beside the
    SavedModel versions, which TF Serving finds by their numeric folder names)."""
    return os.path.join(export_dir, name, "tflite", f"{name}_v{version}_{quantize}.tflite")


def _saved_window_model(model, data_config, folder: str) -> list:
    """Writes the window function (`export_lib.window_fn`) at batch 1 as a SavedModel
    `serving_default` to `folder`, traced inside `tflite_ops.builtin_graph()`. Returns its
    input names. (The converter reads variables reliably from a SavedModel; from a concrete
    function of a Keras 3 model it lost them.) `export_lib.save_endpoints` traces it once:
    Keras's `ExportArchive` took twice as long (S3D at 1/8 width, 2-core AMD EPYC Zen 3: 33 s
    against 16 s for the whole conversion, the same flatbuffer outputs)."""
    import tensorflow as tf
    from aqa_tf import tasks
    from aqa_tf.serving import export_lib
    from aqa_tf.models import aqa_model
    from aqa_tf.models.layers import tflite_ops
    window = export_lib.window_fn(model, data_config)
    video_spec = tf.TensorSpec([1, data_config.window_length, data_config.stored_height,
                                data_config.stored_width, 3], tf.uint8, name="video")
    inference_inputs = aqa_model.inference_model(model).input
    specs = [video_spec]
    if "difficulty" in inference_inputs:
        specs.append(tf.TensorSpec([1], tf.float32, name="difficulty"))
    if tasks.ACTION_INPUT in inference_inputs:  # multi-action models (paper 003)
        specs.append(tf.TensorSpec([1], tf.int32, name=tasks.ACTION_INPUT))
    if any(h.compares_exemplars for h in aqa_model.owner(model).heads.values()):
        # CoRe: the bank's row (TFLite's builtin ops compare no strings; the client finds the
        # row of the dive type in the metadata's `exemplar_bank`).
        from aqa_tf.models.heads.core import EXEMPLAR_ROW_INPUT
        specs.append(tf.TensorSpec([1], tf.int32, name=EXEMPLAR_ROW_INPUT))
    names = [spec.name for spec in specs]

    def fn(*args):
        named = dict(zip(names, args))
        extra = {k: v for k, v in named.items() if k == "exemplar_row"}
        return window(named["video"], named.get("difficulty", tf.zeros([1])),
                      named.get(tasks.ACTION_INPUT), extra)

    with tflite_ops.builtin_graph():
        export_lib.save_endpoints({SIGNATURE: (fn, specs)}, folder)
    return names


def convert(model, data_config, quantize: str = "none",
            representative: Optional[Callable[[], Iterable[np.ndarray]]] = None) -> bytes:
    """The `.tflite` flatbuffer of `model` (score and sub-action heads) with its metadata.

    Args:
      model: an AQA model (`aqa_model.build_aqa_model`) in float32.
      data_config: its data configuration (window, stored size, crop, clips).
      quantize: one of `QUANTIZATIONS`.
      representative: for `int8`, a callable yielding uint8 windows `[1, window_length, h, w,
        3]` (e.g. `representative_windows`).
    """
    import tensorflow as tf
    from aqa_tf.serving import contract, export_lib
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantize!r}; known: {', '.join(QUANTIZATIONS)}")
    with tempfile.TemporaryDirectory() as folder:
        inputs = _saved_window_model(model, data_config, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, [SIGNATURE])
        _configure(converter, quantize, representative, inputs)
        try:
            blob = converter.convert()
        except Exception as error:  # ConverterError, or the calibrator's RuntimeError
            raise ConversionError(_first_error_line(error)) from error
    meta = export_lib.metadata(model, data_config)
    bank = export_lib.exemplar_bank_metadata(model)
    if bank:
        meta["exemplar_bank"] = bank
    meta["signatures"] = [SIGNATURE]
    meta[contract.HEAD_SIGNATURES] = {}  # the flatbuffer holds the window function only
    meta["tflite"] = {"quantize": quantize, "batch_size": 1, "inputs": inputs}
    return with_metadata(blob, meta)


def _configure(converter, quantize, representative, inputs):
    import tensorflow as tf
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative is None:
            raise ValueError("int8 quantisation needs a representative dataset")

        def dataset():
            for window in representative():
                extra = {"difficulty": np.full([1], 2.5, np.float32), "action": np.ones([1],
                                                                                 np.int32)}
                yield {"video": window, **{k: v for k, v in extra.items() if k in inputs}}

        converter.representative_dataset = dataset


def _first_error_line(error: Exception) -> str:
    """The converter's errors are pages of MLIR locations: keep what they say (the message after
    each location, and the `TF Select ops:` summary with the op's shapes)."""
    kept = []
    for line in str(error).splitlines():
        line = line.strip()
        if "error:" in line or "):" in line:
            line = line.rsplit("):", 1)[-1].strip() if "):" in line else line
        if line and not line.startswith(("loc(", "%", "<unknown>")) and line not in kept:
            kept.append(line)
    return " ".join(kept)[:800] or type(error).__name__


def with_metadata(blob: bytes, meta: Dict) -> bytes:
    """`blob` with `meta` (JSON) as its flatbuffer metadata entry `aqa_tf`."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(blob))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_metadata(path: str) -> Optional[Dict]:
    """The `aqa_tf` metadata of a `.tflite` file, or None (not exported by aqa-tf)."""
    from ai_edge_litert import schema_py_generated as schema
    with open(path, "rb") as f:
        data = bytearray(f.read())
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode("utf-8") == METADATA_NAME:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return None


class LiteModel:
    """A `.tflite` export on the LiteRT interpreter: `run(window, difficulty)` for one window."""

    def __init__(self, path: str, num_threads: Optional[int] = None):
        from ai_edge_litert.interpreter import Interpreter
        self.path = path
        self.interpreter = Interpreter(model_path=path, num_threads=num_threads or os.cpu_count())
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.input_names = set(self.runner.get_input_details())

    def run(self, window: np.ndarray, difficulty: float = 0.0,
            action: Optional[int] = None, exemplar_row: int = 0) -> Dict[str, np.ndarray]:
        """uint8 `[window_length, h, w, 3]` -> outputs with a batch axis of 1 (`action`: the
        action index, for multi-action models; `exemplar_row`: the bank row, for CoRe)."""
        inputs = {"video": window[None]}
        if "difficulty" in self.input_names:
            inputs["difficulty"] = np.array([difficulty], np.float32)
        if "action" in self.input_names:
            inputs["action"] = np.array([action], np.int32)
        if "exemplar_row" in self.input_names:
            inputs["exemplar_row"] = np.array([exemplar_row], np.int32)
        return self.runner(**inputs)


def scorer(path: str, num_threads: Optional[int] = None):
    """A `scorer.Scorer` on a `.tflite` export. JPEG windows are decoded (and resized
    if needed) by TensorFlow as the SavedModel's `serving_jpeg` does, so that both give the
    same frames to the model."""
    from aqa_tf.config import ConfigError
    from aqa_tf.serving import contract
    from aqa_tf.serving.scorer import Scorer, window_ending_at
    if not os.path.isfile(path):
        raise ConfigError(f"model {path}: no such file")
    meta = read_metadata(path)
    if meta is None:
        raise ConfigError(f"model {path}: no aqa_tf metadata (not written by "
                          "`python -m aqa_tf.export --format=tflite`)")
    lite = LiteModel(path, num_threads)
    decode = _jpeg_decoder(int(meta["stored_height"]), int(meta["stored_width"]))

    length = int(meta["window_length"])
    black = (np.zeros((int(meta["stored_height"]), int(meta["stored_width"]), 3), np.uint8)
             if meta.get("pad_mode") == "zeros" else None)

    bank = meta.get("exemplar_bank")

    def serve(windows, difficulty, action=None, dive_number=None):
        if windows.dtype == object:
            windows = decode(windows)
        if windows.shape[1] != length:  # pad (or cut) as the SavedModel's signatures do
            windows = np.stack([window_ending_at(w, len(w) - 1, length, black) for w in windows])
        actions = [None] * len(windows) if action is None else action
        dives = [None] * len(windows) if dive_number is None else [
            d.decode() if isinstance(d, bytes) else d for d in dive_number]
        rows = [contract.exemplar_row(bank, meta["exemplar_match"], n, d) if bank else 0
                for n, d in zip(dives, difficulty)]
        outputs = [lite.run(w, d, a, r) for w, d, a, r in zip(windows, difficulty, actions, rows)]
        result = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
        if bank:  # the strings of the rows used, as the SavedModel returns them
            width = result["voter_scores"].shape[1]
            keys = [bank["keys"][r] + [""] * (width - len(bank["keys"][r])) for r in rows]
            result["exemplar_keys"] = np.asarray([[k.encode() for k in ks] for ks in keys],
                                                 object)
            result["exemplar_group"] = np.asarray([bank["values"][r].encode() for r in rows],
                                                  object)
            result["exemplar_thumbnails_bytes"] = np.full((len(rows), width), b"", object)
        return result

    return Scorer(serve, None, meta, f"TFLite {path} ({meta['tflite']['quantize']})")


def _jpeg_decoder(height: int, width: int):
    """JPEG windows `[batch, frames]` (object array) -> uint8 `[batch, frames, height, width,
    3]`, decoded and resized by the SavedModel's own graph functions."""
    import tensorflow as tf
    from aqa_tf.serving import export_lib
    from aqa_tf.config import DataConfig
    config = DataConfig(stored_height=height, stored_width=width)
    decode = tf.function(lambda jpegs: export_lib.decode_jpeg_frames(jpegs, config))

    def decode_windows(windows: np.ndarray) -> np.ndarray:
        frames = decode(tf.constant(windows.reshape(-1).tolist(), tf.string)).numpy()
        return frames.reshape(windows.shape + (height, width, 3))

    return decode_windows


def representative_windows(data_config, split: str = "train", count: int = 32):
    """A callable yielding `count` uint8 windows of `split` (the training records by default):
    the int8 calibration data."""
    def generate():
        from aqa_tf.serving import export_lib
        from aqa_tf.data import pipeline
        for element in pipeline.serving_windows(data_config, split).take(count):
            # Padded to the window as the SavedModel's signatures pad.
            yield export_lib.decode_jpeg_video(element["frames"][None], data_config).numpy()
    return generate


def latency_ms(lite: LiteModel, window: np.ndarray, warmup: int, steps: int) -> float:
    """Mean milliseconds of one `run` (batch 1) on `window`."""
    import time
    for _ in range(warmup):
        lite.run(window)
    start = time.perf_counter()
    for _ in range(steps):
        lite.run(window)
    return 1000.0 * (time.perf_counter() - start) / steps


def parity(reference, candidates: Dict, windows: Iterable[Dict],
           progress: bool = True) -> Dict[str, Dict]:
    """Scores the same client windows with `reference` and each candidate (`scorer.Scorer`s)
    and compares them.

    Args:
      reference: the Scorer the others are compared to (the SavedModel).
      candidates: name -> Scorer.
      windows: elements of `pipeline.serving_windows` as numpy (`frames`, `difficulty`,
        `score`).

    Returns:
      name -> {"max_abs_score_diff", "spearman_vs_reference", "top1_agreement" (fraction of
      windows whose top-1 class agrees on every sub-action head), "spearman_vs_judges",
      "samples"}; the reference itself under "reference". Without windows every figure
      but "samples" (0) is None.
    """
    from scipy import stats
    from tqdm import tqdm
    names = ["reference"] + list(candidates)
    scorers = [reference] + list(candidates.values())
    scores = {name: [] for name in names}
    top1 = {name: [] for name in names}
    judges = []
    for element in tqdm(windows, desc="parity", unit="window", disable=not progress):
        frames = np.asarray(element["frames"], dtype=object)[None]
        difficulty = np.array([element["difficulty"]], np.float32)
        action = np.array([element["action"]], np.int32)
        judges.append(float(element["score"]))
        for name, scorer in zip(names, scorers):
            out = scorer.score(frames, difficulty, action)
            scores[name].append(float(out["score"][0]))
            top1[name].append(tuple(int(np.argmax(v[0])) for k, v in sorted(out.items())
                                    if k.endswith("_probabilities")))
    result = {}
    ref = np.array(scores["reference"])
    for name in names:
        ours = np.array(scores[name])
        result[name] = {
            "samples": len(ours),
            "max_abs_score_diff": float(np.abs(ours - ref).max()) if len(ours) else None,
            "spearman_vs_reference": float(stats.spearmanr(ours, ref)[0]) if len(ours) > 1
            else None,
            "top1_agreement": float(np.mean([a == b for a, b in zip(
                top1[name], top1["reference"])])) if len(ours) else None,
            "spearman_vs_judges": float(stats.spearmanr(ours, judges)[0]) if len(ours) > 1
            else None,
        }
    return result
