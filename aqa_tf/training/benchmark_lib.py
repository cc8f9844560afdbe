"""Throughput measurements of a model on this machine, and its FLOP count (`aqa_tf.benchmark`).

`measure_keras` times the input pipeline, training (through Keras's `fit`, as `aqa_tf.train`
trains) and inference on one fixed in-memory batch, counts the forward FLOPs per sample
(`forward_flops`) and relates the speeds to a peak measured in the same process and precision:
a C3D-sized Conv3D run alone, and its training step. `measure_tflite` converts the model to
TFLite variants and measures their size, latency and parity with the SavedModel.

The functions take configs and options as arguments and never read flags. Under
`KERAS_BACKEND=jax` the Keras measurements import no TensorFlow (TensorFlow is imported inside
the functions that need it).
"""

import math
import os
import time
from typing import Callable, Dict, Tuple

from aqa_tf.config import (BenchmarkOptions, CheckpointOptions, ConversionOptions, DataConfig,
                           EvalConfig, ModelConfig, TrainConfig)

PEAK_STEPS = 10  # timed calls of the peak Conv3D, at least


def timed(step: Callable[[], object], warmup: int, steps: int) -> float:
    """Seconds of `steps` calls of `step`, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def fit_seconds(model, x, y, warmup: int, steps: int) -> float:
    """Seconds of `steps` training steps on the batch `(x, y)` as `fit` runs them, after `warmup`
    untimed ones: the model's state stays with the backend between steps and no step waits for
    the loss of the one before it (`train_on_batch` returns its losses to Python and, on JAX,
    writes the state back into the Keras variables after every step).
    The timed call ends after its last step has finished (`fit` returns the final state)."""
    import keras
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        from aqa_tf.data import pipeline
        # A constant dataset has nothing to tune, and tf.data's autotuning thread can hold the
        # destruction of the iterator (when `fit` returns) for many seconds after long steps.
        batches = lambda: pipeline.without_autotune(
            tf.data.Dataset.from_tensors((x, y)).repeat())
    else:
        def batches():
            while True:
                yield x, y
    if warmup:
        model.fit(batches(), steps_per_epoch=warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(batches(), steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def input_pipeline(data_config: DataConfig, warmup: int, steps: int) -> Dict:
    """Training input pipeline samples/s on the records of `data_config.data_dir` (or why
    not)."""
    from aqa_tf.data import shards
    patterns = shards.shard_patterns(data_config.data_dir, data_config.train_split)
    if not data_config.data_dir:
        return {"input_pipeline_samples_per_s": None,
                "input_pipeline_note": "no --data_dir"}
    import tensorflow as tf
    from aqa_tf.data import pipeline
    missing = [pattern for pattern in patterns if not tf.io.gfile.glob(pattern)]
    if missing:
        return {"input_pipeline_samples_per_s": None,
                "input_pipeline_note": f"no records match {', '.join(missing)}"}
    iterator = iter(pipeline.build_dataset(data_config, "train", training=True, repeat=True))
    seconds = timed(lambda: next(iterator), warmup, steps)
    return {"input_pipeline_samples_per_s": data_config.batch_size * steps / seconds}


def on_device(arrays: Dict) -> Dict:
    """`arrays` copied to the backend's first GPU."""
    import keras
    if keras.backend.backend() == "jax":
        import jax
        return jax.device_put(arrays)
    import tensorflow as tf
    with tf.device("/GPU:0"):
        return {k: tf.identity(v) for k, v in arrays.items()}


