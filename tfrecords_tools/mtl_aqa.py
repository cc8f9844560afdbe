r"""Converts MTL-AQA (annotations + extracted frames or event videos) into aqa-tf TFRecords.

  python -m tfrecords_tools.mtl_aqa --annotations_dir D --frames_dir F --out_dir O
  python -m tfrecords_tools.mtl_aqa --annotations_dir D --videos_dir V --out_dir O

For every annotated sample of the split lists it stores the `sample_length` frames ending at
`end_frame` (103 in the reference pipeline) plus `jitter_margin` frames on both sides (the
training-time temporal jitter), resized to `--width` x `--height` (171x128; MSCADC: 640x360),
JPEG-encoded, with all labels and the caption token ids. Samples that cannot be read are
reported with their key and the problem and skipped; the good ones are written; the exit status
is non-zero if anything was skipped.

Frame numbers are those of the annotation files: 1-based indices of the frames of the whole
event video. `--frames_pattern` locates a frame file from `{event}`, `{sample}` and `{frame}`
(Python format fields), e.g. the release layout `{event:02d}/{frame:06d}.jpg`.

Judges' scores and dive numbers: `--annotations_file` (default `final_annotations_dict.pkl`, a
name under `--annotations_dir` or a path) may name one of the re-released annotation dicts,
`final_annotations_dict_with_dive_number.pkl` (CoRe: 7 `judge_scores` and a FINA
`dive_number`, e.g. '407C') or `augmented_final_annotations_dict.pkl` (MUSDL: `judge_scores`);
the file is chosen explicitly, never guessed, so the same command always writes the same
records. Dive numbers are stored as given. A judge score outside 0..10 or off the 0.5 grid is
a labelling error: that sample is written without judges (its final score kept) and named in
the report. A final score that differs from the judging rule (3 middle of 7 awards x
difficulty) by more than 0.05 is written as given and named in the report as a warning. Both
lists are in `conversion_report.json` and the printed summary.

`--runner=DirectRunner` (the default where Apache Beam is installed) converts as one Beam
pipeline on `--num_workers` local processes, another Beam runner with `--beam_pipeline_options`;
`--runner=local` with this machine's process pool, without Beam (`tfrecords_tools.beam_pipeline`:
the records are the same).
"""

import concurrent.futures
import functools
import os
import shutil
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np

from aqa_tf.data import captions
from aqa_tf.data import features
from aqa_tf.data import shards as shards_lib
from aqa_tf.data.shards import ShardedWriter
from aqa_tf.data.video import resize_frame
from tfrecords_tools import beam_pipeline
from tfrecords_tools import common
from tfrecords_tools.common import ConversionReport

Key = Tuple[int, int]
LABELS = ("position", "armstand", "rotation_type", "ss_no", "tw_no")
DEFAULT_ANNOTATIONS_FILE = "final_annotations_dict.pkl"
JUDGES_RULE_TOLERANCE = 0.05  # points: final scores are given to 0.05


class SampleError(Exception):
    """A sample that cannot be converted; the message names the sample and the problem."""


def _normalise_key(key) -> Key:
    return int(key[0]), int(key[1])


def _load_pickle(path: str):
    return common.load_pickle(path, f"{path} is missing (expected the MTL-AQA release files)")


def annotations_path(annotations_dir: str, annotations_file: str) -> str:
    """Where the annotation dict is: `annotations_file` itself when it names a folder (a path),
    else that name under `annotations_dir`."""
    if os.path.dirname(annotations_file):
        return annotations_file
    return os.path.join(annotations_dir, annotations_file)


def load_annotations(annotations_dir: str,
                     annotations_file: str = DEFAULT_ANNOTATIONS_FILE) -> Dict[str, object]:
    """Reads the release files, normalising the numpy-typed keys to `(int, int)`.

    `annotations_file` (see `annotations_path`) may be one of the re-released annotation dicts
    that add `judge_scores` (and `dive_number`); captions, splits and vocabulary always come
    from `annotations_dir`.

    Returns:
      dict with `annotations` {key: dict}, `captions` {key: [words]}, `splits` {'train': [keys],
      'test': [keys]}, `vocab` (Vocabulary), `captions_without_annotation` [keys] and
      `annotations_file` (the path read).
    """
    def load(name):
        return _load_pickle(os.path.join(annotations_dir, name))

    path = annotations_path(annotations_dir, annotations_file)
    annotations = {_normalise_key(k): dict(v) for k, v in _load_pickle(path).items()}
    caption_dict = {_normalise_key(k): list(v) for k, v in load("final_captions_dict.pkl").items()}
    splits = {"train": [_normalise_key(k) for k in load("train_split_0.pkl")],
              "test": [_normalise_key(k) for k in load("test_split_0.pkl")]}
    vocab = captions.Vocabulary.load(os.path.join(annotations_dir, "vocab.json"))
    return {"annotations": annotations, "captions": caption_dict, "splits": splits,
            "vocab": vocab, "annotations_file": path,
            "captions_without_annotation": sorted(k for k in caption_dict if k not in annotations)}


