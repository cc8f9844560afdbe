r"""Converts the JIGSAWS release (capture1 videos + meta files) into aqa-tf TFRecords, per fold.

  python -m tfrecords_tools.jigsaws --root ROOT --splits=PATH/splits.pkl \
      [--labels=PATH/label.pkl] --out_dir OUT [--tasks=Suturing,Needle_Passing,Knot_Tying]

ROOT holds `<Task>/video/<Task>_<trial>_capture1.avi` and `<Task>/meta_file_<Task>.txt`
(`aqa_tf.data.jigsaws` describes the layout). `--splits` is the 4-fold split of the USDL/MUSDL
authors (`splits.pkl`: task -> 4 lists of trial names); every trial it lists is converted.

Per task, a folder `OUT/<Task>/` of shards `fold0-00000-of-0000N.tfrecord` .. `fold3-...`: one
record per trial (sample key `Suturing_B001`), holding `--num_frames` frames (160) sampled
uniformly over the whole capture1 video as the authors do (positions
`floor(linspace(0, n - 1, 160))` of its n frames), resized to `--width` x `--height` (320x240)
and JPEG-encoded. Labels: `final_score` the total GRS (6..30), `judge_scores` the 6 GRS
elements (1..5), `action_id` the task's index (`aqa_tf.data.jigsaws.TASK_IDS`) and
`action_name` the task; `start_frame` 1, `end_frame` n (the video's frames), `end_index` the
last stored frame; no difficulty, no sub-actions. Run k trains on the other folds and tests on
fold k: `--train_split=fold1,fold2,fold3 --test_split=fold0`.

Labels come from the meta files. With `--labels` (the authors' `label.pkl`) those are used, and
every trial whose meta labels differ is named in the report's notes (written all the same). A
meta line whose total is not the sum of its elements, or whose elements are not whole numbers
1..5, or that is otherwise malformed, skips its trial (with `--labels` too: the release
contradicts itself there). A trial that cannot be converted (that, a missing or undecodable
video, no labels anywhere) is reported by its key (`Suturing_B001`, or `Suturing meta line 7`
where the line names no trial) and skipped; the others are written; the exit status is 1 if
anything was skipped. A missing or malformed splits or labels file, a missing `--root` or an
unknown task stops the conversion with one `error:` line (exit status 2), before anything is
written.

Beside the task folders: `conversion_report.json` (as the other converters: written per
`<Task>/fold<k>`, skipped, notes) and `jigsaws_folds.json` (per task and fold: the trials
written, their count, mean and population standard deviation of their total GRS).

`--runner=DirectRunner` (the default where Apache Beam is installed) converts as one Beam
pipeline on `--num_workers` local processes, another Beam runner with `--beam_pipeline_options`;
`--runner=local` with this machine's process pool, without Beam (`tfrecords_tools.beam_pipeline`:
the records, folds and report are the same).
"""

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from aqa_tf.data import features
from aqa_tf.data import jigsaws
from aqa_tf.data import shards as shards_lib
from aqa_tf.data.shards import DataError, ShardedWriter
from aqa_tf.data.video import VideoError, read_uniform_frames
from tfrecords_tools import beam_pipeline
from tfrecords_tools import common
from tfrecords_tools.common import ConversionReport

_TRIAL_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class TrialError(Exception):
    """A trial that cannot be converted; the message names the problem."""


class MetaLineError(Exception):
    """A meta line that names no usable labels: `key` is the trial it names (or `<Task> meta
    line N` where it names none), `reason` the problem."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


@dataclasses.dataclass(frozen=True)
class MetaEntry:
    """One trial's line of a meta file."""

    trial: str
    skill: str
    total: int
    elements: Tuple[int, ...]
    line: int


def _load_pickle(path: str, what: str, flag: str):
    return common.load_pickle(path, f"{flag}={path}: no such file (expected the {what})",
                              f"{flag}={path}")


