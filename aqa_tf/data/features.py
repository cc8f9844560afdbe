"""The TFRecord schema of aqa-tf: the one place record keys are defined.

Every writer (`aqa_tf.data.synthetic`, `tfrecords_tools.mtl_aqa`, `.aqa7`, `.jigsaws`,
`.finediving`) and every
reader (`aqa_tf.data.pipeline`, `tfrecords_tools.inspect`) imports this module.

Schema version 2. One `tf.train.SequenceExample` per sample:

Context (per sample):
  schema_version   int64    `SCHEMA_VERSION`.
  sample_key       bytes    e.g. b"01_001" (`<event:02d>_<sample:03d>` for MTL-AQA; JIGSAWS:
                            the trial, b"Suturing_B001"; FineDiving: `<video_name>_<instance>`,
                            b"FINADivingWorldCup2021_Men3m_final_r1_8").
  action_id        int64    action class for multi-action datasets (AQA-7: 1..6; JIGSAWS: the
                            task, 1..3, `aqa_tf.data.jigsaws.TASK_IDS`); 0 for MTL-AQA.
  action_name      bytes    its name (AQA-7: b"diving", b"gym_vault", ...; JIGSAWS:
                            b"Suturing", ...); optional, b"".
  num_frames       int64    length of the `frames` feature list.
  height, width    int64    size of every stored frame, pixels.
  start_frame      int64    annotated first frame of the action in the source video (1-based),
                            or -1.
  end_frame        int64    annotated last frame of the action in the source video (1-based), or -1.
  end_index        int64    index into `frames` (0-based) of the frame at `end_frame`; the stored
                            frames may extend past it by the temporal-jitter margin.
  final_score      float    judges' score (JIGSAWS: the total GRS, 6..30); `MISSING_FLOAT` if
                            unknown.
  difficulty       float    degree of difficulty; optional, `MISSING_FLOAT` if unknown.
  position, armstand, rotation_type, ss_no, tw_no
                   int64    dive sub-action classes; optional, `MISSING_INT` if unknown.
  caption          int64[]  caption token ids `<sos> w1 ... wn <eos>` (full length, uncut);
                            empty if the sample has no caption.
  judge_scores     float[]  the judges' execution awards (MTL-AQA: 7, 0..10 in steps of 0.5;
                            JIGSAWS: the 6 GRS elements, each 1..5, whose sum is
                            `final_score`); optional, absent (read as empty) when unknown.
  dive_number      bytes    FINA dive code as the annotations give it, e.g. b"407C"
                            (FineDiving: its `action_type`, b"207c"); optional, b"" when
                            unknown. Not a model input (for later methods).
  frame_step_labels
                   int64[]  step (sub-action) label of every frame of the trimmed action, as
                            the annotation gives it (FineDiving's `frames_labels`, full length);
                            optional, absent (read as empty) when unknown.
  step_transitions int64[]  frames, within the trimmed action, where one step ends and the next
                            begins (FineDiving's `steps_transit_frames`, as given); optional.
  step_label_ids, step_label_names
                   int64[], bytes[]
                            parallel lists: the step labels of the sample and their names
                            (FineDiving's `sub-action_types`), sorted by label; optional.
  frame_positions  int64[]  per stored frame, its index (0-based) in the trimmed action, so
                            that the label of stored frame i is
                            `frame_step_labels[frame_positions[i]]`; optional.

Feature lists (per frame, in temporal order):
  frames           bytes    one JPEG-encoded RGB frame per entry.

Optional keys are written only when a sample has them, and read as `MISSING_INT` (-1) /
`MISSING_FLOAT` (-1.0) / b"" / an empty list when absent: datasets without sub-actions or
difficulty (AQA-7; JIGSAWS; FineDiving, whose steps are not MTL-AQA's sub-action classes) write
no fake labels, and losses mask the missing ones out. Version 1
records (which wrote every key, `MISSING_*` for unknown values) read the same way.
`judge_scores` and `dive_number`, later the step keys (`frame_step_labels` .. `frame_positions`,
`STEP_KEYS`) were added to version 2 as optional keys: records written before them read as
having none, and readers that predate them ignore them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Dict, Sequence

import numpy as np

from aqa_tf import tasks

if TYPE_CHECKING:  # TensorFlow is imported where records are made or read: the converters'
    import tensorflow as tf  # command lines are parsed, and refused, without it (~8 s)

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)

MISSING_INT = -1
MISSING_FLOAT = -1.0

# Context keys.
SCHEMA_VERSION_KEY = "schema_version"
SAMPLE_KEY = "sample_key"
ACTION_ID = "action_id"
ACTION_NAME = "action_name"
NUM_FRAMES = "num_frames"
HEIGHT = "height"
WIDTH = "width"
START_FRAME = "start_frame"
END_FRAME = "end_frame"
END_INDEX = "end_index"
FINAL_SCORE = "final_score"
DIFFICULTY = "difficulty"
POSITION = "position"
ARMSTAND = "armstand"
ROTATION_TYPE = "rotation_type"
SS_NO = "ss_no"
TW_NO = "tw_no"
CAPTION = "caption"
JUDGE_SCORES = "judge_scores"
DIVE_NUMBER = "dive_number"
FRAME_STEP_LABELS = "frame_step_labels"
STEP_TRANSITIONS = "step_transitions"
STEP_LABEL_IDS = "step_label_ids"
STEP_LABEL_NAMES = "step_label_names"
FRAME_POSITIONS = "frame_positions"
# Feature-list key.
FRAMES = "frames"

FLOAT_LABELS = (FINAL_SCORE, DIFFICULTY)
CLASS_LABELS = (POSITION, ARMSTAND, ROTATION_TYPE, SS_NO, TW_NO)
INT_CONTEXT = (SCHEMA_VERSION_KEY, ACTION_ID, NUM_FRAMES, HEIGHT, WIDTH, START_FRAME,
               END_FRAME, END_INDEX) + CLASS_LABELS
# Keys written only when the sample has a value (read back as the missing value).
OPTIONAL_KEYS = (DIFFICULTY, ACTION_NAME, DIVE_NUMBER) + CLASS_LABELS
# The optional lists of a procedure-annotated dive (FineDiving); every one but the names int64.
STEP_KEYS = (FRAME_STEP_LABELS, STEP_TRANSITIONS, STEP_LABEL_IDS, STEP_LABEL_NAMES,
             FRAME_POSITIONS)
STEP_INT_KEYS = (FRAME_STEP_LABELS, STEP_TRANSITIONS, STEP_LABEL_IDS, FRAME_POSITIONS)
# Judges per MTL-AQA panel (FINA: the 2 highest and 2 lowest awards are dropped).
NUM_JUDGES = 7

# Record label keys (named as in the MTL-AQA annotation files) -> model output names
# (`aqa_tf.tasks`, the one vocabulary shared by heads, losses, metrics and serving outputs).
CLASS_LABEL_TO_OUTPUT = dict(zip(CLASS_LABELS, tasks.CLASS_OUTPUTS))


@dataclasses.dataclass
class Sample:
    """One sample as writers build it (frames already JPEG-encoded)."""

    sample_key: str
    frames: Sequence[bytes]
    height: int
    width: int
    final_score: float = MISSING_FLOAT
    difficulty: float = MISSING_FLOAT
    position: int = MISSING_INT
    armstand: int = MISSING_INT
    rotation_type: int = MISSING_INT
    ss_no: int = MISSING_INT
    tw_no: int = MISSING_INT
    caption: Sequence[int] = ()
    action_id: int = 0
    action_name: str = ""
    start_frame: int = MISSING_INT
    end_frame: int = MISSING_INT
    end_index: int = MISSING_INT
    judge_scores: Sequence[float] = ()
    dive_number: str = ""
    frame_step_labels: Sequence[int] = ()
    step_transitions: Sequence[int] = ()
    step_label_ids: Sequence[int] = ()
    step_label_names: Sequence[str] = ()
    frame_positions: Sequence[int] = ()

    def validate(self):
        """Raises ValueError naming the sample if a field is malformed."""
        where = f"sample {self.sample_key!r}"
        if not self.frames:
            raise ValueError(f"{where}: no frames")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"{where}: bad frame size {self.height}x{self.width}")
        for name in FLOAT_LABELS:
            value = float(getattr(self, name))
            if not np.isfinite(value):
                raise ValueError(f"{where}: {name} is {value} (not finite); "
                                 f"use {MISSING_FLOAT} to mark a missing label")
        if not np.all(np.isfinite(np.asarray(self.judge_scores, np.float64))):
            raise ValueError(f"{where}: judge_scores {list(self.judge_scores)} are not all "
                             "finite; leave them empty when unknown")
        if self.end_index != MISSING_INT and not 0 <= self.end_index < len(self.frames):
            raise ValueError(f"{where}: end_index {self.end_index} outside "
                             f"[0, {len(self.frames)})")
        if len(self.step_label_ids) != len(self.step_label_names):
            raise ValueError(f"{where}: {len(self.step_label_ids)} step_label_ids but "
                             f"{len(self.step_label_names)} step_label_names")
        positions = np.asarray(self.frame_positions, np.int64).reshape(-1)
        if len(positions):
            if len(positions) != len(self.frames):
                raise ValueError(f"{where}: {len(positions)} frame_positions for "
                                 f"{len(self.frames)} frames")
            limit = len(self.frame_step_labels) or None
            bad = [int(p) for p in positions if p < 0 or (limit and p >= limit)]
            if bad:
                raise ValueError(f"{where}: frame_positions {bad[:5]} outside [0, "
                                 f"{limit if limit else 'inf'}) (the frames of "
                                 "frame_step_labels)")


def _int64(values):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values):
    import tensorflow as tf
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _bytes(values):
    import tensorflow as tf
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def make_sequence_example(sample: Sample) -> tf.train.SequenceExample:
    """Builds the `tf.train.SequenceExample` of `sample` (validated first)."""
    import tensorflow as tf
    sample.validate()
    context = {
        SCHEMA_VERSION_KEY: _int64([SCHEMA_VERSION]),
        SAMPLE_KEY: _bytes([sample.sample_key.encode("utf-8")]),
        NUM_FRAMES: _int64([len(sample.frames)]),
        CAPTION: _int64(sample.caption),
    }
    for name in (ACTION_ID, HEIGHT, WIDTH, START_FRAME, END_FRAME, END_INDEX) + CLASS_LABELS:
        if name not in OPTIONAL_KEYS or getattr(sample, name) != MISSING_INT:
            context[name] = _int64([getattr(sample, name)])
    for name in FLOAT_LABELS:
        if name not in OPTIONAL_KEYS or getattr(sample, name) != MISSING_FLOAT:
            context[name] = _float([getattr(sample, name)])
    if sample.action_name:
        context[ACTION_NAME] = _bytes([sample.action_name.encode("utf-8")])
    if len(sample.judge_scores):
        context[JUDGE_SCORES] = _float(sample.judge_scores)
    if sample.dive_number:
        context[DIVE_NUMBER] = _bytes([sample.dive_number.encode("utf-8")])
    for name in STEP_INT_KEYS:
        if len(getattr(sample, name)):
            context[name] = _int64(getattr(sample, name))
    if len(sample.step_label_names):
        context[STEP_LABEL_NAMES] = _bytes([n.encode("utf-8") for n in sample.step_label_names])
    frames = tf.train.FeatureList(feature=[_bytes([f]) for f in sample.frames])
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list={FRAMES: frames}))


def serialize_sample(sample: Sample) -> bytes:
    return make_sequence_example(sample).SerializeToString()


_DTYPES = {**{name: "int64" for name in INT_CONTEXT},
           **{name: "float32" for name in FLOAT_LABELS},
           SAMPLE_KEY: "string", ACTION_NAME: "string", DIVE_NUMBER: "string"}
_MISSING = {"int64": MISSING_INT, "float32": MISSING_FLOAT, "string": b""}


@functools.lru_cache(maxsize=None)
def _specs():
    """(CONTEXT_SPEC, SEQUENCE_SPEC): the parsing specs of the record's context and frames."""
    import tensorflow as tf
    context = {
        **{name: tf.io.FixedLenFeature([], tf.dtypes.as_dtype(dtype),
                                       default_value=_MISSING[dtype]
                                       if name in OPTIONAL_KEYS else None)
           for name, dtype in _DTYPES.items()},
        CAPTION: tf.io.VarLenFeature(tf.int64),
        JUDGE_SCORES: tf.io.VarLenFeature(tf.float32),
        **{name: tf.io.VarLenFeature(tf.int64) for name in STEP_INT_KEYS},
        STEP_LABEL_NAMES: tf.io.VarLenFeature(tf.string),
    }
    return context, {FRAMES: tf.io.FixedLenSequenceFeature([], tf.string)}


