"""Devices, distribution strategies (`--distribution`, registered in `registry.DISTRIBUTIONS`),
the dtype policy and seeding of a run."""

import keras
import tensorflow as tf

from aqa_tf.registry import DISTRIBUTIONS


def setup_devices(cpu_replicas: int = 0):
    """Splits the CPU into `cpu_replicas` logical devices. Call it before anything touches
    TensorFlow's runtime (it cannot change devices afterwards)."""
    if cpu_replicas > 1:
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)


@DISTRIBUTIONS.register("default")
def _default_strategy() -> tf.distribute.Strategy:
    """One device."""
    return tf.distribute.get_strategy()


@DISTRIBUTIONS.register("mirrored")
def _mirrored_strategy() -> tf.distribute.Strategy:
    """All local GPUs, or the logical CPUs (`--cpu_replicas`) when there is no GPU."""
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


@DISTRIBUTIONS.register("multi_worker")
def _multi_worker_strategy() -> tf.distribute.Strategy:
    """The workers of the TF_CONFIG cluster."""
    return tf.distribute.MultiWorkerMirroredStrategy()


def make_strategy(distribution: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy registered as `distribution`."""
    return DISTRIBUTIONS.get(distribution, "distribution")()


def configure_run(seed: int, mixed_precision: str):
    """Seeds Python, NumPy and the backend, and sets the global dtype policy (`none`: float32)."""
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(
        "float32" if mixed_precision == "none" else mixed_precision)
