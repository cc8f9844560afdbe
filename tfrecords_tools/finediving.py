r"""Converts the FineDiving release (trimmed dives' frames + annotation pickles) into aqa-tf
TFRecords.

  python -m tfrecords_tools.finediving --frames_dir=PATH/FINADiving_MTL_256s \
      --annotations_dir=PATH/Annotations --out_dir OUT [--splits=train,test] [--num_frames=96]

FineDiving (Xu et al., CVPR 2022; github.com/xujinglin/FineDiving). `--frames_dir` holds one
folder per trimmed dive, `<video_name>/<instance>/<frame:05d>.jpg`, numbered with the dive's
frame numbers in the broadcast; `--annotations_dir` the release's pickles:
`FineDiving_coarse_annotation.pkl` (dive type, start/end frame, score, difficulty, judges),
`FineDiving_fine-grained_annotation.pkl` (per frame step labels, step transitions, the dive's
step names), `Sub_action_Types_Table.pkl` (every step label's name) and `train_split.pkl`,
`test_split.pkl` (lists of keys `(video_name, instance)`).

One record per dive of the splits, sample key `<video_name>_<instance>`
(`FINADivingWorldCup2021_Men3m_final_r1_8`, `01_3`), into `OUT/train-*`, `OUT/test-*`. Frames
are sampled as the authors' loader does (`datasets/FineDiving_Pair.py`, `load_video`): of the
n files of the dive's folder, first and last numbered s and e, the positions
`linspace(s, e, --num_frames).astype(int) - s` (96), which repeat files of a dive shorter than
96 frames; no temporal jitter (the authors' FineDiving loader has none). Each is resized to
`--width` x `--height` (112x200, see `WIDTH`) and JPEG-encoded. Labels: `final_score` the
dive score, `difficulty`, `dive_number` the dive type as given (`207c`), `judge_scores` (7, 5
or 3 awards), `start_frame`/`end_frame` the coarse annotation's broadcast frame numbers,
`end_index` the last stored frame, `action_id` 0 and no action name (one action, as
MTL-AQA); and the step keys: `frame_step_labels` (`frames_labels`, one per frame of the dive),
`step_transitions` (`steps_transit_frames`), `step_label_ids`/`step_label_names` (the dive's
`sub-action_types`, sorted by label) and `frame_positions` (the positions above: stored frame
i has step label `frame_step_labels[frame_positions[i]]`). No caption, no MTL-AQA sub-action
classes.

A dive that cannot be converted is reported by its key and skipped; the others are written;
the exit status is 1 if anything was skipped: no folder or no frames in it, file numbers with
a gap (e - s + 1 files expected), a file name that is not a frame number, an undecodable
JPEG, `frames_labels` of another length than the folder's frame count, a key missing from an
annotation file or an entry lacking a field, the coarse and fine-grained annotations giving
different dive types, scores or difficulties, a step label that the dive's `sub-action_types`
or the table does not name as they do. A missing `--frames_dir`, a missing or malformed
annotation file, two keys with the same sample key, or a bad option stops the conversion with
one `error:` line (exit status 2), before anything is written.

Beside the shards, `conversion_report.json`: written per split, skipped (key -> reason), notes
(per split the dives listed, written and their dive types, the number of dive types written,
the step label table's size, the dives shorter than `--num_frames` and those whose file
numbers differ from the coarse annotation's start/end frame).

`--runner=DirectRunner` (the default where Apache Beam is installed) converts as one Beam
pipeline on `--num_workers` local processes, another Beam runner with `--beam_pipeline_options`;
`--runner=local` with this machine's process pool, without Beam (`tfrecords_tools.beam_pipeline`:
the records, the report and its notes are the same).
"""

import concurrent.futures
import functools
import os
import re
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np

from aqa_tf.data import features
from aqa_tf.data import shards as shards_lib
from aqa_tf.data.shards import DataError, ShardedWriter
from aqa_tf.data.video import resize_frame
from tfrecords_tools import beam_pipeline
from tfrecords_tools import common
from tfrecords_tools.common import ConversionReport