def forward_flops(model, x, training: bool = False) -> float:
    """Floating-point operations of one sample's forward pass (multiply-adds count 2), on the
    inference graph at batch 1 (`training`: the training graph's, e.g. a query and its exemplar
    for CoRe and TSA): TensorFlow's profiler on TensorFlow; on JAX, the convolutions and
    matrix products of the traced computation (`jaxpr_flops`: XLA's own cost analysis counts
    cuDNN's convolutions as nothing on a GPU, and skips the multiply-adds on zero padding)."""
    from aqa_tf.models import aqa_model
    import keras
    inference = model if training else aqa_model.inference_model(model)
    names = list(inference.input.keys())
    if keras.backend.backend() == "jax":
        import jax

        def forward(trainable, non_trainable, inputs):
            return inference.stateless_call(trainable, non_trainable, inputs,
                                            training=training)[0]

        one = {k: x[k][:1] for k in names}
        jaxpr = jax.make_jaxpr(forward)(
            [v.value for v in inference.trainable_variables],
            [v.value for v in inference.non_trainable_variables], one)
        return jaxpr_flops(jaxpr.jaxpr)
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder
    specs = {k: tf.TensorSpec((1,) + tuple(x[k].shape[1:]), x[k].dtype) for k in names}
    graph = tf.function(lambda inputs: inference(inputs, training=training)).get_concrete_function(
        specs).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(model_analyzer.profile(graph, options=options).total_float_ops)


