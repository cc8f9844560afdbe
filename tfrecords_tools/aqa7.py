r"""Converts the AQA-7 release (extracted frames + Split_4 .mat lists) into aqa-tf TFRecords.

  python -m tfrecords_tools.aqa7 --root ROOT --out_dir data/aqa7 [--actions=diving,gym_vault]

ROOT holds `<action>-out/<sample:03d>/img_<frame:05d>.jpg` and `Split_4/split_4_{train,test}
_list.mat` (`aqa_tf.data.aqa7` describes the layout). The six actions of paper 003 (trampoline
is excluded there) are converted; `--actions` picks a subset.

Every sample listed in the split files is stored whole: all its frames, in order, resized to
`--width` x `--height` (171x128, as the MTL-AQA converter) and JPEG-encoded; the 103-frame window
of the paper is cut by the training pipeline, which pads in front when a video is shorter. Labels:
the final score, the action's index (1..6) and name; no difficulty and no dive sub-actions (the
release has none; schema version 2 leaves them out). A sample that cannot be converted (missing
frame folder or frame, corrupt JPEG, score that is not a finite number, action index outside
1..6) is reported with its key (`gym_vault_017`) and the problem and skipped; the good ones are
written; the exit status is non-zero if anything was skipped. A missing or malformed split file
stops the conversion with one `error:` line (exit status 2).

Beside the shards: `conversion_report.json` (as the MTL-AQA converter) and
`aqa7_actions.json`, per action its index, name, sample counts and the mean and standard
deviation of its training scores (the per-action normaliser of paper 003, Sec. 5).

`--runner=DirectRunner` (the default where Apache Beam is installed) converts as one Beam
pipeline on `--num_workers` local processes, another Beam runner with `--beam_pipeline_options`;
`--runner=local` with this machine's process pool, without Beam (`tfrecords_tools.beam_pipeline`:
the same records either way).
"""

import concurrent.futures
import functools
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from aqa_tf.data import aqa7
from aqa_tf.data import features
from aqa_tf.data import shards as shards_lib
from aqa_tf.data.shards import DataError, ShardedWriter
from aqa_tf.data.video import resize_frame
from tfrecords_tools import beam_pipeline
from tfrecords_tools import common
from tfrecords_tools.common import ConversionReport

_FRAME_FILE = re.compile(r"^img_(\d{5})\.jpg$")


class SampleError(Exception):
    """A sample that cannot be converted; the message names the problem."""


class RowError(SampleError):
    """A split row that names no convertible sample: `key` is the best key the row allows
    (`action7_012` for an unknown action index), `reason` the problem."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"sample {key}: {reason}")
        self.key, self.reason = key, reason


def load_split(root: str, split: str) -> np.ndarray:
    """The rows `[action index, sample number, score]` of one split file, float64 `[N, 3]`.

    Raises:
      FileNotFoundError: the file is missing.
      DataError: it is not a MAT file, lacks its variable, or the variable is not `[N, 3]`.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError
    path = aqa7.split_path(root, split)
    variable = aqa7.SPLIT_FILES[split][1]
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing (expected the AQA-7 release's "
                                f"{aqa7.SPLIT_DIR} split files under --root)")
    try:
        contents = loadmat(path)
    # OSError, IndexError: truncated (scipy reads past the end of a short header).
    except (ValueError, TypeError, IndexError, MatReadError, OSError) as error:
        raise DataError(f"{path}: not a readable MAT file ({error})") from None
    if variable not in contents:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise DataError(f"{path}: no variable {variable!r} (it holds {found or 'nothing'})")
    rows = np.asarray(contents[variable])
    if rows.size == 0:
        return np.zeros((0, 3), np.float64)
    if rows.ndim != 2 or rows.shape[1] != 3 or not np.issubdtype(rows.dtype, np.number):
        raise DataError(f"{path}: {variable} is {rows.dtype} {rows.shape}, expected numbers "
                        "[N, 3] (action index, sample number, score)")
    return rows.astype(np.float64)