Key = Tuple[str, int]
COARSE_FILE = "FineDiving_coarse_annotation.pkl"
FINE_FILE = "FineDiving_fine-grained_annotation.pkl"
TABLE_FILE = "Sub_action_Types_Table.pkl"
SPLIT_FILES = {"train": "train_split.pkl", "test": "test_split.pkl"}
NUM_FRAMES = 96  # FineDiving_TSA.yaml: frame_length
# The stored frame size. The authors' transforms (tools/builder.py, get_video_trans) are
# `video_transforms.Resize((200, 112))` then a 112 crop (random for training, centred for
# test) of torchvideotransforms (github.com/hassony2/torch_videovision, installed from git as
# their README says). Its `resize_clip` (torchvideotransforms/functional.py) swaps a size tuple
# to `(size[1], size[0])` before PIL's `img.resize((width, height))`, so `Resize((200, 112))`
# yields frames 112 wide and 200 high (the 16:9 release frames squeezed, not 200x112), and the
# 112x112 crop takes the middle rows. Stored at 112x200, the training pipeline's crop of 112
# (`--crop_size=112`, centred at test) is then the authors' crop of the same pixels; only the
# resampling differs (theirs nearest-neighbour, the Resize default; ours area averaging).
WIDTH, HEIGHT = 112, 200
COARSE_FIELDS = ("action_type", "start_frame", "end_frame", "dive_score", "difficulty",
                 "judge_scores")
FINE_FIELDS = ("action_type", "dive_score", "difficulty", "steps_transit_frames",
               "frames_labels", "sub-action_types")
_FRAME_FILE = re.compile(r"^(\d+)\.jpg$")


class SampleError(Exception):
    """A dive that cannot be converted; the message names the problem."""


def sample_key(key: Key) -> str:
    """Record key of a dive: ("FINADivingWorldCup2021_Men3m_final_r1", 8) ->
    "FINADivingWorldCup2021_Men3m_final_r1_8"."""
    return f"{key[0]}_{int(key[1])}"


def dive_dir(frames_dir: str, key: Key) -> str:
    """Folder of one dive's frames: `<frames_dir>/<video_name>/<instance>`."""
    return os.path.join(frames_dir, key[0], str(int(key[1])))


