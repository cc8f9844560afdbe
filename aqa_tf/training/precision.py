"""`--mixed_precision=auto`: the dtype policy chosen by measuring the model on this machine.

Whether bfloat16 pays on a CPU depends on the CPU: with AVX512_BF16 or AMX its matrix units run
bf16 about twice as fast as float32 (C3D-AVG inference 1.8x on a Zen 4 EPYC); without them
(Zen 3, older Xeons) TensorFlow emulates bf16 and it is slower than float32. So on a CPU the
choice is a short probe: training steps of the run's own model (same backbone, heads, clip
geometry; the batch capped at `PROBE_MAX_BATCH`) in float32 and in mixed_bfloat16, the two
models stepping in turn so that other work on the machine slows both alike (at least
`precision_probe_steps` rounds, more while they take under `PROBE_MIN_SECONDS`), keeping the
faster by the median over rounds of the two step times' ratio. float32 is kept unless bf16 is
at least `MIN_SPEEDUP` faster (float32 is the exact one). Before the model, one Conv3D is timed
in both (a fraction of a second): where bf16 runs it at less than `MIN_CONV_RATIO` of float32's
speed (no native bf16: TensorFlow emulates it, 20x slower or worse), float32 is chosen without
running model steps, since Conv3D is most of these networks' work. The result is cached in the
run folder (`precision_probe.json`), keyed by the machine and the model, so a resumed run does
not probe again and a run moved to another machine does.

On a GPU no probe is needed: mixed_bfloat16 where the GPU has bf16 tensor cores (compute
capability >= 8.0, Ampere and later), mixed_float16 before that.
"""

import dataclasses
import hashlib
import json
import os
import platform
import time
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np

from aqa_tf.training import run_folder
from aqa_tf.config import ConfigError, DataConfig, ModelConfig, TrainConfig
from aqa_tf.devices import gpu_devices

PROBE_FILE = "precision_probe.json"
CANDIDATES = ("float32", "mixed_bfloat16")
MIN_SPEEDUP = 1.05
PROBE_MAX_BATCH = 4
MIN_CONV_RATIO = 0.5
PROBE_MIN_SECONDS = 5.0
PROBE_MAX_ROUNDS = 25


def cpu_description() -> Dict[str, str]:
    """CPU model, family/model numbers and the flags that decide bf16 speed (from
    /proc/cpuinfo on Linux; `platform` elsewhere)."""
    info = {"model_name": platform.processor() or platform.machine(), "cores": str(os.cpu_count())}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read().split("\n\n")[0]
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["model_name"] = value
        elif key in ("cpu family", "model"):
            info[key.replace(" ", "_")] = value
        elif key == "flags":
            wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
            info["flags"] = " ".join(f for f in value.split() if f in wanted)
    return info


def machine_line() -> str:
    """One line naming the CPU, for every printed speed figure."""
    cpu = cpu_description()
    numbers = (f" (family {cpu['cpu_family']} model {cpu['model']})"
               if "cpu_family" in cpu else "")
    return (f"{cpu['model_name']}{numbers}, {cpu['cores']} cores, "
            f"flags: {cpu.get('flags') or 'n/a'}")


def random_batch(model: keras.Model, model_config: ModelConfig, data_config: DataConfig,
                 rng: np.random.Generator) -> Tuple[dict, dict]:
    """A fixed batch of random inputs and targets for `model` (an `AQAModel`) at the configured
    geometry, each head filling its own (full-length captions: the caption head's worst
    case)."""
    return model.synthetic_batch(rng, data_config.batch_size)