def judge_scores_problem(scores) -> Optional[str]:
    """Why a sample's judge scores cannot be used (None if they can): not `NUM_JUDGES` of them,
    or one outside 0..10 or off the 0.5 grid (e.g. 45.0 typed for 4.5)."""
    values = np.asarray(scores, np.float64).reshape(-1)
    if len(values) != features.NUM_JUDGES:
        return f"{len(values)} judge scores, expected {features.NUM_JUDGES}"
    bad = [float(v) for v in values
           if not (np.isfinite(v) and 0.0 <= v <= 10.0 and abs(2 * v - round(2 * v)) < 1e-6)]
    if bad:
        return (f"judge scores {[float(v) for v in values]}: {bad} outside 0..10 or off the "
                "0.5 grid; stored without judges")
    return None


def judges_rule_score(scores, difficulty: float) -> float:
    """The final score the judging rule gives: the sum of the 3 middle of the 7 awards (the 2
    highest and 2 lowest dropped) times the degree of difficulty."""
    return float(np.sort(np.asarray(scores, np.float64))[2:5].sum() * difficulty)


def check_judges(annotations: Dict[Key, dict], keys) -> Dict[str, Dict[str, str]]:
    """Checks the judge scores of `keys` (those that have them).

    Returns:
      `bad_judge_scores` {sample key: problem} (`judge_scores_problem`: such a sample is stored
      without judges, with its final score) and `rule_disagreements` {sample key: message}: a
      final score more than `JUDGES_RULE_TOLERANCE` from `judges_rule_score` (broadcast rounding
      or another panel rule; reported, still written).
    """
    bad, disagree = {}, {}
    for key in keys:
        annotation = annotations.get(key, {})
        if annotation.get("judge_scores") is None:
            continue
        sample_key = features.sample_key_for(*key)
        problem = judge_scores_problem(annotation["judge_scores"])
        if problem:
            bad[sample_key] = problem
            continue
        final = float(annotation["final_score"])
        rule = judges_rule_score(annotation["judge_scores"], float(annotation["difficulty"]))
        if abs(final - rule) > JUDGES_RULE_TOLERANCE + 1e-9:
            disagree[sample_key] = (f"final_score {final:g}, the judges' rule gives {rule:.2f} "
                                    f"(difficulty {float(annotation['difficulty']):g})")
    return {"bad_judge_scores": bad, "rule_disagreements": disagree}


def frame_range(end_frame: int, sample_length: int, jitter_margin: int) -> Tuple[int, int, int]:
    """(first required, first wanted, last wanted) event frame numbers (1-based).

    Required: the `sample_length` frames ending at `end_frame` (clamped at frame 1). Wanted in
    addition: `jitter_margin` frames on each side, kept when the video has them.
    """
    first_required = max(1, end_frame - sample_length + 1)
    return first_required, max(1, first_required - jitter_margin), end_frame + jitter_margin


def read_frames_from_folder(key: Key, first: int, last: int, end_frame: int, frames_dir: str,
                            pattern: str) -> Dict[int, np.ndarray]:
    """Frame number -> RGB frame for the frames of [first, last] that exist on disk."""
    frames = {}
    for number in range(first, last + 1):
        path = os.path.join(frames_dir, pattern.format(event=key[0], sample=key[1], frame=number))
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        try:
            frames[number] = features.decode_jpeg(data)
        except ValueError:
            raise SampleError(f"undecodable image {path}") from None
    return frames