def load_splits(path: str, tasks: Sequence[str] = jigsaws.TASKS) -> Dict[str, List[List[str]]]:
    """The folds of `tasks` from the authors' `splits.pkl`: task -> `NUM_FOLDS` lists of trial
    names (`Suturing_B001`, ...), each named after its task.

    Raises:
      FileNotFoundError: the file is missing.
      DataError: it is not a pickle, or not such a dict for every task of `tasks`.
    """
    data = _load_pickle(path, "4-fold split of the USDL/MUSDL authors, splits.pkl", "--splits")
    where = f"--splits={path}"
    if not isinstance(data, dict):
        raise DataError(f"{where}: holds a {type(data).__name__}, expected a dict task -> "
                        f"{jigsaws.NUM_FOLDS} lists of trial names")
    folds = {}
    for task in tasks:
        if task not in data:
            raise DataError(f"{where}: no task {task!r} (it holds {sorted(map(str, data))})")
        value = data[task]
        if not isinstance(value, (list, tuple)) or len(value) != jigsaws.NUM_FOLDS or not all(
                isinstance(fold, (list, tuple)) for fold in value):
            raise DataError(f"{where}: {task} is not a list of {jigsaws.NUM_FOLDS} folds (lists "
                            "of trial names)")
        for k, fold in enumerate(value):
            bad = [t for t in fold if not isinstance(t, str) or not t.startswith(task + "_")
                   or not _TRIAL_NAME.match(t)]
            if bad:
                raise DataError(f"{where}: {task} fold {k} lists {bad[0]!r}, not a trial name "
                                f"of the task ({task}_<trial>, e.g. {task}_B001)")
        folds[task] = [list(fold) for fold in value]
    return folds


def load_labels(path: str) -> Dict[str, List[object]]:
    """The authors' `label.pkl`: trial name -> its 6 GRS elements (checked per trial when it is
    used, `jigsaws.grs_problem`).

    Raises:
      FileNotFoundError: the file is missing.
      DataError: it is not a pickle, or not a dict trial name -> list of scores.
    """
    data = _load_pickle(path, "GRS labels of the USDL/MUSDL authors, label.pkl", "--labels")
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, (list, tuple, np.ndarray))
            for k, v in data.items()):
        raise DataError(f"--labels={path}: expected a dict trial name -> list of the "
                        f"{len(jigsaws.GRS_ELEMENTS)} GRS elements")
    return {k: list(np.asarray(v).reshape(-1).tolist()) for k, v in data.items()}