def _whole(value: float) -> Optional[int]:
    return int(value) if np.isfinite(value) and float(value).is_integer() else None


def check_row(row: Sequence[float]) -> Tuple[str, str, int, float]:
    """(sample key, action name, sample number, score) of a split row.

    Raises:
      RowError: naming the row's key and the problem.
    """
    index, number, score = (float(v) for v in row)
    whole_index, whole_number = _whole(index), _whole(number)
    number_text = f"{whole_number:03d}" if whole_number is not None else f"{number:g}"
    if whole_index is None or not 1 <= whole_index <= len(aqa7.ACTIONS):
        raise RowError(f"action{index:g}_{number_text}",
                          f"action index {index:g} outside 1..{len(aqa7.ACTIONS)}")
    name = aqa7.action_name(whole_index)
    if whole_number is None or whole_number < 0:
        raise RowError(f"{name}_{number_text}", f"sample number {number:g} is not a "
                          "non-negative whole number")
    key = aqa7.sample_key(name, whole_number)
    if not np.isfinite(score):
        raise RowError(key, f"score is {score} (not a finite number)")
    return key, name, whole_number, score


def frame_files(folder: str) -> List[str]:
    """Paths of `img_00001.jpg` .. `img_<N>.jpg` in `folder`; raises SampleError if the folder
    is missing or empty or a frame in between is missing."""
    if not os.path.isdir(folder):
        raise SampleError(f"frame folder {folder} does not exist")
    numbers = sorted(int(m.group(1)) for m in map(_FRAME_FILE.match, os.listdir(folder)) if m)
    if not numbers:
        raise SampleError(f"no frames (img_00001.jpg, ...) in {folder}")
    missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if missing:
        raise SampleError(f"missing {len(missing)} of the frames 1..{numbers[-1]} in {folder} "
                          f"(first missing: {aqa7.FRAME_PATTERN.format(frame=missing[0])})")
    return [os.path.join(folder, aqa7.FRAME_PATTERN.format(frame=n)) for n in numbers]


def convert_sample(root: str, key: str, action: str, sample_number: int, score: float,
                   options: dict) -> bytes:
    """Serialized record of one sample; raises SampleError naming the problem."""
    try:
        jpegs = []
        for path in frame_files(aqa7.sample_dir(root, action, sample_number)):
            with open(path, "rb") as f:
                data = f.read()
            try:
                frame = features.decode_jpeg(data)
            except ValueError:
                raise SampleError(f"undecodable image {path}") from None
            # Always re-encoded, as the MTL-AQA converter does: one JPEG quality for every
            # stored frame, whatever the release's encoder was.
            jpegs.append(features.encode_jpeg(
                resize_frame(frame, options["width"], options["height"]),
                options["jpeg_quality"]))
        sample = features.Sample(
            sample_key=key, frames=jpegs, height=options["height"], width=options["width"],
            final_score=score, action_id=aqa7.action_index(action), action_name=action,
            start_frame=1, end_frame=len(jpegs), end_index=len(jpegs) - 1)
        return features.serialize_sample(sample)
    except (OSError, ValueError, TypeError) as error:
        raise SampleError(str(error)) from None


def _job(args):
    split, key, action, number, score, root, options = args
    try:
        return split, key, convert_sample(root, key, action, number, score, options), None
    except SampleError as error:
        return split, key, None, f"sample {key}: {error}"


def _beam_job(shared, job):
    """`_job` for `beam_pipeline`: its jobs leave out the release folder and the options that
    every sample shares (`shared`, pickled once with the DoFn)."""
    _, key, record, error = _job((*job, *shared))
    return key, record, error