def _whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _key(value, where: str) -> Key:
    """A release key `(video_name, instance)` as (str, int); DataError naming `where`."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str) \
            and _whole(value[1]):
        return value[0], int(value[1])
    raise DataError(f"{where}: holds {value!r}, not a key (video_name, instance), e.g. "
                    "('FINADivingWorldCup2021_Men3m_final_r1', 8)")


def _load(annotations_dir: str, name: str, what: str):
    path = os.path.join(annotations_dir, name)
    return path, common.load_pickle(
        path, f"{path}: no such file (expected the FineDiving {what} under --annotations_dir)",
        path)


def _annotation_dict(annotations_dir: str, name: str, what: str) -> Dict[Key, dict]:
    path, data = _load(annotations_dir, name, what)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataError(f"{path}: expected a dict (video_name, instance) -> dict of labels")
    return {_key(k, path): v for k, v in data.items()}


def load_annotations(annotations_dir: str,
                     splits: Sequence[str] = tuple(SPLIT_FILES)) -> Dict[str, object]:
    """The release's annotation files.

    Returns:
      dict with `coarse` and `fine` {key: dict}, `table` {step label: name} and `splits`
      {split: [keys]} (keys as (str, int)).

    Raises:
      FileNotFoundError: a file (or the folder) is missing.
      DataError: a file is not a pickle or not of the release's form, or a split lists two
        keys with the same sample key (the same key twice, or in both splits).
    """
    if not os.path.isdir(annotations_dir):
        raise FileNotFoundError(f"--annotations_dir={annotations_dir}: no such folder "
                                f"(expected the FineDiving annotations: {COARSE_FILE}, ...)")
    data = {"coarse": _annotation_dict(annotations_dir, COARSE_FILE, "coarse annotation"),
            "fine": _annotation_dict(annotations_dir, FINE_FILE, "fine-grained annotation")}
    path, table = _load(annotations_dir, TABLE_FILE, "step label table")
    if not isinstance(table, dict) or not all(
            _whole(k) and isinstance(v, str) for k, v in table.items()):
        raise DataError(f"{path}: expected a dict step label (int) -> name")
    data["table"] = {int(k): v for k, v in table.items()}
    data["splits"], seen = {}, {}
    for split in splits:
        path, keys = _load(annotations_dir, SPLIT_FILES[split], f"{split} split")
        if not isinstance(keys, (list, tuple)):
            raise DataError(f"{path}: holds a {type(keys).__name__}, expected a list of keys "
                            "(video_name, instance)")
        data["splits"][split] = [_key(k, path) for k in keys]
        for key in data["splits"][split]:
            name = sample_key(key)
            if name in seen:
                raise DataError(f"{path}: sample key {name} is given twice ({seen[name][1]!r} "
                                f"in {seen[name][0]} and {key!r} in {SPLIT_FILES[split]}); "
                                "every dive must be listed once")
            seen[name] = (SPLIT_FILES[split], key)
    return data


def _ints(value, what: str) -> List[int]:
    values = np.asarray(value)
    if values.ndim != 1 or not (np.issubdtype(values.dtype, np.integer) or (
            np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values)))):
        raise SampleError(f"{what} is not a list of whole numbers")
    return [int(v) for v in values]


def sample_labels(key: Key, data: Dict[str, object]) -> dict:
    """The labels of one dive, checked (`frames_labels` against the frames later, by
    `convert_sample`). Raises SampleError naming the problem."""
    entries = {}
    for file, name, fields in ((COARSE_FILE, "coarse", COARSE_FIELDS),
                               (FINE_FILE, "fine", FINE_FIELDS)):
        entry = data[name].get(key)
        if entry is None:
            raise SampleError(f"no entry in {file}")
        missing = [f for f in fields if f not in entry]
        if missing:
            raise SampleError(f"its entry in {file} has no {', '.join(map(repr, missing))}")
        entries[name] = entry
    coarse, fine = entries["coarse"], entries["fine"]
    for field in ("action_type", "dive_score", "difficulty"):
        if coarse[field] != fine[field]:
            raise SampleError(f"{field} is {coarse[field]!r} in {COARSE_FILE} but "
                              f"{fine[field]!r} in {FINE_FILE}")
    labels = _ints(fine["frames_labels"], f"{FINE_FILE}: frames_labels")
    if not labels:
        raise SampleError(f"{FINE_FILE}: frames_labels is empty")
    types = fine["sub-action_types"]
    if not isinstance(types, dict):
        raise SampleError(f"{FINE_FILE}: sub-action_types is not a dict label -> name")
    steps = {}
    for label, name in types.items():
        label = _ints([label], f"{FINE_FILE}: sub-action_types label {label!r}")[0]
        if data["table"].get(label) != name:
            raise SampleError(f"{FINE_FILE}: sub-action_types names label {label} {name!r}, "
                              f"{TABLE_FILE} {data['table'].get(label)!r}")
        steps[label] = name
    unnamed = sorted(set(labels) - set(steps))
    if unnamed:
        raise SampleError(f"{FINE_FILE}: frames_labels has labels {unnamed} that its "
                          "sub-action_types does not name")
    try:
        return dict(
            dive_number=str(coarse["action_type"]), final_score=float(coarse["dive_score"]),
            difficulty=float(coarse["difficulty"]),
            judge_scores=[float(v) for v in np.reshape(coarse["judge_scores"], -1)],
            start_frame=int(coarse["start_frame"]), end_frame=int(coarse["end_frame"]),
            frame_step_labels=labels,
            step_transitions=_ints(fine["steps_transit_frames"],
                                   f"{FINE_FILE}: steps_transit_frames"),
            step_label_ids=sorted(steps), step_label_names=[steps[k] for k in sorted(steps)])
    except (TypeError, ValueError) as error:
        raise SampleError(f"{COARSE_FILE}: {error}") from None


def frame_files(folder: str) -> Tuple[List[str], int, int]:
    """(paths of the `*.jpg` frames of a dive's folder in frame order, first and last frame
    number). Raises SampleError if the folder is missing or holds no frames, a name is not a
    frame number, or the numbers have a gap.

    Sorted by number: the authors' loader sorts the names as strings, the same order for
    the release's `%05d` names below frame 100000 (no dive crosses it)."""
    if not os.path.isdir(folder):
        raise SampleError(f"no frame folder {folder}")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))
    except OSError as error:
        raise SampleError(f"cannot read {folder}: {error.strerror}") from None
    if not names:
        raise SampleError(f"no frames (<frame:05d>.jpg) in {folder}")
    bad = [n for n in names if not _FRAME_FILE.match(n)]
    if bad:
        raise SampleError(f"{os.path.join(folder, bad[0])}: not a frame number")
    numbered = sorted((int(n[:-4]), n) for n in names)
    numbers = [number for number, _ in numbered]
    first, last = numbers[0], numbers[-1]
    twice = sorted({n for a, n in zip(numbers, numbers[1:]) if a == n})
    if twice:
        raise SampleError(f"frame number {twice[0]} given by two files in {folder}")
    if last - first + 1 != len(numbers):
        gaps = sorted(set(range(first, last + 1)) - set(numbers))
        raise SampleError(f"{len(numbers)} frames numbered {first}..{last} in {folder}: "
                          f"{len(gaps)} missing (first missing: {gaps[0]:05d}.jpg)")
    return [os.path.join(folder, n) for _, n in numbered], first, last


