r"""Measures input-pipeline, training and inference throughput on this machine.

  python -m aqa_tf.benchmark --flagfile configs/mtl_aqa_c3d_avg_mtl.cfg --mixed_precision=mixed_bfloat16

Each measurement runs `--warmup_steps` untimed steps, then `--benchmark_steps` timed ones. The
model measurements feed one fixed in-memory batch, so they measure the model alone; the input
pipeline is measured on the records of `--data_dir` (skipped, and said so, when there are none).
"""

import json
import os
import platform
import time

from absl import flags

from aqa_tf import flag_defs

flag_defs.define_flags()
flags.DEFINE_integer("warmup_steps", 2, "Untimed steps before each measurement.")
flags.DEFINE_integer("benchmark_steps", 5, "Timed steps of each measurement.")
flags.DEFINE_string("benchmark_output", "", "JSON file for the results (default: "
                    "benchmark_<backbone>_<precision>.json in the current folder).")
FLAGS = flags.FLAGS


def _timed(step, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def _random_batch(model, model_config, data_config, shape, rng):
    """A fixed batch of random inputs and targets for `model` (full-length captions: the worst
    case of the caption head)."""
    import numpy as np
    batch = data_config.batch_size
    x = {"video": rng.standard_normal([batch] + shape).astype("float32")}
    if "difficulty" in model.input:  # --multiply_difficulty models
        x["difficulty"] = rng.uniform(1.5, 3.8, batch).astype("float32")
    y = {"score": rng.uniform(10, 100, batch).astype("float32")}
    for name, count in model_config.class_counts.items():
        if name in model.output:
            y[name] = rng.integers(0, count, batch).astype("int32")
    if "caption" in model.output:
        words = rng.integers(2, model_config.vocab_size,
                             (batch, data_config.max_caption_words)).astype("int32")
        x["caption_tokens"] = np.concatenate([np.ones((batch, 1), "int32"), words], axis=1)
        y["caption"] = np.concatenate([words, np.zeros((batch, 1), "int32")], axis=1)
    return x, y


def _input_pipeline(data_config, warmup: int, steps: int) -> dict:
    """Training input pipeline samples/s on the records of `--data_dir` (or why not)."""
    import tensorflow as tf
    from aqa_tf.data import pipeline, shards
    pattern = shards.shard_pattern(data_config.data_dir, data_config.train_split)
    if not (data_config.data_dir and tf.io.gfile.glob(pattern)):
        return {"input_pipeline_samples_per_s": None,
                "input_pipeline_note": f"no records match {pattern}"}
    iterator = iter(pipeline.build_dataset(data_config, "train", training=True, repeat=True))
    seconds = _timed(lambda: next(iterator), warmup, steps)
    return {"input_pipeline_samples_per_s": data_config.batch_size * steps / seconds}


def _print_results(results, model_name):
    def fmt(v):
        return "n/a" if v is None else f"{v:.2f}"

    print(f"\nBenchmark: {model_name}, input {results['input']}, batch {results['batch_size']}, "
          f"precision {results['precision']}, XLA {results['jit_compile']}, {results['machine']}")
    print(f"  {'measurement':<26}{'samples/s':>12}")
    for key in ("input_pipeline_samples_per_s", "train_samples_per_s", "inference_samples_per_s",
                "caption_generation_samples_per_s"):
        if key in results:
            print(f"  {key.replace('_samples_per_s', ''):<26}{fmt(results[key]):>12}")
    if results.get("input_pipeline_note"):
        print(f"  (input pipeline: {results['input_pipeline_note']})")


def main(argv):
    del argv
    train_config = flag_defs.train_config_from_flags()
    from aqa_tf import devices
    devices.setup_devices(train_config.cpu_replicas)
    import numpy as np
    import tensorflow as tf
    from aqa_tf import evaluation, optim
    from aqa_tf.models import aqa_model

    data_config = flag_defs.data_config_from_flags()
    model_config = flag_defs.model_config_from_flags()
    precision = train_config.mixed_precision
    devices.configure_run(train_config.seed, precision)
    batch, steps, warmup = data_config.batch_size, FLAGS.benchmark_steps, FLAGS.warmup_steps
    results = {
        "backbone": model_config.backbone, "width_multiplier": model_config.width_multiplier,
        "heads": list(model_config.heads), "precision": precision, "batch_size": batch,
        "jit_compile": train_config.jit_compile,
        "input": [data_config.num_clips, data_config.clip_length, data_config.crop_size,
                  data_config.crop_size, 3],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"GPUs: {len(tf.config.list_physical_devices('GPU'))}",
        "warmup_steps": warmup, "benchmark_steps": steps,
    }

    results.update(_input_pipeline(data_config, warmup, steps))
    # Model: one fixed batch, the configured optimizer and losses.
    model = aqa_model.build_aqa_model(model_config, data_config)
    optim.compile_model(model, model_config, train_config,
                        optim.make_optimizer(train_config, aqa_model.backbone_of(model)))
    x, y = _random_batch(model, model_config, data_config, results["input"],
                         np.random.default_rng(0))
    results["parameters"] = int(model.count_params())
    seconds = _timed(lambda: model.train_on_batch(x, y), warmup, steps)
    results["train_samples_per_s"] = batch * steps / seconds
    predictor = evaluation.Predictor(model, jit_compile=train_config.jit_compile)
    x_tensor = {k: tf.constant(v) for k, v in x.items() if k in predictor.input_names}
    seconds = _timed(lambda: predictor.predict_batch(x_tensor)["score"].numpy(), warmup, steps)
    results["inference_samples_per_s"] = batch * steps / seconds
    if aqa_model.has_caption_head(model):
        # Greedy captions of max_caption_words words (an untrained model rarely stops early).
        generate = tf.function(aqa_model.CaptionGenerator(model, data_config.max_caption_words))
        seconds = _timed(lambda: generate(x_tensor["video"]).numpy(), warmup, steps)
        results["caption_generation_samples_per_s"] = batch * steps / seconds

    _print_results(results, model.name)
    output = FLAGS.benchmark_output or f"benchmark_{model_config.backbone}_{precision}.json"
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Written to {output}")


if __name__ == "__main__":
    flag_defs.run(main)