def read_frames_from_video(key: Key, first: int, last: int, videos_dir: str,
                           pattern: str) -> Dict[int, np.ndarray]:
    """Frame number -> RGB frame for [first, last], seeking in the event video (PyAV).

    Seeks to the keyframe before `first` and decodes forward until `last`: only about one
    sample's frames are ever held in memory, never the whole broadcast.
    """
    import av
    path = os.path.join(videos_dir, pattern.format(event=key[0], sample=key[1]))
    if not os.path.exists(path):
        raise SampleError(f"video {path} does not exist")
    frames = {}
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            time_base = stream.time_base
            start_pts = int((first - 1) / rate / time_base)
            container.seek(max(start_pts, 0), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                number = int(round(float(frame.pts * time_base * rate))) + 1
                if number > last:
                    break
                if number >= first:
                    frames[number] = frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError) as error:
        raise SampleError(f"cannot decode {path}: {error}") from None
    return frames


def convert_sample(key: Key, annotation: dict, caption_words: Optional[List[str]],
                   vocab: captions.Vocabulary, options: dict) -> bytes:
    """Builds the serialized record of one sample; raises SampleError naming the problem."""
    sample_key = features.sample_key_for(*key)
    try:
        end_frame = int(annotation["end_frame"])
        first_required, first, last = frame_range(end_frame, options["sample_length"],
                                                  options["jitter_margin"])
        if options.get("videos_dir"):
            frames = read_frames_from_video(key, first, last, options["videos_dir"],
                                            options["video_pattern"])
        else:
            frames = read_frames_from_folder(key, first, last, end_frame, options["frames_dir"],
                                             options["frames_pattern"])
        missing = [n for n in range(first_required, end_frame + 1) if n not in frames]
        if missing:
            raise SampleError(f"missing {len(missing)} of the frames {first_required}..{end_frame}"
                              f" (first missing: {missing[0]}, last missing: {missing[-1]})")
        # Keep the contiguous run of frames around the required range.
        lo = first_required
        while lo - 1 >= first and lo - 1 in frames:
            lo -= 1
        hi = end_frame
        while hi + 1 <= last and hi + 1 in frames:
            hi += 1
        size = options["width"], options["height"]
        jpegs = [features.encode_jpeg(resize_frame(frames[n], *size), options["jpeg_quality"])
                 for n in range(lo, hi + 1)]
        caption = vocab.encode(caption_words, where=f"caption of {sample_key}") \
            if caption_words else []
        sample = features.Sample(
            sample_key=sample_key, frames=jpegs, height=options["height"], width=options["width"],
            final_score=float(annotation["final_score"]),
            difficulty=float(annotation["difficulty"]),
            caption=caption, action_id=0, start_frame=int(annotation["start_frame"]),
            end_frame=end_frame, end_index=end_frame - lo,
            judge_scores=[float(v) for v in np.reshape(annotation.get("judge_scores", ()), -1)],
            dive_number=str(annotation.get("dive_number") or ""),
            **{name: int(annotation[name]) for name in LABELS})
        return features.serialize_sample(sample)
    except SampleError as error:
        raise SampleError(f"sample {sample_key}: {error}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise SampleError(f"sample {sample_key}: {error}") from None


def _job(args):
    split, key, annotation, caption_words, vocab, options = args
    try:
        return split, key, convert_sample(key, annotation, caption_words, vocab, options), None
    except SampleError as error:
        return split, key, None, str(error)


def _beam_job(shared, job):
    """`_job` for `beam_pipeline`: its jobs leave out the vocabulary and options that every
    sample shares (`shared`, pickled once with the DoFn, not once per sample)."""
    _, key, record, error = _job((*job, *shared))
    return features.sample_key_for(*key), record, error


def _split_jobs(split: str, data, bad_judges, options: dict, report: ConversionReport) -> list:
    """The conversion jobs of a split's annotated samples (the others are reported skipped),
    without the judge scores of the samples in `bad_judges`; in event and frame order, so
    that a worker's seeks in an event video go forward."""
    jobs = []
    for key in data["splits"][split]:
        if key not in data["annotations"]:
            report.skipped[features.sample_key_for(*key)] = (
                f"listed in the {split} split but has no annotation")
            continue
        annotation = data["annotations"][key]
        if features.sample_key_for(*key) in bad_judges:
            annotation = {k: v for k, v in annotation.items() if k != "judge_scores"}
        jobs.append((split, key, annotation, data["captions"].get(key), data["vocab"], options))
    jobs.sort(key=lambda job: (job[1][0], job[2]["end_frame"]))
    return jobs


def convert(annotations_dir: str, out_dir: str, frames_dir: Optional[str] = None,
            videos_dir: Optional[str] = None, frames_pattern: str = "{event:02d}/{frame:06d}.jpg",
            video_pattern: str = "{event:02d}.mp4", sample_length: int = 103,
            jitter_margin: int = 3, width: int = 171, height: int = 128, num_shards_train: int = 8,
            num_shards_test: int = 4, num_workers: int = 0, jpeg_quality: int = 90,
            splits=("train", "test"), progress: bool = True, overwrite: bool = False,
            annotations_file: str = DEFAULT_ANNOTATIONS_FILE, runner: str = beam_pipeline.LOCAL,
            beam_pipeline_options: str = "") -> ConversionReport:
    """Converts the MTL-AQA splits; returns the report (also saved as conversion_report.json).

    `annotations_file`: see `load_annotations`. The report's notes name the judge scores that
    were checked (`check_judges`: bad ones, rule disagreements) and how many written samples
    have judges. `runner`: `beam_pipeline.LOCAL` (a process pool of `num_workers`) or a Beam
    runner (`beam_pipeline.write_splits`, with `beam_pipeline_options`)."""
    from tqdm import tqdm
    if bool(frames_dir) == bool(videos_dir):
        raise ValueError("give exactly one of frames_dir and videos_dir")
    shards_lib.check_out_dir(out_dir, overwrite)
    beam_pipeline.check_runner(runner, num_workers, beam_pipeline_options)
    data = load_annotations(annotations_dir, annotations_file)
    judges = check_judges(data["annotations"], [k for split in splits
                                                for k in data["splits"][split]])
    options = dict(frames_dir=frames_dir, videos_dir=videos_dir, frames_pattern=frames_pattern,
                   video_pattern=video_pattern, sample_length=sample_length,
                   jitter_margin=jitter_margin, width=width, height=height,
                   jpeg_quality=jpeg_quality)
    report = ConversionReport()
    # Written into a staging folder that replaces out_dir when complete.
    with shards_lib.fresh_folder(out_dir, overwrite) as out_dir:
        shutil.copy(os.path.join(annotations_dir, "vocab.json"),
                    os.path.join(out_dir, "vocab.json"))
        shards = {"train": num_shards_train, "test": num_shards_test}
        if runner != beam_pipeline.LOCAL:
            _convert_with_beam(splits, data, judges, options, out_dir, shards, report, runner,
                               num_workers, beam_pipeline_options)
        else:
            workers = num_workers or os.cpu_count() or 1
            for split in splits:
                jobs = _split_jobs(split, data, judges["bad_judge_scores"], options, report)
                pool = concurrent.futures.ProcessPoolExecutor(workers) if workers > 1 else None
                results = pool.map(_job, jobs, chunksize=4) if pool else map(_job, jobs)
                try:
                    num_shards = min(shards[split], max(len(jobs), 1))
                    with ShardedWriter(out_dir, split, num_shards) as writer:
                        for _, key, record, error in tqdm(
                                results, total=len(jobs), disable=not progress,
                                desc=f"converting {split}", unit="sample"):
                            if error:
                                report.skipped[features.sample_key_for(*key)] = error
                                print(f"SKIPPED {error}", file=sys.stderr, flush=True)
                            else:
                                writer.write(record)
                        report.written[split] = writer.count
                finally:
                    if pool:
                        pool.shutdown()
        report.notes = {"captions_without_annotation": [
            features.sample_key_for(*k) for k in data["captions_without_annotation"]],
            **_judges_notes(data, splits, judges, report)}
        report.save(os.path.join(out_dir, "conversion_report.json"))
    return report


def _convert_with_beam(splits, data, judges, options, out_dir, shards, report, runner,
                       num_workers, beam_pipeline_options):
    """The splits' conversion as one Beam pipeline (`beam_pipeline.write_splits`), reported as
    the process pool's (`report.written`, `report.skipped` and a SKIPPED line each)."""
    jobs, shared = {}, (data["vocab"], options)
    for split in splits:
        split_jobs = _split_jobs(split, data, judges["bad_judge_scores"], options, report)
        jobs[split] = [job[:4] for job in split_jobs]  # (split, key, annotation, caption)
    written, skipped, _ = beam_pipeline.write_splits(
        jobs, functools.partial(_beam_job, shared), out_dir, shards, runner=runner,
        num_workers=num_workers, beam_pipeline_options=beam_pipeline_options)
    report.written.update(written)
    for key, error in skipped.items():
        report.skipped[key] = error
        print(f"SKIPPED {error}", file=sys.stderr, flush=True)


def _judges_notes(data, splits, judges, report: ConversionReport) -> Dict[str, object]:
    """The report's notes on judges and dive numbers (counted over the written samples)."""
    written = [k for split in splits for k in data["splits"][split]
               if k in data["annotations"] and features.sample_key_for(*k) not in report.skipped]
    with_judges = [k for k in written if data["annotations"][k].get("judge_scores") is not None
                   and features.sample_key_for(*k) not in judges["bad_judge_scores"]]
    return {"annotations_file": data["annotations_file"],
            "samples_with_judges": len(with_judges),
            "samples_with_dive_number": sum(bool(data["annotations"][k].get("dive_number"))
                                            for k in written),
            "bad_judge_scores": judges["bad_judge_scores"],
            "judges_rule_disagreements": judges["rule_disagreements"],
            "judges_rule_disagreement_count": len(judges["rule_disagreements"])}


def judges_summary(notes: Dict[str, object]) -> List[str]:
    """Lines of the printed summary on judges (nothing when the annotations have none)."""
    bad, disagree = notes.get("bad_judge_scores", {}), notes.get("judges_rule_disagreements", {})
    if not (notes.get("samples_with_judges") or bad):
        return []
    lines = [f"  {notes['samples_with_judges']} samples with judges' scores, "
             f"{notes.get('samples_with_dive_number', 0)} with dive numbers"]
    if bad:
        lines.append(f"  {len(bad)} samples with BAD judge scores (written without judges):")
        lines += [f"    {key}: {problem}" for key, problem in sorted(bad.items())]
    if disagree:
        lines.append(f"  WARNING: {len(disagree)} final scores disagree with the judges' rule "
                     f"by more than {JUDGES_RULE_TOLERANCE} (written as given): "
                     + ", ".join(sorted(disagree)))
    return lines


def main(argv):
    del argv
    from absl import flags
    f = flags.FLAGS
    report = convert(f.annotations_dir, f.out_dir, frames_dir=f.frames_dir,
                     videos_dir=f.videos_dir, frames_pattern=f.frames_pattern,
                     video_pattern=f.video_pattern, sample_length=f.sample_length,
                     jitter_margin=f.jitter_margin, width=f.width, height=f.height,
                     num_shards_train=f.num_shards_train, num_shards_test=f.num_shards_test,
                     num_workers=f.num_workers, jpeg_quality=f.jpeg_quality,
                     splits=tuple(f.splits), overwrite=f.overwrite,
                     annotations_file=f.annotations_file,
                     runner=beam_pipeline.runner_from_flags(),
                     beam_pipeline_options=f.beam_pipeline_options)
    print("\n".join([report.summary()] + judges_summary(report.notes)))
    notes = report.notes.get("captions_without_annotation")
    if notes:
        print(f"  {len(notes)} captions without annotation ignored: {', '.join(notes)}")
    return 1 if report.skipped else 0


def define_flags():
    from absl import flags
    flags.DEFINE_string("annotations_dir", None, "Folder with final_annotations_dict.pkl, "
                        "final_captions_dict.pkl, train_split_0.pkl, test_split_0.pkl, vocab.json.")
    flags.DEFINE_string("annotations_file", DEFAULT_ANNOTATIONS_FILE,
                        "The annotation dict: a file name under --annotations_dir, or a path. "
                        "The re-released final_annotations_dict_with_dive_number.pkl (CoRe) or "
                        "augmented_final_annotations_dict.pkl (MUSDL) add the judges' scores "
                        "(and dive numbers), which are then stored too.")
    flags.DEFINE_string("frames_dir", None, "Root of the extracted frames (see --frames_pattern).")
    flags.DEFINE_string("videos_dir", None, "Folder of the event videos (see --video_pattern).")
    flags.DEFINE_string("frames_pattern", "{event:02d}/{frame:06d}.jpg",
                        "Frame file under --frames_dir; fields {event}, {sample}, {frame} "
                        "(frame: 1-based number in the event video, as in the annotations).")
    flags.DEFINE_string("video_pattern", "{event:02d}.mp4", "Video file under --videos_dir.")
    flags.DEFINE_integer("sample_length", 103, "Frames ending at end_frame that are stored.")
    flags.DEFINE_integer("jitter_margin", 3, "Extra frames stored on each side (temporal jitter).")
    common.define_output_flags("Stored frame width (MSCADC: 640).",
                               "Stored frame height (MSCADC: 360).")
    beam_pipeline.define_flags()
    flags.mark_flags_as_required(["annotations_dir", "out_dir"])


if __name__ == "__main__":
    from aqa_tf import flag_defs
    define_flags()
    flag_defs.run(main)