def _whole(text: str, what: str, key: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise MetaLineError(key, f"{what} {text!r} is not a whole number")
    return int(value)


def parse_meta_line(text: str, task: str, number: int) -> MetaEntry:
    """One non-blank line of `meta_file_<task>.txt` (fields separated by any whitespace).

    Raises:
      MetaLineError: keyed by the trial it names, or `<task> meta line <number>`.
    """
    fields = text.split()
    trial = fields[0]
    named = trial.startswith(task + "_") and len(trial) > len(task) + 1 and \
        bool(_TRIAL_NAME.match(trial))
    key = trial if named else f"{task} meta line {number}"
    where = f"meta_file_{task}.txt line {number}"
    if not named:
        raise MetaLineError(key, f"{where}: {trial!r} is not a trial name of {task} "
                            f"({task}_<trial>, e.g. {task}_B001)")
    if len(fields) != 3 + len(jigsaws.GRS_ELEMENTS):
        raise MetaLineError(key, f"{where}: {len(fields)} fields, expected "
                            f"{3 + len(jigsaws.GRS_ELEMENTS)} (trial, skill N/I/E, total GRS, "
                            f"{len(jigsaws.GRS_ELEMENTS)} GRS elements)")
    if fields[1] not in jigsaws.SKILL_LEVELS:
        raise MetaLineError(key, f"{where}: skill {fields[1]!r} is not one of "
                            f"{'/'.join(jigsaws.SKILL_LEVELS)}")
    total = _whole(fields[2], f"{where}: total GRS", key)
    elements = tuple(_whole(v, f"{where}: GRS element", key) for v in fields[3:])
    problem = jigsaws.grs_problem(elements)
    if problem:
        raise MetaLineError(key, f"{where}: {problem}")
    if total != sum(elements):
        raise MetaLineError(key, f"{where}: total GRS {total} is not the sum "
                            f"{sum(elements)} of its elements {list(elements)}")
    return MetaEntry(trial, fields[1], total, elements, number)


def read_meta(root: str, task: str) -> Tuple[Optional[Dict[str, MetaEntry]], Dict[str, str]]:
    """(trial -> meta entry, or None when the task has no meta file; problems: key ->
    reason, for each malformed line and each trial given twice with different labels)."""
    path = jigsaws.meta_path(root, task)
    if not os.path.isfile(path):
        return None, {}
    entries, problems = {}, {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                entry = parse_meta_line(text, task, number)
            except MetaLineError as error:
                problems[error.key] = error.reason
                continue
            first = entries.get(entry.trial)
            if first and first.elements != entry.elements:
                problems[entry.trial] = (f"meta_file_{task}.txt lines {first.line} and "
                                         f"{number} give different labels")
            entries.setdefault(entry.trial, entry)
    for trial in problems:
        entries.pop(trial, None)
    return entries, problems


def convert_trial(root: str, task: str, trial: str, elements: Sequence[int],
                  options: dict) -> bytes:
    """Serialized record of one trial; raises TrialError naming the problem."""
    path = jigsaws.video_path(root, task, trial)
    try:
        frames, total = read_uniform_frames(path, options["num_frames"],
                                            (options["height"], options["width"]))
        jpegs = [features.encode_jpeg(frame, options["jpeg_quality"]) for frame in frames]
        sample = features.Sample(
            sample_key=trial, frames=jpegs, height=options["height"], width=options["width"],
            final_score=float(sum(elements)), action_id=jigsaws.task_id(task),
            action_name=task, start_frame=1, end_frame=total, end_index=len(jpegs) - 1,
            judge_scores=[float(e) for e in elements])
        return features.serialize_sample(sample)
    except VideoError as error:
        raise TrialError(f"capture1 video: {error}") from None
    except (OSError, ValueError, TypeError) as error:
        raise TrialError(str(error)) from None


def _job(args):
    task, fold, trial, elements, root, options = args
    try:
        return convert_trial(root, task, trial, elements, options), None
    except TrialError as error:
        return None, str(error)


def _beam_job(shared, job):
    """`_job` for `beam_pipeline`: its jobs `(task, fold, trial, elements)` leave out the root
    and options that every trial shares (`shared`, pickled once with the DoFn, not once per
    trial); returns (trial, record, None) or (trial, None, reason)."""
    record, error = _job((*job, *shared))
    return job[2], record, error


def trial_labels(trial: str, meta: Optional[Dict[str, MetaEntry]],
                 labels: Optional[Dict[str, list]], notes: dict) -> Tuple[int, ...]:
    """The 6 GRS elements a trial is written with: `labels`' when given and it has the trial,
    else the meta file's. Disagreements and meta fallbacks go into `notes`.

    Raises:
      TrialError: no labels anywhere, or bad ones in `labels`.
    """
    entry = (meta or {}).get(trial)
    if labels is not None and trial in labels:
        problem = jigsaws.grs_problem(labels[trial])
        if problem:
            raise TrialError(f"--labels: {problem}")
        elements = tuple(int(float(e)) for e in labels[trial])
        if entry and entry.elements != elements:
            notes["label_disagreements"][trial] = (
                f"meta file {list(entry.elements)} (total {entry.total}), --labels "
                f"{list(elements)} (total {sum(elements)}): --labels used")
        return elements
    if entry:
        if labels is not None:
            notes["labels_from_meta"].append(trial)
        return entry.elements
    sources = ["not in its task's meta file" if meta is not None else
               "its task has no meta file"] + (["not in --labels"] if labels is not None else [])
    raise TrialError("no labels: " + ", ".join(sources))


def _skip(report: ConversionReport, key: str, reason: str):
    report.skipped[key] = reason
    print(f"SKIPPED {key}: {reason}", file=sys.stderr, flush=True)


def plan_task(root: str, task: str, folds: List[List[str]], labels, options: dict,
              report: ConversionReport) -> List[tuple]:
    """The conversion jobs of a task's trials, fold by fold (problems reported and skipped)."""
    meta, problems = read_meta(root, task)
    if meta is None:
        report.notes["meta_files_missing"].append(jigsaws.meta_path(root, task))
    for key, reason in problems.items():
        _skip(report, key, reason)
    jobs, listed = [], {}
    for k, fold in enumerate(folds):
        for trial in fold:
            if trial in listed:
                _skip(report, trial, f"listed in fold {k} and fold {listed[trial]} of --splits; "
                      f"kept in fold {listed[trial]}")
                continue
            listed[trial] = k
            if trial in problems:
                continue
            try:
                elements = trial_labels(trial, meta, labels, report.notes)
            except TrialError as error:
                _skip(report, trial, str(error))
                continue
            jobs.append((task, k, trial, elements, root, options))
    unlisted = sorted(set(meta or {}) - set(listed))
    if unlisted:
        report.notes["meta_trials_not_in_splits"][task] = unlisted
    return jobs


def fold_summary(written: Dict[Tuple[str, int], List[Tuple[str, int]]],
                 tasks: Sequence[str]) -> Dict[str, object]:
    """Per task: its action_id, and per fold the trials written, their count and the mean and
    population standard deviation (ddof=0) of their total GRS; and the same over the task."""
    def stats(pairs):
        totals = np.asarray([t for _, t in pairs], np.float64)
        return {"count": len(pairs),
                "total_grs_mean": float(totals.mean()) if len(pairs) else None,
                "total_grs_std": float(totals.std(ddof=0)) if len(pairs) else None}

    summary = {}
    for task in tasks:
        folds = [written.get((task, k), []) for k in range(jigsaws.NUM_FOLDS)]
        summary[task] = {
            "action_id": jigsaws.task_id(task),
            "folds": [{"split": jigsaws.fold_split(k), "trials": [t for t, _ in pairs],
                       **stats(pairs)} for k, pairs in enumerate(folds)],
            **stats([p for pairs in folds for p in pairs])}
    return summary


def _groups(jobs: List[tuple]) -> Dict[Tuple[str, int], List[tuple]]:
    """(task, fold) -> its jobs, in the order of `jobs` (a fold without jobs has no shards)."""
    groups = {}
    for job in jobs:
        groups.setdefault(job[:2], []).append(job)
    return groups


def _write(jobs: List[tuple], out_dir: str, num_shards: int, num_workers: int, progress: bool,
           report: ConversionReport) -> Dict[Tuple[str, int], List[Tuple[str, int]]]:
    """Converts `jobs` in worker processes into `<out_dir>/<Task>/fold<k>-*` shards; returns
    (task, fold) -> [(trial, total GRS)] written."""
    from tqdm import tqdm
    groups = _groups(jobs)
    workers = num_workers or os.cpu_count() or 1
    pool = concurrent.futures.ProcessPoolExecutor(workers) if workers > 1 else None
    results = pool.map(_job, jobs) if pool else map(_job, jobs)
    written = {}
    try:
        # Each writer renames its shards into place when the block ends without an error.
        with contextlib.ExitStack() as stack:
            writers = {group: stack.enter_context(ShardedWriter(
                jigsaws.task_dir(out_dir, group[0]), jigsaws.fold_split(group[1]),
                min(num_shards, len(members)))) for group, members in groups.items()}
            for job, (record, error) in tqdm(zip(jobs, results), total=len(jobs),
                                             disable=not progress, desc="converting",
                                             unit="trial"):
                if error:
                    _skip(report, job[2], error)
                    continue
                writers[job[:2]].write(record)
                written.setdefault(job[:2], []).append((job[2], int(sum(job[3]))))
    finally:
        if pool:
            pool.shutdown()
    return written


def _write_with_beam(jobs: List[tuple], root: str, options: dict, out_dir: str, num_shards: int,
                     report: ConversionReport, runner: str, num_workers: int,
                     beam_pipeline_options: str) -> Dict[Tuple[str, int], List[Tuple[str, int]]]:
    """`_write` as one Beam pipeline (`beam_pipeline.write_splits`): each (task, fold) is a
    split named `<Task>/fold<k>`, so its shards land in the task's folder as `_write` leaves
    them. The trials written and skipped are reported in the order of `jobs`, as `_write`
    reports them (the same SKIPPED lines, the same report)."""
    groups = _groups(jobs)
    if not groups:  # nothing to convert: no pipeline (and no shards, as `_write` leaves none)
        return {}
    splits = {group: f"{group[0]}/{jigsaws.fold_split(group[1])}" for group in groups}
    _, skipped, _ = beam_pipeline.write_splits(
        {splits[group]: [job[:4] for job in members] for group, members in groups.items()},
        functools.partial(_beam_job, (root, options)), out_dir,
        {split: num_shards for split in splits.values()}, runner=runner,
        num_workers=num_workers, beam_pipeline_options=beam_pipeline_options)
    written = {}
    for job in jobs:
        if job[2] in skipped:
            _skip(report, job[2], skipped[job[2]])
        else:
            written.setdefault(job[:2], []).append((job[2], int(sum(job[3]))))
    return written


def check_inputs(root: str, tasks: Sequence[str], **counts: int):
    """Refuses an unknown task or a count (`num_frames=160`, `width=320`, ...) below 1
    (ValueError naming the option), and a missing `root` (FileNotFoundError naming --root)."""
    for task in tasks:
        try:
            jigsaws.task_id(task)
        except ValueError as error:
            raise ValueError(f"--tasks: {error}") from None
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"--{name}={value} must be positive")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--root={root}: no such folder (expected the JIGSAWS release: "
                                "<Task>/video/*.avi and <Task>/meta_file_<Task>.txt)")


def convert(root: str, splits_path: str, out_dir: str, labels_path: Optional[str] = None,
            tasks: Sequence[str] = jigsaws.TASKS, num_frames: int = jigsaws.NUM_FRAMES,
            width: int = 320, height: int = 240, num_shards_per_fold: int = 1,
            num_workers: int = 0, jpeg_quality: int = 90, progress: bool = True,
            overwrite: bool = False, runner: str = beam_pipeline.LOCAL,
            beam_pipeline_options: str = "") -> ConversionReport:
    """Converts the trials of `tasks` listed in the splits file; returns the report (also
    saved as conversion_report.json).

    `runner`: `beam_pipeline.LOCAL` (a process pool of `num_workers`) or a Beam runner
    (`beam_pipeline.write_splits`, with `beam_pipeline_options`): the same shards and report.

    Raises:
      ValueError: an unknown task, a count below 1 (`check_inputs`).
      FileNotFoundError, DataError: a missing root, a missing or malformed splits or labels
        file, an unusable out_dir (all checked before anything is written).
      ConfigError: a Beam runner without Beam installed, or bad Beam options (checked before
        anything is read or written).
    """
    check_inputs(root, tasks, num_frames=num_frames, num_shards_per_fold=num_shards_per_fold,
                 width=width, height=height)
    shards_lib.check_out_dir(out_dir, overwrite)
    beam_pipeline.check_runner(runner, num_workers, beam_pipeline_options)
    folds = load_splits(splits_path, tasks)
    labels = load_labels(labels_path) if labels_path else None
    options = dict(num_frames=num_frames, width=width, height=height, jpeg_quality=jpeg_quality)
    report = ConversionReport(notes={
        "labels": labels_path or "meta files", "num_frames": num_frames,
        "label_disagreements": {}, "labels_from_meta": [], "meta_files_missing": [],
        "meta_trials_not_in_splits": {}})
    jobs = [job for task in tasks
            for job in plan_task(root, task, folds[task], labels, options, report)]
    # Written into a staging folder that replaces out_dir when complete.
    with shards_lib.fresh_folder(out_dir, overwrite) as staging:
        if runner != beam_pipeline.LOCAL:
            written = _write_with_beam(jobs, root, options, staging, num_shards_per_fold, report,
                                       runner, num_workers, beam_pipeline_options)
        else:
            written = _write(jobs, staging, num_shards_per_fold, num_workers, progress, report)
        for task in tasks:
            for k in range(jigsaws.NUM_FOLDS):
                report.written[f"{task}/{jigsaws.fold_split(k)}"] = len(written.get((task, k), []))
        summary = fold_summary(written, tasks)
        with open(os.path.join(staging, jigsaws.FOLDS_FILE), "w") as f:
            json.dump({"tasks": summary, "num_frames": num_frames,
                       "sampling": "floor(linspace(0, n - 1, num_frames)) of the n frames of "
                                   "each capture1 video",
                       "total_grs_std": "population (ddof=0)"}, f, indent=2)
        report.notes["folds"] = {task: [fold["count"] for fold in s["folds"]]
                                 for task, s in summary.items()}
        report.save(os.path.join(staging, "conversion_report.json"))
    return report


def format_notes(notes: Dict[str, object]) -> str:
    """The printed lines on labels and folds."""
    lines = [f"Labels from {notes['labels']}; trials written per fold:"]
    lines += [f"  {task:<15} " + " ".join(f"{n:>3}" for n in counts)
              for task, counts in notes.get("folds", {}).items()]
    disagree = notes.get("label_disagreements", {})
    if disagree:
        lines.append(f"  NOTE: {len(disagree)} trials' meta labels differ from --labels "
                     "(--labels used):")
        lines += [f"    {key}: {text}" for key, text in sorted(disagree.items())]
    for name, text in (("labels_from_meta", "not in --labels, labelled from the meta file"),
                       ("meta_files_missing", "missing meta files")):
        if notes.get(name):
            lines.append(f"  NOTE: {text}: {', '.join(notes[name])}")
    return "\n".join(lines)


def main(argv):
    del argv
    from absl import flags
    from aqa_tf.config import ConfigError
    f = flags.FLAGS
    try:
        check_inputs(f.root, f.tasks, num_frames=f.num_frames,
                     num_shards_per_fold=f.num_shards_per_fold, width=f.width, height=f.height)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    report = convert(f.root, f.splits, f.out_dir, labels_path=f.labels, tasks=tuple(f.tasks),
                     num_frames=f.num_frames, width=f.width, height=f.height,
                     num_shards_per_fold=f.num_shards_per_fold, num_workers=f.num_workers,
                     jpeg_quality=f.jpeg_quality, overwrite=f.overwrite,
                     runner=beam_pipeline.runner_from_flags(),
                     beam_pipeline_options=f.beam_pipeline_options)
    print(report.summary())
    print(format_notes(report.notes))
    return 1 if report.skipped else 0


def define_flags():
    from absl import flags
    flags.DEFINE_string("root", None, "JIGSAWS release folder: <Task>/video/<Task>_<trial>_"
                        "capture1.avi and <Task>/meta_file_<Task>.txt.")
    flags.DEFINE_string("splits", None, "The 4-fold split of the USDL/MUSDL authors "
                        "(splits.pkl: task -> 4 lists of trial names).")
    flags.DEFINE_string("labels", None, "The authors' label.pkl (trial -> 6 GRS elements): "
                        "used instead of the meta files' labels; disagreements are reported.")
    flags.DEFINE_list("tasks", list(jigsaws.TASKS), "Tasks to convert.")
    flags.DEFINE_integer("num_frames", jigsaws.NUM_FRAMES, "Frames stored per trial, sampled "
                         "uniformly over the whole capture1 video (the authors: 160).")
    flags.DEFINE_integer("num_shards_per_fold", 1, "Shards of each fold.")
    common.define_output_flags(
        "Stored frame width (the authors: 320).", "Stored frame height (the authors: 240).",
        width=320, height=240, splits=False)
    beam_pipeline.define_flags()
    flags.mark_flags_as_required(["root", "splits", "out_dir"])


if __name__ == "__main__":
    from aqa_tf import flag_defs
    define_flags()
    flag_defs.run(main)