def action_summary(scores: Dict[str, Dict[str, List[float]]],
                   actions: Sequence[str]) -> List[Dict[str, object]]:
    """Per action: index, name, samples written per split, mean and std of its training scores.

    Paper 003 (Sec. 5) divides each action's scores by "the training standard deviation of the
    corresponding action" without saying which estimator, and the authors' code is not
    released; this is the population standard deviation (`np.std`, ddof=0). Only the training
    split is used, so the test scores never leak into the normaliser.
    """
    summary = []
    for name in actions:
        train = np.asarray(scores["train"].get(name, []), np.float64)
        summary.append({
            "index": aqa7.action_index(name), "name": name,
            "num_train": len(train), "num_test": len(scores["test"].get(name, [])),
            "train_score_mean": float(train.mean()) if len(train) else None,
            "train_score_std": float(train.std(ddof=0)) if len(train) else None})
    return summary


def convert(root: str, out_dir: str, actions: Sequence[str] = aqa7.ACTIONS, width: int = 171,
            height: int = 128, num_shards_train: int = 8, num_shards_test: int = 4,
            num_workers: int = 0, jpeg_quality: int = 90, splits=("train", "test"),
            progress: bool = True, overwrite: bool = False, runner: str = beam_pipeline.LOCAL,
            beam_pipeline_options: str = "") -> ConversionReport:
    """Converts the AQA-7 splits; returns the report (also saved as conversion_report.json).

    `runner`: `beam_pipeline.LOCAL` (a process pool of `num_workers`) or a Beam runner
    (`beam_pipeline.write_splits`, with `beam_pipeline_options`): the same records and report.

    Rows of the split files that name no valid sample (action index outside 1..6, a sample
    number that is not a whole number, a score that is not finite) are reported even when
    `actions` is a subset: the split file itself is wrong.

    Raises:
      ValueError: an unknown action name or split.
      FileNotFoundError, DataError: a split file is missing or malformed (checked before
        anything is written).
    """
    from tqdm import tqdm
    for name in actions:
        aqa7.action_index(name)
    for split in splits:
        if split not in aqa7.SPLIT_FILES:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(aqa7.SPLIT_FILES)}")
    shards_lib.check_out_dir(out_dir, overwrite)
    beam_pipeline.check_runner(runner, num_workers, beam_pipeline_options)
    rows = {split: load_split(root, split) for split in splits}
    options = dict(width=width, height=height, jpeg_quality=jpeg_quality)
    report = ConversionReport()
    scores = {"train": {}, "test": {}}
    listed = {}
    # Written into a staging folder that replaces out_dir when complete.
    with shards_lib.fresh_folder(out_dir, overwrite) as out_dir:
        workers = num_workers or os.cpu_count() or 1
        shards = {"train": num_shards_train, "test": num_shards_test}
        split_jobs = {}
        for split in splits:
            jobs = []
            for i, row in enumerate(rows[split]):
                try:
                    key, name, number, score = check_row(row)
                except RowError as error:
                    report.skipped[error.key] = f"{split} row {i + 1}: {error.reason}"
                    print(f"SKIPPED sample {error.key}: {report.skipped[error.key]}",
                          file=sys.stderr, flush=True)
                    continue
                if name not in actions:
                    continue
                if key in listed:
                    report.skipped[key] = (f"{split} row {i + 1}: listed again (first in the "
                                           f"{listed[key]} split); the first is kept")
                    print(f"SKIPPED sample {key}: {report.skipped[key]}", file=sys.stderr,
                          flush=True)
                    continue
                listed[key] = split
                jobs.append((aqa7.action_index(name), number, (split, key, name, number, score,
                                                               root, options)))
            split_jobs[split] = [job for *_, job in sorted(jobs, key=lambda j: j[:2])]
        if runner != beam_pipeline.LOCAL:
            _convert_with_beam(split_jobs, (root, options), out_dir, shards, report, scores,
                               runner, num_workers, beam_pipeline_options)
        else:  # this machine's process pool
            for split, jobs in split_jobs.items():
                pool = concurrent.futures.ProcessPoolExecutor(workers) if workers > 1 else None
                results = pool.map(_job, jobs, chunksize=4) if pool else map(_job, jobs)
                try:
                    num_shards = min(shards[split], max(len(jobs), 1))
                    with ShardedWriter(out_dir, split, num_shards) as writer:
                        for job, (_, key, record, error) in tqdm(
                                zip(jobs, results), total=len(jobs), disable=not progress,
                                desc=f"converting {split}", unit="sample"):
                            if error:
                                report.skipped[key] = error
                                print(f"SKIPPED {error}", file=sys.stderr, flush=True)
                            else:
                                writer.write(record)
                                scores[split].setdefault(job[2], []).append(job[4])
                        report.written[split] = writer.count
                finally:
                    if pool:
                        pool.shutdown()
        summary = action_summary(scores, actions)
        report.notes = {"actions": summary}
        with open(os.path.join(out_dir, aqa7.ACTIONS_FILE), "w") as f:
            json.dump({"actions": summary, "score_std": "population (ddof=0), training split only",
                       "splits": list(splits)}, f, indent=2)
        report.save(os.path.join(out_dir, "conversion_report.json"))
    return report