def conv3d_gflops(shape, dtype: str, warmup: int = 1, steps: int = 3,
                  training: bool = False) -> Optional[float]:
    """GFLOP/s of one 3x3x3 'same' Conv3D `[batch, frames, height, width, in] -> filters`
    (`shape`, 6 ints) in `dtype`, run alone (multiply-adds count 2), compiled as the Keras
    backend compiles (tf.function on TensorFlow, jax.jit on JAX); the fastest of `steps`
    timed calls.

    `training`: its training step instead, the forward pass and both gradients (input and
    filter), counted as 3x the forward FLOPs as the benchmark counts a model's training: the
    speed a network made only of this convolution would train at, the ceiling of a training
    step that the kernels, not the framework, set. None on a backend other than TensorFlow
    and JAX."""
    batch, frames, height, width, channels, filters = shape
    rng = np.random.default_rng(0)
    x = keras.ops.cast(rng.standard_normal(shape[:5]).astype("float32"), dtype)
    kernel = keras.ops.cast(rng.standard_normal((3, 3, 3, channels, filters)).astype(
        "float32") * 0.05, dtype)
    conv = _training_step() if training else _compiled(
        lambda a, b: keras.ops.conv(a, b, 1, "same"))
    if conv is None:
        return None

    if keras.backend.backend() == "jax":
        import jax

        def call():  # waits for the device without copying the result to the host
            return jax.block_until_ready(conv(x, kernel))
    else:
        def call():
            return [np.asarray(t) for t in keras.tree.flatten(conv(x, kernel))]

    for _ in range(max(warmup, 1)):
        call()
    seconds = []
    for _ in range(max(steps, 1)):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    # The fastest step: a peak, not an average over a shared machine's slower moments.
    flop = 2.0 * batch * frames * height * width * filters * 27 * channels
    return (3.0 if training else 1.0) * flop / min(seconds) / 1e9


def _training_step():
    """`(x, kernel) -> (d loss/dx, d loss/d kernel)` of a 'same' Conv3D, compiled by the
    backend's compiler; None on backends other than TF and JAX. The loss is the sum of the
    squared output, so that the gradients need the forward pass (of a plain sum they would
    not, and the compiler would drop it)."""
    def loss(a, b):
        return keras.ops.sum(keras.ops.square(keras.ops.cast(
            keras.ops.conv(a, b, 1, "same"), "float32")))

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(autograph=False)
        def step(a, b):
            with tf.GradientTape() as tape:
                tape.watch([a, b])
                value = loss(a, b)
            return tape.gradient(value, [a, b])
        return step
    if backend == "jax":
        import jax
        return jax.jit(jax.grad(loss, argnums=(0, 1)))
    return None


def _compiled(fn):
    """`fn` compiled by the Keras backend's compiler."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        return tf.function(fn)
    if backend == "jax":
        import jax
        return jax.jit(fn)
    return fn


def backend_description() -> Dict[str, str]:
    """The Keras backend and its version (TensorFlow's or JAX's)."""
    backend = keras.backend.backend()
    module = __import__("tensorflow" if backend == "tensorflow" else backend)
    return {"backend": backend, "version": getattr(module, "__version__", "")}


# The quick check before the model probe: C3D's conv3a at 1/4 width on 2 clips.
CONV_CHECK = (2, 8, 28, 28, 64, 64)


def _gpu_capability() -> Optional[Tuple[int, int]]:
    """Compute capability of the backend's first GPU; None without a GPU."""
    gpus = gpu_devices()
    if not gpus:
        return None
    if keras.backend.backend() == "jax":
        major, _, minor = str(getattr(gpus[0], "compute_capability", "0.0")).partition(".")
        return int(major), int(minor or 0)
    import tensorflow as tf
    return tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability",
                                                                         (0, 0)))


def _gpu_policy() -> Optional[str]:
    capability = _gpu_capability()
    if capability is None:
        return None
    return "mixed_bfloat16" if tuple(capability) >= (8, 0) else "mixed_float16"