def jaxpr_flops(jaxpr) -> float:
    """2 x the multiply-adds of every convolution and matrix product in `jaxpr` (a JAX
    `Jaxpr`), those of nested computations included (a `scan` body counted `length` times, the
    costliest branch of a `cond`); elementwise operations are left out."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        out_size = math.prod(eqn.outvars[0].aval.shape)
        if name == "conv_general_dilated":
            kernel = eqn.invars[1].aval.shape
            out_features = kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
            total += 2.0 * out_size * math.prod(kernel) / out_features
        elif name == "dot_general":
            (contracting, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * out_size * math.prod(lhs[d] for d in contracting)
        inner = []
        for value in eqn.params.values():
            for item in value if isinstance(value, (list, tuple)) else [value]:
                item = getattr(item, "jaxpr", item)  # a ClosedJaxpr's Jaxpr
                if hasattr(item, "eqns"):
                    inner.append(jaxpr_flops(item))
        if inner:
            total += (max(inner) if name == "cond" else sum(inner)) * (
                eqn.params.get("length", 1) if name == "scan" else 1)
    return total


def peak_figures(precision: str, options: BenchmarkOptions) -> Dict:
    """GFLOP/s of the Conv3D `options.peak_conv` alone in `precision`: forward, and its training
    step (forward and both gradients: the ceiling of a training step made of convolutions,
    whose backward kernels run slower than forward ones). Each is the fastest of at least
    `PEAK_STEPS` calls after 2 warm-ups (the first calls of a process run slower)."""
    from aqa_tf.training import precision as precision_lib
    dtype = ("bfloat16" if "bfloat16" in precision else
             "float16" if "float16" in precision else "float32")
    shape = list(options.peak_conv)
    warmup = max(options.warmup_steps, 2)
    steps = max(options.benchmark_steps, PEAK_STEPS)
    return {"peak_conv3d_gflop_per_s": precision_lib.conv3d_gflops(shape, dtype, warmup, steps),
            "peak_conv3d_training_gflop_per_s": precision_lib.conv3d_gflops(
                shape, dtype, warmup, steps, training=True)}


def _header(data_config: DataConfig, model_config: ModelConfig, train_config: TrainConfig,
            precision: str, options: BenchmarkOptions) -> Dict:
    """What is measured, where: the first entries of the results."""
    from aqa_tf import devices
    from aqa_tf.training import optim
    from aqa_tf.training import precision as precision_lib
    return {
        "backbone": model_config.backbone, "width_multiplier": model_config.width_multiplier,
        "heads": list(model_config.heads), "precision": precision,
        "batch_size": data_config.batch_size, "jit_compile": optim.uses_xla(train_config),
        "input": [data_config.num_clips, data_config.clip_length, data_config.crop_size,
                  data_config.crop_size, 3],
        "machine": (f"{precision_lib.machine_line()}, "
                    f"GPUs: {len(devices.gpu_devices())}"),
        "keras_backend": precision_lib.backend_description(),
        "warmup_steps": options.warmup_steps, "benchmark_steps": options.benchmark_steps,
    }


def _model_speeds(model, x, y, x_inference, data_config: DataConfig,
                  train_config: TrainConfig, options: BenchmarkOptions) -> Dict:
    """Training samples/s on `(x, y)`, inference and (caption models) caption generation
    samples/s on `x_inference` (`x` with the exemplar bank's rows, where a head reads them)."""
    import keras
    import numpy as np
    from aqa_tf.training import evaluation
    batch, warmup, steps = data_config.batch_size, options.warmup_steps, options.benchmark_steps
    results = {"train_samples_per_s": batch * steps / fit_seconds(model, x, y, warmup, steps),
               # The optimizer's step count: `fit` trained exactly warm-up + timed steps.
               "train_steps_run": int(np.asarray(model.optimizer.iterations))}
    predictor = evaluation.Predictor(model, jit_compile=train_config.jit_compile,
                                     exemplar_banks=False)
    on_tf = keras.backend.backend() == "tensorflow"
    if on_tf:
        import tensorflow as tf
    x_in = {k: tf.convert_to_tensor(v) if on_tf else v for k, v in x_inference.items()
            if k in predictor.input_names}
    seconds = timed(lambda: np.asarray(predictor.predict_batch(x_in)["score"]), warmup, steps)
    results["inference_samples_per_s"] = batch * steps / seconds
    for head in model.heads.values():
        # What a head generates beside the model (captions: greedy, max_caption_words words,
        # which an untrained model rarely stops before); a tf.function on TensorFlow, eager on
        # JAX (as the evaluation runs it there).
        generate = head.generator(model, EvalConfig())
        if generate is None:
            continue
        generate = tf.function(generate) if on_tf else generate
        seconds = timed(lambda: [np.asarray(v) for v in generate(x_in["video"]).values()],
                        warmup, steps)
        results[f"{head.name}_generation_samples_per_s"] = batch * steps / seconds
    return results


def _achieved(results: Dict) -> Dict:
    """GFLOP/s of training (3x forward: the training graph's forward where it differs) and
    inference, and their fractions of the peaks."""
    figures = {}
    flops = {"train": results.get("train_forward_gflop_per_sample")
             or results["forward_gflop_per_sample"],
             "inference": results["forward_gflop_per_sample"]}
    for name, multiple in (("train", 3.0), ("inference", 1.0)):
        achieved = multiple * flops[name] * results[f"{name}_samples_per_s"]
        figures[f"{name}_gflop_per_s"] = achieved
        figures[f"{name}_fraction_of_peak"] = achieved / results["peak_conv3d_gflop_per_s"]
    if results["peak_conv3d_training_gflop_per_s"]:
        figures["train_fraction_of_training_peak"] = (
            figures["train_gflop_per_s"] / results["peak_conv3d_training_gflop_per_s"])
    return figures


def measure_keras(data_config: DataConfig, model_config: ModelConfig, train_config: TrainConfig,
                  options: BenchmarkOptions) -> Tuple[Dict, str]:
    """(results, model name): input pipeline, training and inference samples/s of the model the
    configs describe, its FLOPs and the peaks, in the precision `train_config` chooses. The
    devices must be set up (`devices.setup_devices`) before."""
    import numpy as np
    from aqa_tf import devices
    from aqa_tf.models import aqa_model
    from aqa_tf.training import optim
    from aqa_tf.training import precision as precision_lib
    model_config, groups_note = _groups_without_records(model_config, data_config)
    precision = precision_lib.choose(model_config, data_config, train_config)
    devices.configure_run(train_config.seed, precision)
    results = _header(data_config, model_config, train_config, precision, options)
    if groups_note:
        results["core_groups_note"] = groups_note
    results.update(input_pipeline(data_config, options.warmup_steps, options.benchmark_steps))
    # Model: one fixed batch, the configured optimizer and losses.
    model = aqa_model.build_aqa_model(model_config, data_config)
    optim.compile_model(model, model_config, train_config,
                        optim.make_optimizer(train_config, aqa_model.backbone_of(model)))
    x, y = precision_lib.random_batch(model, model_config, data_config,
                                      np.random.default_rng(0))
    # Inference also reads the exemplar bank's rows (CoRe, TSA): random ones, beside the batch.
    bank = exemplar_inputs(model, x, model_config.voters, np.random.default_rng(1))
    results["batch_on_device"] = bool(options.batch_on_device and devices.gpu_devices())
    if results["batch_on_device"]:
        x, y = on_device(x), on_device(y)
        bank = on_device(bank) if bank else bank
    x_inference = {**x, **bank}
    results["parameters"] = int(model.count_params())
    results["forward_gflop_per_sample"] = forward_flops(model, x_inference) / 1e9
    if bank:
        # A training sample is a pair (query and exemplar): its own forward count.
        results["train_forward_gflop_per_sample"] = forward_flops(model, x, training=True) / 1e9
    results.update(peak_figures(precision, options))
    results.update(_model_speeds(model, x, y, x_inference, data_config, train_config,
                                 options))
    results.update(_achieved(results))
    return results, model.name


def _groups_without_records(model_config: ModelConfig, data_config: DataConfig
                            ) -> Tuple[ModelConfig, str]:
    """CoRe's tree needs its groups (`--core_groups`, else cut from the training records).
    Without either, the benchmark cuts them from the differences of random scores: what the
    groups are does not change the work of a step."""
    import dataclasses
    if "core" not in model_config.heads or model_config.core_groups or data_config.data_dir:
        return model_config, ""
    import numpy as np
    from aqa_tf.data import exemplars
    scores = np.random.default_rng(0).uniform(5, 25, 64)
    deltas = exemplars.pair_deltas(scores, {"all": list(range(len(scores)))})
    groups = exemplars.group_boundaries(deltas, model_config.core_tree_depth,
                                        model_config.core_score_range)
    return (dataclasses.replace(model_config, core_groups=tuple(float(v) for v in
                                                                groups.reshape(-1))),
            "no --data_dir or --core_groups: the tree's groups cut from random score "
            "differences (they do not change a step's work)")


def exemplar_inputs(model, x: Dict, voters: int, rng) -> Dict:
    """Random values of the inputs that a head adds to the inference model (`inference_inputs`)
    and `x` lacks: the exemplar bank's rows that the evaluation and the export look up for heads
    that compare a video with training exemplars (CoRe, TSA: `exemplar_features`, ... of
    `voters` exemplars per query), at the batch size of `x` (the one axis a bank input leaves
    open after the batch is the voters')."""
    batch = len(x["video"])
    out = {}
    specs = {k: v for head in model.heads.values() for k, v in head.inference_inputs.items()}
    for name, spec in specs.items():
        if name in x:
            continue
        shape = [batch] + [voters if d is None else int(d) for d in spec.shape[1:]]
        dtype = str(getattr(spec.dtype, "name", spec.dtype))
        if "int" in dtype:
            out[name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            out[name] = rng.standard_normal(shape).astype(dtype)
    return out


def random_windows(data_config: DataConfig, count: int = 8):
    """int8 calibration windows when there are no records (random pixels: the quantisation
    ranges will not fit real videos; said in the output)."""
    import numpy as np
    shape = (1, data_config.window_length, data_config.stored_height, data_config.stored_width, 3)
    return lambda: (np.random.default_rng(i).integers(0, 256, shape, dtype=np.uint8)
                    for i in range(count))


def _tflite_variants(model, data_config: DataConfig, conversion: ConversionOptions,
                     options: BenchmarkOptions, window, threads: int, folder: str,
                     have_records: bool) -> Tuple[Dict, Dict]:
    """({variant: size and latency, or the conversion error}, {variant: its scorer}); the
    flatbuffers are written to `folder`."""
    from aqa_tf.serving import tflite_lib
    rows, scorers = {}, {}
    for quantize in conversion.quantize:
        representative = None
        if quantize == "int8":
            representative = (tflite_lib.representative_windows(
                data_config, "train", conversion.calibration_windows)
                if have_records else random_windows(data_config))
        try:
            blob = tflite_lib.convert(model, data_config, quantize, representative)
        except tflite_lib.ConversionError as error:
            rows[quantize] = {"error": str(error)}
            continue
        path = os.path.join(folder, f"{quantize}.tflite")
        with open(path, "wb") as f:
            f.write(blob)
        lite = tflite_lib.LiteModel(path, threads)
        rows[quantize] = {"size_mb": len(blob) / 1e6,
                          "latency_ms": tflite_lib.latency_ms(
                              lite, window, options.warmup_steps, options.benchmark_steps)}
        scorers[quantize] = tflite_lib.scorer(path, threads)
    return rows, scorers


def _parity(model, data_config: DataConfig, options: BenchmarkOptions, scorers: Dict,
            rows: Dict, folder: str):
    """Adds to `rows` each variant's parity with the SavedModel on the windows of
    `options.parity_split` (and the SavedModel's own figures, as `saved_model`)."""
    from aqa_tf.data import pipeline
    from aqa_tf.serving import export_lib
    from aqa_tf.serving import predict_lib
    from aqa_tf.serving import tflite_lib
    saved = export_lib.export_saved_model(model, data_config, os.path.join(folder, "saved_model"))
    windows = pipeline.serving_windows(data_config, options.parity_split)
    if options.parity_samples:
        windows = windows.take(options.parity_samples)
    compared = tflite_lib.parity(predict_lib.Scorer.from_saved_model(saved), scorers,
                                 windows.as_numpy_iterator())
    for quantize, figures in compared.items():
        if quantize in rows:
            rows[quantize].update(figures)
    rows["saved_model"] = compared["reference"]


def measure_tflite(data_config: DataConfig, model_config: ModelConfig,
                   checkpoint: CheckpointOptions, conversion: ConversionOptions,
                   options: BenchmarkOptions, seed: int = 0) -> Dict:
    """Size, latency and SavedModel parity of each TFLite variant (`conversion.quantize`) of the
    model `checkpoint` holds (random weights without one), beside TensorFlow's latency."""
    import tempfile
    import numpy as np
    import tensorflow as tf
    from aqa_tf import devices
    from aqa_tf.data import shards
    from aqa_tf.models import aqa_model
    from aqa_tf.serving import export_lib
    from aqa_tf.training import precision as precision_lib
    from aqa_tf.weights import sources
    devices.configure_run(seed, "none")
    if checkpoint.checkpoint:
        model = sources.model_from_checkpoint(model_config, data_config, checkpoint.checkpoint,
                                              checkpoint.checkpoint_source)
    else:
        model = aqa_model.build_aqa_model(model_config, data_config)
    window = np.random.default_rng(0).integers(
        0, 256, (data_config.window_length, data_config.stored_height, data_config.stored_width,
                 3), dtype=np.uint8)
    keras_fn = tf.function(export_lib.window_fn(model, data_config))
    keras_step = lambda: keras_fn(tf.constant(window[None]), tf.zeros([1]))["score"].numpy()
    keras_ms = 1000 * timed(keras_step, options.warmup_steps, options.benchmark_steps) / max(
        options.benchmark_steps, 1)
    threads = options.tflite_threads or os.cpu_count()
    # The parity split is a pipeline split (test, val): its shards are those of the data
    # config's test or training prefixes.
    prefixes = data_config.test_split if options.parity_split == "test" else \
        data_config.train_split
    have_records = bool(options.parity_split and data_config.data_dir and all(
        tf.io.gfile.glob(p) for p in shards.shard_patterns(data_config.data_dir, prefixes)))
    with tempfile.TemporaryDirectory() as folder:
        rows, scorers = _tflite_variants(model, data_config, conversion, options, window,
                                         threads, folder, have_records)
        if have_records and scorers:
            _parity(model, data_config, options, scorers, rows, folder)
    return {"backbone": model_config.backbone, "width_multiplier": model_config.width_multiplier,
            "checkpoint": checkpoint.checkpoint or "random weights",
            "tensorflow_latency_ms": keras_ms, "tflite_threads": threads,
            "parity_split": options.parity_split if have_records else None,
            "machine": precision_lib.machine_line(), "variants": rows}