def frame_positions(first: int, last: int, num_frames: int) -> np.ndarray:
    """Positions (0-based, in the dive's sorted frames) of the `num_frames` frames stored, as
    the authors' `load_video`: `np.linspace(first, last, num_frames).astype(int) - first` of
    the first and last file numbers (positions repeat when the dive is shorter)."""
    return np.linspace(first, last, num_frames).astype(np.int64) - first


def convert_sample(key: Key, labels: dict, frames_dir: str,
                   options: dict) -> Tuple[bytes, Tuple[int, int]]:
    """(serialized record of one dive, its first and last frame file numbers); raises
    SampleError naming the problem."""
    paths, first, last = frame_files(dive_dir(frames_dir, key))
    steps = labels["frame_step_labels"]
    if len(steps) != len(paths):
        raise SampleError(f"{len(paths)} frames ({first:05d}..{last:05d}.jpg) but "
                          f"{FINE_FILE} gives {len(steps)} frames_labels")
    positions = frame_positions(first, last, options["num_frames"])
    encoded = {}
    for position in sorted(set(positions.tolist())):
        try:
            with open(paths[position], "rb") as f:
                data = f.read()
        except OSError as error:
            raise SampleError(f"cannot read {paths[position]}: {error.strerror}") from None
        try:
            frame = features.decode_jpeg(data)
        except ValueError:
            raise SampleError(f"undecodable image {paths[position]}") from None
        encoded[position] = features.encode_jpeg(
            resize_frame(frame, options["width"], options["height"]), options["jpeg_quality"])
    jpegs = [encoded[p] for p in positions.tolist()]
    try:
        sample = features.Sample(
            sample_key=sample_key(key), frames=jpegs, height=options["height"],
            width=options["width"], action_id=0, end_index=len(jpegs) - 1,
            frame_positions=positions.tolist(), **labels)
        return features.serialize_sample(sample), (first, last)
    except (ValueError, TypeError) as error:
        raise SampleError(str(error)) from None


def _job(args):
    split, key, labels, frames_dir, options = args
    try:
        return (*convert_sample(key, labels, frames_dir, options), None)
    except SampleError as error:
        return None, None, str(error)


def _beam_job(shared, job):
    """`_job` for `beam_pipeline`: its jobs `(split, key, labels)` leave out the frames folder
    and options that every dive shares (`shared`, pickled once with the DoFn, not once per
    dive); a written dive's first and last file numbers come back as its report information,
    as the pool's workers hand them back."""
    _, key, _ = job
    record, numbers, error = _job((*job, *shared))
    return sample_key(key), record, error, numbers and list(numbers)


def _skip(report: ConversionReport, key: str, reason: str):
    report.skipped[key] = reason
    print(f"SKIPPED {key}: {reason}", file=sys.stderr, flush=True)


def _split_jobs(split: str, data: Dict[str, object], frames_dir: str, options: dict,
                report: ConversionReport) -> list:
    """The conversion jobs of a split's dives, in list order; a dive whose labels are unusable
    (`sample_labels`) is reported skipped instead."""
    jobs = []
    for key in data["splits"][split]:
        try:
            jobs.append((split, key, sample_labels(key, data), frames_dir, options))
        except SampleError as error:
            _skip(report, sample_key(key), str(error))
    return jobs


def _note_written(notes: dict, types: set, key: Key, labels: dict,
                  numbers: Tuple[int, int]):
    """Adds a written dive to the notes: its dive type to the split's `types`, whether it is
    shorter than `num_frames`, and its first and last file numbers (`numbers`) where they are
    not the coarse annotation's start and end frame."""
    types.add(labels["dive_number"])
    notes["shorter_than_num_frames"] += len(labels["frame_step_labels"]) < notes["num_frames"]
    if numbers != (labels["start_frame"], labels["end_frame"]):
        notes["frame_numbers_differ_from_annotation"][sample_key(key)] = (
            f"files {numbers[0]:05d}..{numbers[1]:05d}.jpg, {COARSE_FILE} start_frame "
            f"{labels['start_frame']}, end_frame {labels['end_frame']} (stored)")


