"""Devices, distribution strategies (`--distribution`, registered in `registry.DISTRIBUTIONS`),
the dtype policy and seeding of a run.

The strategies are TensorFlow's; TensorFlow is imported where one is made or asked about, so
that `configure_run` and `setup_devices` serve a run under another Keras backend on a machine
without TensorFlow (`KERAS_BACKEND=jax python -m aqa_tf.benchmark` on a GPU machine)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import keras

from aqa_tf.registry import DISTRIBUTIONS

if TYPE_CHECKING:  # annotations only: TensorFlow is imported where it is used
    import tensorflow as tf


def setup_devices(cpu_replicas: int = 0):
    """Splits the CPU into `cpu_replicas` logical devices. Call it before anything touches
    TensorFlow's runtime (it cannot change devices afterwards)."""
    if cpu_replicas > 1:
        if keras.backend.backend() != "tensorflow":
            from aqa_tf.config import ConfigError
            raise ConfigError(f"--cpu_replicas splits TensorFlow's CPU device: it has no "
                              f"effect on KERAS_BACKEND={keras.backend.backend()}")
        import tensorflow as tf
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)


def gpu_devices() -> list:
    """The GPUs of the Keras backend (JAX devices on JAX, TensorFlow's physical devices
    otherwise)."""
    if keras.backend.backend() == "jax":
        import jax
        return [d for d in jax.devices() if d.platform == "gpu"]
    import tensorflow as tf
    return tf.config.list_physical_devices("GPU")


@DISTRIBUTIONS.register("default")
def _default_strategy() -> tf.distribute.Strategy:
    """One device."""
    import tensorflow as tf
    return tf.distribute.get_strategy()


@DISTRIBUTIONS.register("mirrored")
def _mirrored_strategy() -> tf.distribute.Strategy:
    """All local GPUs, or the logical CPUs (`--cpu_replicas`) when there is no GPU."""
    import tensorflow as tf
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


@functools.lru_cache(maxsize=None)
def _multi_worker_strategy_class():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """`tf.distribute.MultiWorkerMirroredStrategy` whose `reduce` takes what Keras 3's `fit`
        gives it: a nested structure (the first batch, reduced to build the model) and per-replica
        scalars with `axis=0` (the step's logs). TensorFlow's collective strategy reduces one value
        at a time and fails on both (tensorflow/tensorflow#72388, keras-team/keras#20585);
        `MirroredStrategy.reduce` maps over structures. Here each value of a structure is reduced
        as TensorFlow's strategy reduces it, a scalar across the replicas (`axis=None`)."""

        def reduce(self, reduce_op, value, axis):
            reduce_one = super().reduce

            def reduce_value(v):
                local = self.experimental_local_results(v)[0]
                scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
                return reduce_one(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(reduce_value, value)

    return MultiWorkerMirroredStrategy


@DISTRIBUTIONS.register("multi_worker")
def _multi_worker_strategy() -> tf.distribute.Strategy:
    """The workers of the TF_CONFIG cluster (`{"cluster": {"worker": [host:port, ...]}, "task":
    {"type": "worker", "index": i}}`), each with its local GPUs (or its CPU). Worker 0 is the
    chief (unless the cluster names a `chief` task). Create it before any other TensorFlow
    operation: it configures the collective operations."""
    return _multi_worker_strategy_class()()


def make_strategy(distribution: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy registered as `distribution`. On another Keras backend
    (JAX) only `default` exists: `tf.distribute` strategies drive TensorFlow's devices."""
    strategy = DISTRIBUTIONS.get(distribution, "distribution")
    backend = keras.backend.backend()
    if backend != "tensorflow" and distribution != "default":
        from aqa_tf.config import ConfigError
        raise ConfigError(f"--distribution={distribution} is a tf.distribute strategy: it runs "
                          f"on KERAS_BACKEND=tensorflow, not {backend} (use "
                          "--distribution=default there)")
    return strategy()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several processes (`--distribution=multi_worker`)."""
    import tensorflow as tf
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on the workers of a
    multi-worker cluster other than the chief (worker 0)."""
    return strategy.extended.should_checkpoint


def barrier(strategy: tf.distribute.Strategy):
    """Returns once every worker of a multi-worker cluster has called it (at once otherwise):
    a collective sum of nothing."""
    if is_multi_worker(strategy):
        import tensorflow as tf
        strategy.reduce(tf.distribute.ReduceOp.SUM, tf.constant(0.0), axis=None)


def worker_name(strategy: tf.distribute.Strategy) -> str:
    """`worker<i>` of a multi-worker cluster (`chief` for a chief task), '' otherwise."""
    resolver = strategy.cluster_resolver if is_multi_worker(strategy) else None
    if resolver is None or not resolver.task_type:
        return ""
    return resolver.task_type + ("" if resolver.task_type == "chief" else str(resolver.task_id))


def configure_run(seed: int, mixed_precision: str, deterministic: bool = False):
    """Seeds Python, NumPy and the backend, and sets the global dtype policy (`none`: float32;
    `auto` must be resolved first, `aqa_tf.training.precision.choose`). `deterministic`:
    TensorFlow's ops run deterministically (the input order is the pipeline's business,
    `--deterministic`)."""
    if mixed_precision == "auto":
        raise ValueError("mixed_precision=auto: resolve it with "
                         "aqa_tf.training.precision.choose first")
    keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(
        "float32" if mixed_precision == "none" else mixed_precision)
