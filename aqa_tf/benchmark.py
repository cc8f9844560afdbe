r"""Measures input-pipeline, training and inference throughput on this machine.

  python -m aqa_tf.benchmark --flagfile configs/mtl_aqa_c3d_avg_mtl.cfg --mixed_precision=mixed_bfloat16

Each measurement runs `--warmup_steps` untimed steps, then `--benchmark_steps` timed ones. The
model measurements feed one fixed in-memory batch, so they measure the model alone; training
runs through Keras's `fit`, as `aqa_tf.train` trains (on JAX, `train_on_batch` would wait for
every step and copy the model state back into the Keras variables after it). The input
pipeline is measured on the records of `--data_dir` (skipped, and said so, when there are none).

Beside samples/s it prints the model's FLOPs per sample (forward, counted by TensorFlow's
profiler on the traced graph, or under `KERAS_BACKEND=jax` on the traced JAX computation, its
convolutions and matrix products; training counted as 3x forward: the backward pass of a
convolution or matmul costs two forward ones), the GFLOP/s achieved, and the fraction of a peak measured in the same process and
precision: a C3D-sized Conv3D (`--peak_conv`, default conv3a of C3D: 8x28x28x128 -> 256,
3x3x3) run alone, the fastest of at least 10 timed calls. Training is also compared with
that Conv3D's own training step (forward and both gradients), since backward kernels run
slower than forward ones. `--mixed_precision=auto` runs the probe of `aqa_tf.precision` and
benchmarks what it chose. Under `KERAS_BACKEND=jax` the model measurements need no TensorFlow
(a GPU machine with JAX alone; `tools/benchmark_gpu.sh`); `--batch_on_device` keeps the host-to-
GPU copy of the batch out of the timed steps.

  python -m aqa_tf.benchmark --flagfile configs/quickstart.cfg --format=tflite \
      --checkpoint runs/quickstart/best.weights.h5

converts the model to each TFLite variant (`--quantize`) and prints, per variant, the file
size, the LiteRT latency per sample (batch 1, `--tflite_threads`) beside TensorFlow's, and the
parity with the SavedModel on the windows of `--parity_split` (max |score difference|, Spearman
between their scores, top-1 sub-action agreement, Spearman with the judges).
"""

import json
import os
import time

from absl import flags

from aqa_tf import flag_defs
from aqa_tf import registry

flag_defs.define_flags()
flags.DEFINE_integer("warmup_steps", 2, "Untimed steps before each measurement.")
flags.DEFINE_integer("benchmark_steps", 5, "Timed steps of each measurement.")
flags.DEFINE_string("benchmark_output", "", "JSON file for the results (default: "
                    "benchmark_<backbone>_<precision>.json in the current folder).")
flags.DEFINE_enum("format", "keras", ["keras", "tflite"], "keras: training and inference "
                  "of the Keras model; tflite: the LiteRT variants of the export.")
flags.DEFINE_list("quantize", ["none", "float16", "dynamic_int8", "int8"],
                  "With --format=tflite: the variants to measure.")
flags.DEFINE_string("checkpoint", "", "With --format=tflite: weights to convert (default: "
                    "random weights; parity on real data needs trained ones).")
flags.DEFINE_enum("checkpoint_source", "keras_model", registry.CHECKPOINT_SOURCES.names(),
                  "Family of --checkpoint (see `aqa_tf.export`).")
flags.DEFINE_string("parity_split", "test", "With --format=tflite: split of --data_dir whose "
                    "windows compare each variant with the SavedModel ('' to skip).")
flags.DEFINE_integer("parity_samples", 0, "Windows of --parity_split to compare (0: all).")
flags.DEFINE_integer("tflite_threads", 0, "LiteRT interpreter threads (0: one per core).")
flags.DEFINE_boolean("batch_on_device", False, "Place the fixed batch on the GPU once, before "
                     "timing, instead of passing it from host memory at every step (training "
                     "runs through `fit`, which on JAX copies the next batch to the GPU while "
                     "a step computes; inference takes the batch from where it lies). No effect "
                     "without a GPU.")
