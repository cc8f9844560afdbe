"""Apache Beam plumbing shared by the project's pipelines (the dataset converters'
`tfrecords_tools.beam_pipeline`, batch scoring's `aqa_tf.batch_predict`): the choice of runner,
the pipeline options, the DirectRunner on local processes, and functions Beam's workers can
import.

Apache Beam is optional (`pip install -r requirements-beam.txt`: it moves protobuf) and imported
only when a Beam runner is used.
"""

import contextlib
import functools
import importlib
import importlib.util
import io
import logging
import os
import shlex
import sys

from aqa_tf.config import ConfigError

LOCAL = "local"  # this machine's own processes, no Beam
DEFAULT_RUNNER = "DirectRunner"
INSTALL = "pip install -r requirements-beam.txt"


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


def make_pipeline(runner: str, options):
    """A `beam.Pipeline` on `runner` with `options` (`pipeline_options`).

    Raises:
      ConfigError: an unknown runner (Beam's list of the known ones).
    """
    import apache_beam as beam
    try:
        return beam.Pipeline(runner=_runner(runner, options), options=options)
    except ValueError as error:
        raise ConfigError(f"--runner={runner}: {error}") from None


@contextlib.contextmanager
def quiet_local_runner(runner: str):
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


def resolve_runner(runner: str, given: bool, doing: str = "converting") -> str:
    """The runner to use: `runner`, except that its default (`DEFAULT_RUNNER`, not `given` by
    the user) becomes `LOCAL` where Beam is not installed, with a line saying so (a runner given
    explicitly is kept: without Beam, `pipeline_options` refuses it)."""
    if given or runner != DEFAULT_RUNNER or beam_available():
        return runner
    print(f"note: Apache Beam is not installed ({INSTALL}): {doing} with --runner={LOCAL}",
          file=sys.stderr, flush=True)
    return LOCAL