def _convert_with_beam(split_jobs, shared, out_dir, shards, report, scores, runner, num_workers,
                       beam_pipeline_options):
    """The splits' conversion as one Beam pipeline (`beam_pipeline.write_splits`), reported as
    the process pool's (`report.written`, `report.skipped`, a SKIPPED line each, and the
    training scores of the samples written, by action)."""
    jobs = {split: [job[:5] for job in jobs] for split, jobs in split_jobs.items()}
    written, skipped, _ = beam_pipeline.write_splits(
        jobs, functools.partial(_beam_job, shared), out_dir, shards, runner=runner,
        num_workers=num_workers, beam_pipeline_options=beam_pipeline_options)
    report.written.update(written)
    for split in jobs:
        for _, key, action, _, score in jobs[split]:
            if key in skipped:
                report.skipped[key] = skipped[key]
                print(f"SKIPPED {skipped[key]}", file=sys.stderr, flush=True)
            else:
                scores[split].setdefault(action, []).append(score)


def format_actions(summary: List[Dict[str, object]]) -> str:
    lines = ["Per action (score mean / std over the training samples written):"]
    for a in summary:
        stats = (f"mean {a['train_score_mean']:.2f}  std {a['train_score_std']:.2f}"
                 if a["num_train"] else "no training samples")
        lines.append(f"  {a['index']} {a['name']:<18} train {a['num_train']:>4}  "
                     f"test {a['num_test']:>4}  {stats}")
    return "\n".join(lines)


def main(argv):
    del argv
    from absl import flags
    from aqa_tf.config import ConfigError
    f = flags.FLAGS
    try:
        for name in f.actions:
            aqa7.action_index(name)
    except ValueError as error:
        raise ConfigError(f"--actions: {error}") from None
    unknown = [s for s in f.splits if s not in aqa7.SPLIT_FILES]
    if unknown:
        raise ConfigError(f"--splits: unknown {unknown}; known: {', '.join(aqa7.SPLIT_FILES)}")
    report = convert(f.root, f.out_dir, actions=tuple(f.actions), width=f.width, height=f.height,
                     num_shards_train=f.num_shards_train, num_shards_test=f.num_shards_test,
                     num_workers=f.num_workers, jpeg_quality=f.jpeg_quality,
                     splits=tuple(f.splits), overwrite=f.overwrite,
                     runner=beam_pipeline.runner_from_flags(),
                     beam_pipeline_options=f.beam_pipeline_options)
    print(report.summary())
    print(format_actions(report.notes["actions"]))
    return 1 if report.skipped else 0


def define_flags():
    from absl import flags
    flags.DEFINE_string("root", None, "AQA-7 release folder: <action>-out/ frame folders and "
                        f"{aqa7.SPLIT_DIR}/ split files.")
    flags.DEFINE_list("actions", list(aqa7.ACTIONS), "Actions to convert (names).")
    common.define_output_flags()
    beam_pipeline.define_flags()
    flags.mark_flags_as_required(["root", "out_dir"])


if __name__ == "__main__":
    from aqa_tf import flag_defs
    define_flags()
    flag_defs.run(main)
