r"""Runs a dataset converter's per-sample jobs as one Apache Beam pipeline.

  python -m tfrecords_tools.mtl_aqa ... --runner=DirectRunner --num_workers=2
  python -m tfrecords_tools.mtl_aqa ... --runner=FlinkRunner \
      --beam_pipeline_options='--flink_master=HOST:8081 --parallelism=16'

The pipeline, per split: the converter's jobs (`beam.Create`) -> a `DoFn` that calls the
converter's own per-sample function (the one its process pool runs with `--runner=local`) ->
records on the main output, `(sample key, reason)` of a bad sample on a side output ->
`WriteToTFRecord` with the converter's fixed shard count, named as `aqa_tf.data.shards` names
shards (`<split>-00000-of-00008.tfrecord`), into the converter's staging folder
(`shards.fresh_folder`), which replaces the output folder only once everything is written. The
bad samples and the per-split record counts are written beside the shards by the pipeline and
read back here (a runner's workers may be other machines: a file is how they reach the report).

The records equal those of `--runner=local` (the same function makes them); which shard holds a
record, and its place in it, differ (Beam spreads records over the shards itself).

Apache Beam is optional (`aqa_tf.beam_lib`: the runner flags and options). The DirectRunner runs on
this machine, in `--num_workers` processes (default: one per CPU). Another runner's workers must
read the source files and write the output folder where this process sees them (a shared file
system): the staging folder is a local path, renamed into place by this process (so Dataflow, whose
workers see only cloud storage, is not served yet). Their environment must have this project and
its requirements installed (e.g. an SDK container image).
"""

import functools
import glob
import json
import os
import shutil
from typing import Callable, Dict, List, Sequence, Tuple

from aqa_tf.beam_lib import (  # noqa: F401 (the converters' names for them)
    DEFAULT_RUNNER, INSTALL, LOCAL, beam_available, check_runner, importable, make_pipeline,
    pipeline_options, quiet_local_runner, resolve_runner)
from aqa_tf.data import shards as shards_lib

SKIPPED = "skipped"  # tag of the side output of bad samples
_OUTCOME = ".beam-outcome"  # file of the skipped samples and counts, beside the shards

# job -> (sample key, serialized record or None, reason or None): exactly one of the two; a
# fourth element, when the function gives one, is what the converter's report needs of a written
# sample besides its record (JSON-serializable: it reaches the converter through a file).
JobFn = Callable[[object], Tuple]
INFO = "info"  # tag of the side output of the written samples' report information


@functools.lru_cache(maxsize=None)
def _convert_fn_class():
    """The `DoFn` class (defined once Beam is imported: Beam is optional)."""
    import apache_beam as beam

    class ConvertFn(beam.DoFn):
        """Calls the converter's per-sample function; the record goes to the main output, the
        `(sample key, reason)` of a sample that cannot be converted to the `SKIPPED` output."""

        def __init__(self, job_fn: JobFn):
            super().__init__()
            self._job_fn = job_fn

        def process(self, job):
            key, record, reason, *info = self._job_fn(job)
            if reason is not None:
                yield beam.pvalue.TaggedOutput(SKIPPED, (key, reason))
            else:
                yield record
                if info:
                    yield beam.pvalue.TaggedOutput(INFO, (key, info[0]))

    return ConvertFn


def _skipped_line(item: Tuple[str, str], split: str) -> str:
    return json.dumps({"split": split, "key": item[0], "reason": item[1]})


def _info_line(item: Tuple[str, object]) -> str:
    return json.dumps({"key": item[0], "info": item[1]})


def _count_line(count: int, split: str) -> str:
    return json.dumps({"split": split, "written": int(count)})


def _drop_empty_shards(out_dir: str, split: str) -> List[str]:
    """Removes the shards that received no record (Beam writes all `num_shards`, some empty
    after skipped samples or with fewer records than shards) and renumbers the others among
    themselves, as `ShardedWriter` leaves them; returns their paths."""
    paths = sorted(glob.glob(shards_lib.shard_pattern(out_dir, split)))
    kept = [p for p in paths if os.path.getsize(p) > 0]
    for path in paths:
        if path not in kept:
            os.remove(path)
    if len(kept) == len(paths):
        return kept
    # The new names end in `-of-<fewer>`: none of them is an old name still to be moved.
    renamed = [os.path.join(out_dir, shards_lib.shard_name(split, i, len(kept)))
               for i in range(len(kept))]
    for old, new in zip(kept, renamed):
        os.replace(old, new)
    return renamed