def __getattr__(name: str):  # CONTEXT_SPEC and SEQUENCE_SPEC, built on first use (PEP 562)
    if name in ("CONTEXT_SPEC", "SEQUENCE_SPEC"):
        return _specs()[name == "SEQUENCE_SPEC"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_sequence_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Parses one serialized record (graph-friendly, for `tf.data`).

    Returns:
      A dict with every context key (scalars; `caption` as a dense int64 `[length]`,
      `judge_scores` as a dense float32 `[num_judges]`, the step keys (`STEP_KEYS`) as dense
      int64 vectors, `step_label_names` a string vector; lists empty when unknown) and
      `frames`: a string tensor `[num_frames]` of JPEG bytes.
    """
    import tensorflow as tf
    context_spec, sequence_spec = _specs()
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec)
    features = dict(context)
    features[CAPTION] = tf.sparse.to_dense(context[CAPTION])
    features[JUDGE_SCORES] = tf.sparse.to_dense(context[JUDGE_SCORES])
    for name in STEP_KEYS:
        features[name] = tf.sparse.to_dense(context[name])
    features[FRAMES] = sequence[FRAMES]
    return features


def parse_to_numpy(serialized: bytes) -> Dict[str, object]:
    """Parses one record eagerly into Python/numpy values (for tools and tests)."""
    import tensorflow as tf
    example = tf.train.SequenceExample.FromString(serialized)
    ctx = example.context.feature
    out = {}
    for name in INT_CONTEXT:
        out[name] = (int(ctx[name].int64_list.value[0]) if name in ctx
                     else _required(name, ctx, MISSING_INT))
    for name in FLOAT_LABELS:
        out[name] = (float(ctx[name].float_list.value[0]) if name in ctx
                     else _required(name, ctx, MISSING_FLOAT))
    out[SAMPLE_KEY] = ctx[SAMPLE_KEY].bytes_list.value[0].decode("utf-8")
    out[ACTION_NAME] = (ctx[ACTION_NAME].bytes_list.value[0].decode("utf-8")
                        if ACTION_NAME in ctx else "")
    out[CAPTION] = [int(v) for v in ctx[CAPTION].int64_list.value]
    out[JUDGE_SCORES] = [float(v) for v in ctx[JUDGE_SCORES].float_list.value] \
        if JUDGE_SCORES in ctx else []
    out[DIVE_NUMBER] = (ctx[DIVE_NUMBER].bytes_list.value[0].decode("utf-8")
                        if DIVE_NUMBER in ctx else "")
    for name in STEP_INT_KEYS:
        out[name] = [int(v) for v in ctx[name].int64_list.value] if name in ctx else []
    out[STEP_LABEL_NAMES] = [v.decode("utf-8") for v in ctx[STEP_LABEL_NAMES].bytes_list.value] \
        if STEP_LABEL_NAMES in ctx else []
    frames = example.feature_lists.feature_list[FRAMES].feature
    out[FRAMES] = [f.bytes_list.value[0] for f in frames]
    if out[SCHEMA_VERSION_KEY] not in READABLE_SCHEMA_VERSIONS:
        raise ValueError(f"record {out[SAMPLE_KEY]!r}: schema version {out[SCHEMA_VERSION_KEY]}, "
                         f"this code reads versions {READABLE_SCHEMA_VERSIONS}")
    return out


def _required(name: str, context, missing):
    """The value of an optional key that a record left out; a required one raises."""
    if name in OPTIONAL_KEYS:
        return missing
    key = context[SAMPLE_KEY].bytes_list.value[0].decode("utf-8") if SAMPLE_KEY in context else "?"
    raise ValueError(f"record {key!r}: no {name!r}")


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """JPEG-encodes one RGB uint8 frame `[H, W, 3]`."""
    import cv2  # Local import: only writers need OpenCV.
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] frame, got {frame.dtype} {frame.shape}")
    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decodes JPEG bytes to an RGB uint8 frame; raises ValueError on a corrupt image."""
    import cv2
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("undecodable JPEG image")
    return image[..., ::-1].copy()


def sample_key_for(event: int, sample_no: int) -> str:
    """MTL-AQA sample key, e.g. (1, 1) -> "01_001"."""
    return f"{int(event):02d}_{int(sample_no):03d}"
