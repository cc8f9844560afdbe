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

Apache Beam is optional (`pip install -r requirements-beam.txt`: it moves protobuf) and imported
only when a Beam runner is used. The DirectRunner runs on this machine, in `--num_workers`
processes (default: one per CPU). Another runner's workers must read the source files and write
the output folder where this process sees them (a shared file system): the staging folder is a
local path, renamed into place by this process (so Dataflow, whose workers see only cloud
storage, is not served yet). Their environment must have this project and its requirements
installed (e.g. an SDK container image).
"""

import contextlib
import functools
import glob
import importlib
import importlib.util
import io
import json
import logging
import os
import shlex
import shutil
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from aqa_tf.config import ConfigError
from aqa_tf.data import shards as shards_lib

LOCAL = "local"  # the converter's own process pool, no Beam
DEFAULT_RUNNER = "DirectRunner"
INSTALL = "pip install -r requirements-beam.txt"
SKIPPED = "skipped"  # tag of the side output of bad samples
_OUTCOME = ".beam-outcome"  # file of the skipped samples and counts, beside the shards

# job -> (sample key, serialized record or None, reason or None): exactly one of the two.
JobFn = Callable[[object], Tuple[str, Optional[bytes], Optional[str]]]


def beam_available() -> bool:
    """Whether Apache Beam is installed (without importing it: that takes seconds)."""
    return importlib.util.find_spec("apache_beam") is not None


def pipeline_options(runner: str, num_workers: int = 0, extra: str = ""):
    """The `PipelineOptions` of a conversion: `--runner`, on the DirectRunner multi-process
    execution with `num_workers` processes (0: one per CPU), then `extra` (a string of pipeline
    options as on a command line, e.g. a Flink master or a Dataflow project; given later, they
    override the ones before).

    Raises:
      ConfigError: Beam is not installed (naming the install command), or an option value is
        invalid (Beam's own message, in one line).
    """
    if not beam_available():
        raise ConfigError(f"--runner={runner} needs Apache Beam, which is not installed: "
                          f"{INSTALL} (or --runner={LOCAL})")
    from apache_beam.options.pipeline_options import PipelineOptions
    flags = [f"--runner={runner}"]
    if runner == DEFAULT_RUNNER:
        # Worker processes at warnings only: see `_quiet_local_runner`.
        flags += ["--direct_running_mode=multi_processing",
                  f"--direct_num_workers={num_workers or os.cpu_count() or 1}",
                  "--default_sdk_harness_log_level=WARNING"]
    try:
        flags += shlex.split(extra or "")
    except ValueError as error:
        raise ConfigError(f"--beam_pipeline_options={extra!r}: {error}") from None
    options = PipelineOptions(flags)
    # Beam's argument parser reports a bad value with its whole usage text and SystemExit:
    # parse now, keeping its last line (the error) for the user.
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            options.get_all_options()
    except SystemExit:
        lines = usage.getvalue().strip().splitlines() or ["invalid options"]
        raise ConfigError(f"--beam_pipeline_options={extra!r}: "
                          f"{lines[-1].split('error: ', 1)[-1]}") from None
    return options


def check_runner(runner: str, num_workers: int = 0, extra: str = ""):
    """Refuses a runner that cannot run before any work is done: `LOCAL` always can; a Beam
    runner needs Beam installed and valid options (`pipeline_options`)."""
    if runner != LOCAL:
        pipeline_options(runner, num_workers, extra)


def _runner(runner: str, options):
    """The runner of the pipeline: `runner` itself (a name Beam knows), except the
    DirectRunner, which is Beam's FnApiRunner built as Beam's DirectRunner builds it. Beam's
    DirectRunner first tries its Prism runner, a program it downloads from the network (a
    conversion must not), which ignores `--direct_running_mode` and `--direct_num_workers`;
    the FnApiRunner is what it falls back to, and it runs the workers as asked."""
    if runner != DEFAULT_RUNNER:
        return runner
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
    # The workers get the pipeline options (e.g. --pickle_library) as Beam's DirectRunner
    # hands them over.
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


@contextlib.contextmanager
def _quiet_local_runner(runner: str):
    """Beam's logs at warnings only, on the DirectRunner: at INFO it logs every local port and
    worker start and stop (a hundred lines per conversion). Another runner's INFO lines say
    where the job runs (e.g. Dataflow's job page) and are kept."""
    logger = logging.getLogger("apache_beam")
    level = logger.level
    if runner == DEFAULT_RUNNER:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def importable(fn):
    """`fn` under a name that Beam's workers (other processes) can import: a converter run as
    `python -m tfrecords_tools.X` defines its functions in `__main__`, which a worker's
    `__main__` is not, so they are taken from `tfrecords_tools.X` itself (a `functools.partial`
    keeps its arguments)."""
    if isinstance(fn, functools.partial):
        return functools.partial(importable(fn.func), *fn.args, **fn.keywords)
    if getattr(fn, "__module__", None) == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is not None and spec.name and spec.name != "__main__":
            return getattr(importlib.import_module(spec.name), fn.__qualname__)
    return fn


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
            key, record, reason = self._job_fn(job)
            if reason is not None:
                yield beam.pvalue.TaggedOutput(SKIPPED, (key, reason))
            else:
                yield record

    return ConvertFn


def _skipped_line(item: Tuple[str, str], split: str) -> str:
    return json.dumps({"split": split, "key": item[0], "reason": item[1]})


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
                 beam_pipeline_options: str = "") -> Tuple[Dict[str, int], Dict[str, str]]:
    """Converts the jobs of every split in one Beam pipeline, writing `<split>-*.tfrecord` into
    `out_dir` (the converter's staging folder).

    Args:
      jobs: split -> the converter's jobs (picklable; each is given to `job_fn` on a worker).
      job_fn: job -> (sample key, serialized record, None) or (sample key, None, reason); a
        module-level function (or a `functools.partial` of one): it is pickled to the workers.
      out_dir: the folder of the shards.
      num_shards: split -> shard count (at most one per job; empty shards are removed).
      runner, num_workers, beam_pipeline_options: see `pipeline_options`.

    Returns:
      (written, skipped): split -> records written; sample key -> reason, sorted by key.

    Raises:
      ConfigError: see `pipeline_options`, or an unknown runner.
    """
    options = pipeline_options(runner, num_workers, beam_pipeline_options)
    import apache_beam as beam
    convert_fn = _convert_fn_class()(importable(job_fn))
    outcome_dir = os.path.join(out_dir, _OUTCOME)
    try:
        pipeline = beam.Pipeline(runner=_runner(runner, options), options=options)
    except ValueError as error:  # an unknown runner: Beam lists the known ones
        raise ConfigError(f"--runner={runner}: {error}") from None
    with _quiet_local_runner(runner), pipeline:
        lines = []
        for split, split_jobs in jobs.items():
            results = (
                pipeline
                | f"{split}: list samples" >> beam.Create(list(split_jobs))
                | f"{split}: convert" >> beam.ParDo(convert_fn).with_outputs(SKIPPED,
                                                                             main="records"))
            if split_jobs:  # an empty split writes no shard, as ShardedWriter leaves none
                _ = results.records | f"{split}: write" >> beam.io.WriteToTFRecord(
                    os.path.join(out_dir, split), file_name_suffix=".tfrecord",
                    num_shards=min(num_shards[split], len(split_jobs)))
            lines.append(results[SKIPPED]
                         | f"{split}: skipped" >> beam.Map(_skipped_line, split=split))
            lines.append(results.records
                         | f"{split}: count" >> beam.combiners.Count.Globally()
                         | f"{split}: count line" >> beam.Map(_count_line, split=split))
        _ = (lines | "outcome" >> beam.Flatten()
             | "write outcome" >> beam.io.WriteToText(os.path.join(outcome_dir, "outcome"),
                                                      shard_name_template="", num_shards=1))
    written, skipped = {split: 0 for split in jobs}, {}
    with open(os.path.join(outcome_dir, "outcome")) as f:
        for line in f:
            item = json.loads(line)
            if "written" in item:
                written[item["split"]] += item["written"]
            else:
                skipped[item["key"]] = item["reason"]
    shutil.rmtree(outcome_dir, ignore_errors=True)
    for split in jobs:
        _drop_empty_shards(out_dir, split)
    return written, dict(sorted(skipped.items()))


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
    """`--runner`; its default (`DEFAULT_RUNNER`) is `LOCAL` where Beam is not installed, with a
    line saying so (a runner given explicitly is kept: without Beam it is refused)."""
    from absl import flags
    f = flags.FLAGS
    if f["runner"].present or beam_available():
        return f.runner
    print(f"note: Apache Beam is not installed ({INSTALL}): converting with --runner={LOCAL}",
          file=sys.stderr, flush=True)
    return LOCAL
