r"""Measures input-pipeline, training and inference throughput on this machine.

  python -m aqa_tf.benchmark --flagfile configs/mtl_aqa_c3d_avg_mtl.cfg \
      --mixed_precision=mixed_bfloat16

Each measurement runs `--warmup_steps` untimed steps, then `--benchmark_steps` timed ones. The
model measurements feed one fixed in-memory batch, so they measure the model alone; training
runs through Keras's `fit`, as `aqa_tf.train` trains (on JAX, `train_on_batch` would wait for
every step and copy the model state back into the Keras variables after it). The input
pipeline is measured on the records of `--data_dir` (skipped, and said so, when there are none).

Beside samples/s it prints the model's FLOPs per sample (forward, counted by TensorFlow's
profiler on the traced graph, or under `KERAS_BACKEND=jax` on the traced JAX computation, its
convolutions and matrix products; training counted as 3x forward: the backward pass of a
convolution or matmul costs two forward ones), the GFLOP/s achieved, and the fraction of a
peak measured in the same process and precision: a C3D-sized Conv3D (`--peak_conv`, default
conv3a of C3D: 8x28x28x128 -> 256, 3x3x3) run alone, the fastest of at least 10 timed calls.
Training is also compared with that Conv3D's own training step (forward and both gradients),
since backward kernels run slower than forward ones. `--mixed_precision=auto` runs the probe of
`aqa_tf.training.precision` and benchmarks what it chose. Under `KERAS_BACKEND=jax` the model
measurements need no TensorFlow (a GPU machine with JAX alone; `tools/benchmark_gpu.sh`);
`--batch_on_device` keeps the host-to-GPU copy of the batch out of the timed steps.

  python -m aqa_tf.benchmark --flagfile configs/quickstart.cfg --format=tflite \
      --checkpoint runs/quickstart/best.weights.h5

converts the model to each TFLite variant (`--quantize`) and prints, per variant, the file
size, the LiteRT latency per sample (batch 1, `--tflite_threads`) beside TensorFlow's, and the
parity with the SavedModel on the windows of `--parity_split` (max |score difference|, Spearman
between their scores, top-1 sub-action agreement, Spearman with the judges).

The measurements are `aqa_tf.training.benchmark_lib`'s; this entry reads the flags, prints the
results and writes them as JSON.
"""

import json

from aqa_tf import flag_defs
from aqa_tf.config import QUANTIZATIONS, BenchmarkOptions, CheckpointOptions, ConversionOptions

# What this entry measures: the Keras model or its TFLite variants (by default all of them).
FORMAT = dict(default="keras", choices=["keras", "tflite"])
QUANTIZE = dict(default=QUANTIZATIONS)


def define_flags():
    """The training-run flags (they describe the model and the precision), the measurement's,
    the format's and, for `--format=tflite`, the checkpoint's."""
    flag_defs.define_flags()
    flag_defs.define_config_flags(BenchmarkOptions)
    flag_defs.define_config_flags(ConversionOptions,
                                  overrides={"format": FORMAT, "quantize": QUANTIZE})
    flag_defs.define_config_flags(CheckpointOptions)


def _write(results, output: str):
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Written to {output}")


def main(argv):
    del argv
    options = flag_defs.config_from_flags(BenchmarkOptions)
    conversion = flag_defs.config_from_flags(ConversionOptions)
    from aqa_tf.training import benchmark_lib
    if conversion.format == "tflite":
        data_config = flag_defs.data_config_from_flags()
        model_config = flag_defs.model_config_from_flags()
        results = benchmark_lib.measure_tflite(
            data_config, model_config, flag_defs.config_from_flags(CheckpointOptions),
            conversion, options, seed=flag_defs.train_config_from_flags().seed)
        _print_tflite(results)
        _write(results, options.benchmark_output
               or f"benchmark_tflite_{model_config.backbone}.json")
        return
    train_config = flag_defs.train_config_from_flags()
    from aqa_tf import devices
    devices.setup_devices(train_config.cpu_replicas)
    from aqa_tf.data import statistics
    data_config = statistics.with_action_statistics(flag_defs.data_config_from_flags())
    model_config = flag_defs.model_config_from_flags()
    results, model_name = benchmark_lib.measure_keras(data_config, model_config, train_config,
                                                      options)
    _print_results(results, model_name, options)
    _write(results, options.benchmark_output
           or f"benchmark_{model_config.backbone}_{results['precision']}.json")


def _print_results(results, model_name: str, options: BenchmarkOptions):
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
        peak = "x".join(str(v) for v in options.peak_conv)
        pair = results.get("train_forward_gflop_per_sample")
        training = (f"training: {pair:.2f} per pair of query and exemplar, 3x" if pair
                    else "training counted 3x")
        print(f"  FLOPs: {results['forward_gflop_per_sample']:.2f} GFLOP per sample forward "
              f"({training}); peak: Conv3D {peak} alone, "
              f"{results['peak_conv3d_gflop_per_s']:.1f} GFLOP/s in {results['precision']}")
    if results.get("core_groups_note"):
        print(f"  ({results['core_groups_note']})")
    if results.get("train_fraction_of_training_peak") is not None:
        print(f"  Training peak: the same Conv3D's training step alone (forward + both "
              f"gradients, 3x), {results['peak_conv3d_training_gflop_per_s']:.1f} GFLOP/s; "
              f"training runs at {results['train_fraction_of_training_peak']:.2f} of it")
    if results.get("input_pipeline_note"):
        print(f"  (input pipeline: {results['input_pipeline_note']})")


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
    define_flags()
    flag_defs.run(main)