def _probe_key(model_config: ModelConfig, data_config: DataConfig,
               train_config: TrainConfig) -> str:
    described = {"machine": cpu_description(), "backend": backend_description(),
                 "keras": keras.__version__, "model": dataclasses.asdict(model_config),
                 "geometry": [data_config.batch_size, data_config.num_clips,
                              data_config.clip_length, data_config.crop_size],
                 "jit_compile": train_config.jit_compile,
                 "freeze_backbone": train_config.freeze_backbone}
    return hashlib.sha1(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def measure(policies, model_config: ModelConfig, data_config: DataConfig,
            train_config: TrainConfig, rounds: int, warmup: int = 2,
            min_seconds: float = PROBE_MIN_SECONDS,
            max_rounds: int = PROBE_MAX_ROUNDS) -> Dict[str, List[float]]:
    """Seconds of each timed training step of the configured model under each of `policies`
    (random batch, the run's optimizer and losses): one model per policy, built side by side,
    `warmup` untimed steps of each, then rounds that step each model in turn: at least
    `rounds`, more while the timed rounds have taken under `min_seconds` (up to `max_rounds`).

    In turn, not one policy after the other, so that other work on the machine (two test
    workers training side by side) slows both alike: in one CI run on a Zen 4, the fastest of 3
    float32 steps, then of up to 3 bf16 steps, gave bf16/fp32 0.98x (the quiet machine: 1.25x)."""
    from aqa_tf.training import optim
    from aqa_tf.models import aqa_model
    keras.backend.clear_session()
    keras.utils.set_random_seed(train_config.seed)
    try:
        models = {}
        for policy in policies:
            keras.mixed_precision.set_global_policy(policy)
            model = aqa_model.build_aqa_model(model_config, data_config)
            optim.compile_model(model, model_config, train_config,
                                optim.make_optimizer(train_config, aqa_model.backbone_of(model)))
            models[policy] = model
        x, y = random_batch(models[policies[0]], model_config, data_config,
                            np.random.default_rng(0))
        for model in models.values():
            for _ in range(warmup):
                model.train_on_batch(x, y)
        seconds = {policy: [] for policy in policies}
        start = time.perf_counter()
        done = 0
        while done < max(rounds, 1) or (time.perf_counter() - start < min_seconds and
                                        done < max_rounds):
            for policy, model in models.items():
                step_start = time.perf_counter()
                model.train_on_batch(x, y)
                seconds[policy].append(time.perf_counter() - step_start)
            done += 1
        return seconds
    finally:
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("float32")


def bf16_speedup(seconds: Dict[str, List[float]]) -> float:
    """The median over rounds of float32's step time over bf16's in the same round. Under load
    (a quickstart training beside the probe, 2-core Zen 4, 8 probes of 20 rounds) it ranged
    1.14-1.36x, against 0.97-1.25x for the ratio of each precision's fastest step; quiet,
    1.17-1.28x and 1.17-1.24x."""
    return float(np.median(np.array(seconds["float32"]) / np.array(seconds["mixed_bfloat16"])))


def choose(model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig,
           cache_dir: str = "", log=print) -> str:
    """The Keras policy name for `train_config.mixed_precision` (`auto` resolved as the module
    docstring says; any other value returned as its policy). Prints what it chose and why."""
    requested = train_config.mixed_precision
    if requested != "auto":
        return "float32" if requested == "none" else requested
    if train_config.distribution == "multi_worker":
        # The probe would start TensorFlow's runtime before the collective ops are configured
        # (and each worker could choose differently).
        raise ConfigError("--mixed_precision=auto does not combine with --distribution="
                          "multi_worker: run the probe on one machine of the cluster "
                          "(python -m aqa_tf.benchmark --mixed_precision=auto ...) and pass "
                          "the precision it chose")
    gpu_policy = _gpu_policy()
    if gpu_policy:
        log(f"--mixed_precision=auto: {gpu_policy} (GPU)")
        return gpu_policy
    key = _probe_key(model_config, data_config, train_config)
    path = os.path.join(cache_dir, PROBE_FILE) if cache_dir else ""
    cached = _read_probe(path) if path else None
    if cached and cached.get("key") == key:
        log(f"--mixed_precision=auto: {cached['chosen']} (probe cached in {path}: "
            f"{cached['how']})")
        return cached["chosen"]
    record = _probe(model_config, data_config, train_config)
    log(f"--mixed_precision=auto: {record['chosen']} (probe: {record['how']})")
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        run_folder.write_json(path, {"key": key, **record})
    return record["chosen"]


def _probe(model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig) -> dict:
    """Measures and chooses: the record `choose` caches (without its key)."""
    steps = max(train_config.precision_probe_steps, 1)
    probe_data = dataclasses.replace(data_config,
                                     batch_size=min(data_config.batch_size, PROBE_MAX_BATCH))
    conv = {dtype: conv3d_gflops(CONV_CHECK, dtype) for dtype in ("float32", "bfloat16")}
    conv_ratio = conv["bfloat16"] / conv["float32"]
    if conv_ratio < MIN_CONV_RATIO:
        # Decided by the convolution alone: no model steps in either precision (float32's
        # would only print a figure; they took 20-30 s of every quickstart start on a Zen 3).
        speeds = {"float32": None, "mixed_bfloat16": None}
        speedup, rounds = None, 0
        chosen = "float32"
        how = (f"a bf16 Conv3D runs at {conv_ratio:.2f}x float32's speed on {machine_line()} "
               f"({conv['bfloat16']:.1f} vs {conv['float32']:.1f} GFLOP/s), so no training "
               "steps were needed")
    else:
        seconds = measure(CANDIDATES, model_config, probe_data, train_config, steps)
        speedup = bf16_speedup(seconds)
        rounds = len(seconds["float32"])
        speeds = {policy: probe_data.batch_size / float(np.median(s))
                  for policy, s in seconds.items()}
        chosen = "mixed_bfloat16" if speedup >= MIN_SPEEDUP else "float32"
        how = (f"{rounds} training steps of this model in each, in turn, at batch "
               f"{probe_data.batch_size} on {machine_line()}: float32 "
               f"{speeds['float32']:.2f}, mixed_bfloat16 {speeds['mixed_bfloat16']:.2f} "
               f"training samples/s (median step), bf16/fp32 {speedup:.2f}x (median of the "
               "rounds)")
    return {"chosen": chosen, "machine": machine_line(), "how": how, "rounds": rounds,
            "batch_size": probe_data.batch_size, "train_samples_per_s": speeds,
            "bf16_speedup": speedup, "conv3d_gflop_per_s": conv, "min_speedup": MIN_SPEEDUP}


def _read_probe(path: str) -> Optional[dict]:
    """The probe result cached at `path` (`PROBE_FILE`), None where there is none."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def evaluation_policy(requested: str, run_dir: str, log=print) -> str:
    """The Keras policy to evaluate a run's checkpoint in: the one the run trained in, so that
    its final report's figures come out again. An explicit `--mixed_precision` is that policy;
    `auto` is what training resolved it to: the GPU's policy on a GPU, else the choice its probe
    recorded in the run folder (`PROBE_FILE` in `run_dir`), float32 where there is none (a
    checkpoint from elsewhere). No probe runs: which precision trains faster here does not
    decide how a trained model was evaluated."""
    if requested != "auto":
        return "float32" if requested == "none" else requested
    gpu_policy = _gpu_policy()
    if gpu_policy:
        log(f"--mixed_precision=auto: {gpu_policy} (GPU)")
        return gpu_policy
    path = os.path.join(run_dir, PROBE_FILE)
    cached = _read_probe(path)
    if cached:
        log(f"--mixed_precision=auto: {cached['chosen']}, the precision the run trained in "
            f"({path})")
        return cached["chosen"]
    log(f"--mixed_precision=auto: float32 (no {PROBE_FILE} in {run_dir or '.'})")
    return "float32"