flags.DEFINE_list("peak_conv", ["4", "8", "28", "28", "128", "256"],
                  "The Conv3D whose speed is the peak: batch, frames, height, width, input "
                  "channels, filters (3x3x3 kernel, 'same' padding). Default: C3D's conv3a on a "
                  "batch of 4 clips.")
FLAGS = flags.FLAGS

PEAK_STEPS = 10  # timed calls of the peak Conv3D, at least


def _timed(step, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def _fit_seconds(model, x, y, warmup: int, steps: int) -> float:
    """Seconds of `steps` training steps on the batch `(x, y)` as `fit` runs them, after `warmup`
    untimed ones: the model's state stays with the backend between steps and no step waits for
    the loss of the one before it (`train_on_batch` returns its losses to Python and, on JAX,
    writes the state back into the Keras variables after every step).
    The timed call ends after its last step has finished (`fit` returns the final state)."""
    import keras
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        from aqa_tf.data import pipeline
        # A constant dataset has nothing to tune; and tf.data's autotuning thread, once its
        # period has grown over minutes of long steps, held the destruction of the iterator
        # (when `fit` returns) for 30 s after 3 steps of 17 s (paper-size C3D-AVG, 2-core CPU).
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


def _input_pipeline(data_config, warmup: int, steps: int) -> dict:
    """Training input pipeline samples/s on the records of `--data_dir` (or why not)."""
    from aqa_tf.data import shards
    pattern = shards.shard_pattern(data_config.data_dir, data_config.train_split)
    if not data_config.data_dir:
        return {"input_pipeline_samples_per_s": None,
                "input_pipeline_note": "no --data_dir"}
    import tensorflow as tf
    from aqa_tf.data import pipeline
    if not tf.io.gfile.glob(pattern):
        return {"input_pipeline_samples_per_s": None,
                "input_pipeline_note": f"no records match {pattern}"}
    iterator = iter(pipeline.build_dataset(data_config, "train", training=True, repeat=True))
    seconds = _timed(lambda: next(iterator), warmup, steps)
    return {"input_pipeline_samples_per_s": data_config.batch_size * steps / seconds}


def _on_device(arrays: dict) -> dict:
    """`arrays` copied to the backend's first GPU."""
    import keras
    if keras.backend.backend() == "jax":
        import jax
        return jax.device_put(arrays)
    import tensorflow as tf
    with tf.device("/GPU:0"):
        return {k: tf.identity(v) for k, v in arrays.items()}


def _print_results(results, model_name):
    def fmt(v):
        return "n/a" if v is None else f"{v:.4g}"

    backend = results["keras_backend"]
    print(f"\nBenchmark: {model_name}, input {results['input']}, batch {results['batch_size']}, "
          f"precision {results['precision']}, XLA {results['jit_compile']}, Keras on "
          f"{backend['backend']} {backend['version']}, {results['machine']}"
          f"{', batch on the GPU' if results.get('batch_on_device') else ''}")
    print(f"  {'measurement':<26}{'samples/s':>12}{'GFLOP/s':>10}{'of peak':>9}")
    for key in ("input_pipeline_samples_per_s", "train_samples_per_s", "inference_samples_per_s",
                "caption_generation_samples_per_s"):
        if key in results:
            name = key.replace("_samples_per_s", "")
            line = f"  {name:<26}{fmt(results[key]):>12}"
            if f"{name}_gflop_per_s" in results:
                line += (f"{results[f'{name}_gflop_per_s']:>10.1f}"
                         f"{results[f'{name}_fraction_of_peak']:>9.2f}")
            print(line)
    if "forward_gflop_per_sample" in results:
        print(f"  FLOPs: {results['forward_gflop_per_sample']:.2f} GFLOP per sample forward "
              f"(training counted 3x); peak: Conv3D {'x'.join(FLAGS.peak_conv)} alone, "
              f"{results['peak_conv3d_gflop_per_s']:.1f} GFLOP/s in {results['precision']}")
    if results.get("train_fraction_of_training_peak") is not None:
        print(f"  Training peak: the same Conv3D's training step alone (forward + both "
              f"gradients, 3x), {results['peak_conv3d_training_gflop_per_s']:.1f} GFLOP/s; "
              f"training runs at {results['train_fraction_of_training_peak']:.2f} of it")
    if results.get("input_pipeline_note"):
        print(f"  (input pipeline: {results['input_pipeline_note']})")


def forward_flops(model, x) -> float:
    """Floating-point operations of one sample's forward pass (multiply-adds count 2), on the
    inference graph at batch 1: TensorFlow's profiler on TensorFlow; on JAX, the convolutions and
    matrix products of the traced computation (`_jaxpr_flops`: XLA's own cost analysis counts
    cuDNN's convolutions as nothing on a GPU, and skips the multiply-adds on zero padding)."""
    from aqa_tf.models import aqa_model
    import keras
    inference = aqa_model.inference_model(model)
    names = list(inference.input.keys())
    if keras.backend.backend() == "jax":
        import jax

        def forward(trainable, non_trainable, inputs):
            return inference.stateless_call(trainable, non_trainable, inputs, training=False)[0]

        one = {k: x[k][:1] for k in names}
        jaxpr = jax.make_jaxpr(forward)(
            [v.value for v in inference.trainable_variables],
            [v.value for v in inference.non_trainable_variables], one)
        return _jaxpr_flops(jaxpr.jaxpr)
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder
    specs = {k: tf.TensorSpec((1,) + tuple(x[k].shape[1:]), x[k].dtype) for k in names}
    graph = tf.function(lambda inputs: inference(inputs, training=False)).get_concrete_function(
        specs).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(model_analyzer.profile(graph, options=options).total_float_ops)


def _jaxpr_flops(jaxpr) -> float:
    """2 x the multiply-adds of every convolution and matrix product in `jaxpr` (a JAX
    `Jaxpr`), those of nested computations included (a `scan` body counted `length` times, the
    costliest branch of a `cond`); elementwise operations are left out."""
    import math
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
                    inner.append(_jaxpr_flops(item))
        if inner:
            total += (max(inner) if name == "cond" else sum(inner)) * (
                eqn.params.get("length", 1) if name == "scan" else 1)
    return total


def main(argv):
    del argv
    if FLAGS.format == "tflite":
        return tflite_main()
    train_config = flag_defs.train_config_from_flags()
    from aqa_tf import devices
    devices.setup_devices(train_config.cpu_replicas)
    import keras
    import numpy as np
    from aqa_tf import evaluation, optim, precision as precision_lib
    from aqa_tf.models import aqa_model

    data_config = evaluation.with_action_score_stds(flag_defs.data_config_from_flags())
    model_config = flag_defs.model_config_from_flags()
    precision = precision_lib.choose(model_config, data_config, train_config)
    devices.configure_run(train_config.seed, precision)
    batch, steps, warmup = data_config.batch_size, FLAGS.benchmark_steps, FLAGS.warmup_steps
    results = {
        "backbone": model_config.backbone, "width_multiplier": model_config.width_multiplier,
        "heads": list(model_config.heads), "precision": precision, "batch_size": batch,
        "jit_compile": optim.uses_xla(train_config),
        "input": [data_config.num_clips, data_config.clip_length, data_config.crop_size,
                  data_config.crop_size, 3],
        "machine": (f"{precision_lib.machine_line()}, "
                    f"GPUs: {len(devices.gpu_devices())}"),
        "keras_backend": precision_lib.backend_description(),
        "warmup_steps": warmup, "benchmark_steps": steps,
    }

    results.update(_input_pipeline(data_config, warmup, steps))
    # Model: one fixed batch, the configured optimizer and losses.
    model = aqa_model.build_aqa_model(model_config, data_config)
    optim.compile_model(model, model_config, train_config,
                        optim.make_optimizer(train_config, aqa_model.backbone_of(model)))
    x, y = precision_lib.random_batch(model, model_config, data_config,
                                      np.random.default_rng(0))
    results["batch_on_device"] = bool(FLAGS.batch_on_device and devices.gpu_devices())
    if results["batch_on_device"]:
        x, y = _on_device(x), _on_device(y)
    results["parameters"] = int(model.count_params())
    results["forward_gflop_per_sample"] = forward_flops(model, x) / 1e9
    peak_dtype = ("bfloat16" if "bfloat16" in precision else
                  "float16" if "float16" in precision else "float32")
    peak_shape = [int(v) for v in FLAGS.peak_conv]
    # The fastest of at least PEAK_STEPS calls after 2 warm-ups: the first calls of a process
    # run slower (on a 2-core Zen 3, of 3 calls after 1 warm-up the fastest came out anywhere
    # from 97 to 156 GFLOP/s; of 20, 156-165).
    peak_warmup, peak_steps = max(warmup, 2), max(steps, PEAK_STEPS)
    results["peak_conv3d_gflop_per_s"] = precision_lib.conv3d_gflops(
        peak_shape, peak_dtype, peak_warmup, peak_steps)
    # The same convolution's training step (forward and both gradients) alone: how fast its
    # kernels train, the ceiling of a training step made of convolutions (backward kernels
    # run slower than forward ones).
    results["peak_conv3d_training_gflop_per_s"] = precision_lib.conv3d_gflops(
        peak_shape, peak_dtype, peak_warmup, peak_steps, training=True)
    seconds = _fit_seconds(model, x, y, warmup, steps)
    results["train_samples_per_s"] = batch * steps / seconds
    # The optimizer's step count: `fit` trained exactly warm-up + timed steps.
    results["train_steps_run"] = int(np.asarray(model.optimizer.iterations))
    predictor = evaluation.Predictor(model, jit_compile=train_config.jit_compile)
    on_tf = keras.backend.backend() == "tensorflow"
    if on_tf:
        import tensorflow as tf
    x_in = {k: tf.convert_to_tensor(v) if on_tf else v for k, v in x.items()
            if k in predictor.input_names}
    seconds = _timed(lambda: np.asarray(predictor.predict_batch(x_in)["score"]), warmup, steps)
    results["inference_samples_per_s"] = batch * steps / seconds
    if aqa_model.has_caption_head(model):
        # Greedy captions of max_caption_words words (an untrained model rarely stops early);
        # a tf.function on TensorFlow, eager on JAX (as the evaluation decodes there).
        generate = aqa_model.CaptionGenerator(model, data_config.max_caption_words)
        generate = tf.function(generate) if on_tf else generate
        seconds = _timed(lambda: np.asarray(generate(x_in["video"])), warmup, steps)
        results["caption_generation_samples_per_s"] = batch * steps / seconds
    flop = results["forward_gflop_per_sample"]
    for name, multiple in (("train", 3.0), ("inference", 1.0)):
        achieved = multiple * flop * results[f"{name}_samples_per_s"]
        results[f"{name}_gflop_per_s"] = achieved
        results[f"{name}_fraction_of_peak"] = achieved / results["peak_conv3d_gflop_per_s"]
    if results["peak_conv3d_training_gflop_per_s"]:
        results["train_fraction_of_training_peak"] = (
            results["train_gflop_per_s"] / results["peak_conv3d_training_gflop_per_s"])

    _print_results(results, model.name)
    output = FLAGS.benchmark_output or f"benchmark_{model_config.backbone}_{precision}.json"
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Written to {output}")


def tflite_main():
    """Size, latency and SavedModel parity of each TFLite variant (`--format=tflite`)."""
    import tempfile
    import numpy as np
    import tensorflow as tf
    from aqa_tf import devices, export_lib, predict_lib, tflite_lib
    from aqa_tf import precision as precision_lib
    from aqa_tf.data import pipeline, shards
    from aqa_tf.models import aqa_model
    from aqa_tf.weights import sources
    data_config = flag_defs.data_config_from_flags()
    model_config = flag_defs.model_config_from_flags()
    devices.configure_run(flag_defs.train_config_from_flags().seed, "none")
    if FLAGS.checkpoint:
        model = sources.model_from_checkpoint(model_config, data_config, FLAGS.checkpoint,
                                              FLAGS.checkpoint_source)
    else:
        model = aqa_model.build_aqa_model(model_config, data_config)
    window = np.random.default_rng(0).integers(
        0, 256, (data_config.window_length, data_config.stored_height, data_config.stored_width,
                 3), dtype=np.uint8)
    keras_fn = tf.function(export_lib.window_fn(model, data_config))
    keras_step = lambda: keras_fn(tf.constant(window[None]), tf.zeros([1]))["score"].numpy()
    keras_ms = 1000 * _timed(keras_step, FLAGS.warmup_steps, FLAGS.benchmark_steps) / max(
        FLAGS.benchmark_steps, 1)
    threads = FLAGS.tflite_threads or os.cpu_count()
    pattern = shards.shard_pattern(data_config.data_dir, FLAGS.parity_split or "none")
    have_records = bool(FLAGS.parity_split and data_config.data_dir and tf.io.gfile.glob(pattern))
    rows, scorers = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for quantize in FLAGS.quantize:
            representative = None
            if quantize == "int8":
                representative = (tflite_lib.representative_windows(data_config)
                                  if have_records else _random_windows(data_config))
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
                                  lite, window, FLAGS.warmup_steps, FLAGS.benchmark_steps)}
            scorers[quantize] = tflite_lib.scorer(path, threads)
        if have_records and scorers:
            saved = export_lib.export_saved_model(model, data_config,
                                                  os.path.join(folder, "saved_model"))
            windows = pipeline.serving_windows(data_config, FLAGS.parity_split)
            if FLAGS.parity_samples:
                windows = windows.take(FLAGS.parity_samples)
            compared = tflite_lib.parity(predict_lib.Scorer.from_saved_model(saved), scorers,
                                         windows.as_numpy_iterator())
            for quantize, figures in compared.items():
                if quantize in rows:
                    rows[quantize].update(figures)
            rows["saved_model"] = compared["reference"]
    results = {"backbone": model_config.backbone, "width_multiplier": model_config.width_multiplier,
               "checkpoint": FLAGS.checkpoint or "random weights",
               "tensorflow_latency_ms": keras_ms, "tflite_threads": threads,
               "parity_split": FLAGS.parity_split if have_records else None,
               "machine": precision_lib.machine_line(),
               "variants": rows}
    _print_tflite(results)
    output = FLAGS.benchmark_output or f"benchmark_tflite_{model_config.backbone}.json"
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Written to {output}")