def check_inputs(frames_dir: str, splits: Sequence[str], **counts: int):
    """Refuses an unknown split or a count (`num_frames=96`, `width=112`, ...) below 1
    (ValueError naming the option), and a missing `frames_dir` (FileNotFoundError naming
    --frames_dir)."""
    unknown = [s for s in splits if s not in SPLIT_FILES]
    if unknown or not splits:
        raise ValueError(f"--splits={','.join(splits)}: each split must be one of "
                         f"{', '.join(SPLIT_FILES)}")
    if len(set(splits)) != len(splits):
        raise ValueError(f"--splits={','.join(splits)}: a split given twice")
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"--{name}={value} must be positive")
    if not os.path.isdir(frames_dir):
        raise FileNotFoundError(f"--frames_dir={frames_dir}: no such folder (expected the "
                                "FineDiving frames: <video_name>/<instance>/<frame:05d>.jpg)")


def convert(frames_dir: str, annotations_dir: str, out_dir: str,
            splits: Sequence[str] = tuple(SPLIT_FILES), num_frames: int = NUM_FRAMES,
            width: int = WIDTH, height: int = HEIGHT, num_shards_train: int = 8,
            num_shards_test: int = 4, num_workers: int = 0, jpeg_quality: int = 90,
            progress: bool = True, overwrite: bool = False, runner: str = beam_pipeline.LOCAL,
            beam_pipeline_options: str = "") -> ConversionReport:
    """Converts the dives of `splits`; returns the report (also saved as
    conversion_report.json).

    `runner`: `beam_pipeline.LOCAL` (a process pool of `num_workers`) or a Beam runner
    (`beam_pipeline.write_splits`, with `beam_pipeline_options`): the same records, report and
    notes.

    Raises:
      ValueError: an unknown split, a count below 1 (`check_inputs`).
      ConfigError: a Beam runner without Beam installed, or bad Beam options
        (`beam_pipeline.check_runner`).
      FileNotFoundError, DataError: a missing frames folder, a missing or malformed annotation
        file, an unusable out_dir (all checked before anything is written).
    """
    from tqdm import tqdm
    check_inputs(frames_dir, splits, num_frames=num_frames, width=width, height=height,
                 num_shards_train=num_shards_train, num_shards_test=num_shards_test)
    shards_lib.check_out_dir(out_dir, overwrite)
    beam_pipeline.check_runner(runner, num_workers, beam_pipeline_options)
    data = load_annotations(annotations_dir, splits)
    options = dict(num_frames=num_frames, width=width, height=height, jpeg_quality=jpeg_quality)
    report = ConversionReport()
    notes = {"num_frames": num_frames, "splits": {}, "step_label_table_size": len(data["table"]),
             "shorter_than_num_frames": 0, "frame_numbers_differ_from_annotation": {}}
    workers = num_workers or os.cpu_count() or 1
    shards = {"train": num_shards_train, "test": num_shards_test}
    # Written into a staging folder that replaces out_dir when complete.
    with shards_lib.fresh_folder(out_dir, overwrite) as staging:
        if runner != beam_pipeline.LOCAL:
            types = _convert_with_beam(splits, data, frames_dir, options, staging, shards,
                                       report, notes, runner, num_workers,
                                       beam_pipeline_options)
        else:
            types = {}
            for split in splits:
                jobs = _split_jobs(split, data, frames_dir, options, report)
                pool = concurrent.futures.ProcessPoolExecutor(workers) if workers > 1 else None
                results = pool.map(_job, jobs, chunksize=8) if pool else map(_job, jobs)
                types[split] = set()
                try:
                    with ShardedWriter(staging, split, min(shards[split], max(len(jobs), 1))) \
                            as writer:
                        for job, (record, numbers, error) in tqdm(
                                zip(jobs, results), total=len(jobs), disable=not progress,
                                desc=f"converting {split}", unit="dive"):
                            if error:
                                _skip(report, sample_key(job[1]), error)
                                continue
                            writer.write(record)
                            _note_written(notes, types[split], job[1], job[2], numbers)
                        report.written[split] = writer.count
                finally:
                    if pool:
                        pool.shutdown()
        for split in splits:
            notes["splits"][split] = {"listed": len(data["splits"][split]),
                                      "written": report.written[split],
                                      "dive_types": len(types[split])}
        notes["dive_types"] = len(set().union(*types.values()))
        report.notes = notes
        report.save(os.path.join(staging, "conversion_report.json"))
    return report