def write_splits(jobs: Dict[str, Sequence], job_fn: JobFn, out_dir: str,
                 num_shards: Dict[str, int], runner: str = DEFAULT_RUNNER, num_workers: int = 0,
                 beam_pipeline_options: str = ""
                 ) -> Tuple[Dict[str, int], Dict[str, str], Dict[str, object]]:
    """Converts the jobs of every split in one Beam pipeline, writing `<split>-*.tfrecord` into
    `out_dir` (the converter's staging folder).

    Args:
      jobs: split -> the converter's jobs (picklable; each is given to `job_fn` on a worker).
      job_fn: job -> (sample key, serialized record, None) or (sample key, None, reason),
        optionally with a fourth element, the written sample's report information (`JobFn`); a
        module-level function (or a `functools.partial` of one): it is pickled to the workers.
      out_dir: the folder of the shards.
      num_shards: split -> shard count (at most one per job; empty shards are removed).
      runner, num_workers, beam_pipeline_options: see `pipeline_options`.

    Returns:
      (written, skipped, info): split -> records written; sample key -> reason, sorted by key;
      sample key -> the fourth element `job_fn` gave for a written sample (empty without).

    Raises:
      ConfigError: see `pipeline_options`, or an unknown runner.
    """
    options = pipeline_options(runner, num_workers, beam_pipeline_options)
    import apache_beam as beam
    convert_fn = _convert_fn_class()(importable(job_fn))
    outcome_dir = os.path.join(out_dir, _OUTCOME)
    pipeline = make_pipeline(runner, options)
    with quiet_local_runner(runner), pipeline:
        lines = []
        for split, split_jobs in jobs.items():
            results = (
                pipeline
                | f"{split}: list samples" >> beam.Create(list(split_jobs))
                | f"{split}: convert" >> beam.ParDo(convert_fn).with_outputs(
                    SKIPPED, INFO, main="records"))
            if split_jobs:  # an empty split writes no shard, as ShardedWriter leaves none
                _ = results.records | f"{split}: write" >> beam.io.WriteToTFRecord(
                    os.path.join(out_dir, split), file_name_suffix=".tfrecord",
                    num_shards=min(num_shards[split], len(split_jobs)))
            lines.append(results[SKIPPED]
                         | f"{split}: skipped" >> beam.Map(_skipped_line, split=split))
            lines.append(results[INFO] | f"{split}: info" >> beam.Map(_info_line))
            lines.append(results.records
                         | f"{split}: count" >> beam.combiners.Count.Globally()
                         | f"{split}: count line" >> beam.Map(_count_line, split=split))
        _ = (lines | "outcome" >> beam.Flatten()
             | "write outcome" >> beam.io.WriteToText(os.path.join(outcome_dir, "outcome"),
                                                      shard_name_template="", num_shards=1))
    written, skipped, info = {split: 0 for split in jobs}, {}, {}
    with open(os.path.join(outcome_dir, "outcome")) as f:
        for line in f:
            item = json.loads(line)
            if "written" in item:
                written[item["split"]] += item["written"]
            elif "info" in item:
                info[item["key"]] = item["info"]
            else:
                skipped[item["key"]] = item["reason"]
    shutil.rmtree(outcome_dir, ignore_errors=True)
    for split in jobs:
        _drop_empty_shards(out_dir, split)
    return written, dict(sorted(skipped.items())), info


def define_flags():
    """`--runner` and `--beam_pipeline_options` (a converter's `--num_workers` is the
    DirectRunner's process count)."""
    from absl import flags
    flags.DEFINE_string(
        "runner", DEFAULT_RUNNER,
        f"'{LOCAL}': this machine's process pool, without Beam; otherwise an Apache Beam "
        f"runner ({DEFAULT_RUNNER}: on this machine, --num_workers processes; FlinkRunner, "
        f"SparkRunner, ...: see --beam_pipeline_options). Without Beam installed "
        f"({INSTALL}) the default is '{LOCAL}'.")
    flags.DEFINE_string(
        "beam_pipeline_options", "",
        "More Beam pipeline options, as on a command line, e.g. '--flink_master=HOST:8081 "
        "--parallelism=16' (the workers need this project and its requirements installed).")


def runner_from_flags() -> str:
    """`--runner` (`resolve_runner`: its default is `LOCAL` where Beam is not installed)."""
    from absl import flags
    return resolve_runner(flags.FLAGS.runner, flags.FLAGS["runner"].present)