def _random_windows(data_config, count: int = 8):
    """int8 calibration windows when there are no records (random pixels: the quantisation
    ranges will not fit real videos; said in the output)."""
    import numpy as np
    shape = (1, data_config.window_length, data_config.stored_height, data_config.stored_width, 3)
    return lambda: (np.random.default_rng(i).integers(0, 256, shape, dtype=np.uint8)
                    for i in range(count))


def _print_tflite(results):
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    print(f"\nTFLite: {results['backbone']} (width {results['width_multiplier']}), "
          f"{results['checkpoint']}, {results['machine']}, {results['tflite_threads']} threads; "
          f"TensorFlow float32 {results['tensorflow_latency_ms']:.1f} ms/sample")
    print(f"  {'variant':<14}{'MB':>8}{'ms/sample':>11}{'max|dscore|':>13}{'rho(SM)':>9}"
          f"{'top-1 agree':>13}{'rho(judges)':>13}")
    for name, row in results["variants"].items():
        if "error" in row:
            print(f"  {name:<14}not converted: {row['error']}")
            continue
        print(f"  {name:<14}{fmt(row.get('size_mb'), '.2f'):>8}"
              f"{fmt(row.get('latency_ms'), '.1f'):>11}"
              f"{fmt(row.get('max_abs_score_diff'), '.2e'):>13}"
              f"{fmt(row.get('spearman_vs_reference'), '.4f'):>9}"
              f"{fmt(row.get('top1_agreement'), '.3f'):>13}"
              f"{fmt(row.get('spearman_vs_judges'), '.4f'):>13}")
    if results["parity_split"] is None:
        print("  (no records for the parity columns: give --data_dir and --parity_split)")


if __name__ == "__main__":
    flag_defs.run(main)