def _convert_with_beam(splits, data, frames_dir, options, staging, shards, report, notes,
                       runner, num_workers, beam_pipeline_options) -> Dict[str, set]:
    """The splits' conversion as one Beam pipeline (`beam_pipeline.write_splits`), reported as
    the process pool's: `report.written`, `report.skipped` and a SKIPPED line each, and the
    notes of the written dives (the jobs that were not skipped, with the first and last file
    numbers their workers found). Returns split -> the dive types written."""
    jobs = {split: _split_jobs(split, data, frames_dir, options, report) for split in splits}
    written, skipped, numbers = beam_pipeline.write_splits(
        {split: [job[:3] for job in split_jobs] for split, split_jobs in jobs.items()},
        functools.partial(_beam_job, (frames_dir, options)), staging, shards, runner=runner,
        num_workers=num_workers, beam_pipeline_options=beam_pipeline_options)
    report.written.update(written)
    types = {}
    for split in splits:
        types[split] = set()
        for _, key, labels, _, _ in jobs[split]:
            name = sample_key(key)
            if name in skipped:
                _skip(report, name, skipped[name])
                continue
            _note_written(notes, types[split], key, labels, tuple(numbers[name]))
    return types


def format_notes(notes: Dict[str, object]) -> str:
    """The printed lines on dive types, steps and frame numbers."""
    lines = [f"Dive types written: {notes['dive_types']} ("
             + ", ".join(f"{split} {s['dive_types']}" for split, s in notes["splits"].items())
             + f"); step label table: {notes['step_label_table_size']} labels; "
             f"{notes['shorter_than_num_frames']} dives shorter than {notes['num_frames']} "
             "frames (frames repeated, as the authors' loader)"]
    differ = notes["frame_numbers_differ_from_annotation"]
    if differ:
        lines.append(f"  NOTE: {len(differ)} dives' frame files are not numbered from the "
                     "coarse annotation's start_frame to its end_frame: "
                     + ", ".join(sorted(differ)))
    return "\n".join(lines)


def main(argv):
    del argv
    from absl import flags
    from aqa_tf.config import ConfigError
    f = flags.FLAGS
    counts = dict(num_frames=f.num_frames, width=f.width, height=f.height,
                  num_shards_train=f.num_shards_train, num_shards_test=f.num_shards_test)
    try:
        check_inputs(f.frames_dir, f.splits, **counts)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    report = convert(f.frames_dir, f.annotations_dir, f.out_dir, splits=tuple(f.splits),
                     num_workers=f.num_workers, jpeg_quality=f.jpeg_quality,
                     overwrite=f.overwrite, runner=beam_pipeline.runner_from_flags(),
                     beam_pipeline_options=f.beam_pipeline_options, **counts)
    print(report.summary())
    print(format_notes(report.notes))
    return 1 if report.skipped else 0


def define_flags():
    from absl import flags
    flags.DEFINE_string("frames_dir", None, "FineDiving frames (FINADiving_MTL_256s): "
                        "<video_name>/<instance>/<frame:05d>.jpg, one folder per dive.")
    flags.DEFINE_string("annotations_dir", None, f"Folder with {COARSE_FILE}, {FINE_FILE}, "
                        f"{TABLE_FILE}, {SPLIT_FILES['train']} and {SPLIT_FILES['test']}.")
    flags.DEFINE_integer("num_frames", NUM_FRAMES, "Frames stored per dive, spread over it as "
                         "the authors' loader does (FineDiving_TSA.yaml: 96).")
    common.define_output_flags(
        f"Stored frame width (default {WIDTH}: the authors' frames, see the module's WIDTH).",
        f"Stored frame height (default {HEIGHT}: the authors' frames).",
        width=WIDTH, height=HEIGHT)
    beam_pipeline.define_flags()
    flags.mark_flags_as_required(["frames_dir", "annotations_dir", "out_dir"])


if __name__ == "__main__":
    from aqa_tf import flag_defs
    define_flags()
    flag_defs.run(main)
