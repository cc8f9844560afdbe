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

from absl import app
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


def main(argv):
    del argv
    from aqa_tf import training
    training.setup_devices(FLAGS.cpu_replicas)
    import keras
    import numpy as np
    import tensorflow as tf
    from aqa_tf.data import features, pipeline
    from aqa_tf.models import aqa_model

    data_config = flag_defs.data_config_from_flags()
    model_config = flag_defs.model_config_from_flags()
    precision = FLAGS.mixed_precision
    if precision != "none":
        keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(FLAGS.seed)
    batch = data_config.batch_size
    results = {
        "backbone": model_config.backbone, "width_multiplier": model_config.width_multiplier,
        "heads": list(model_config.heads), "precision": precision, "batch_size": batch,
        "jit_compile": FLAGS.jit_compile,
        "input": [data_config.num_clips, data_config.clip_length, data_config.crop_size,
                  data_config.crop_size, 3],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"GPUs: {len(tf.config.list_physical_devices('GPU'))}",
        "warmup_steps": FLAGS.warmup_steps, "benchmark_steps": FLAGS.benchmark_steps,
    }

    # Input pipeline.
    pattern = features.shard_pattern(data_config.data_dir, data_config.train_split)
    if data_config.data_dir and tf.io.gfile.glob(pattern):
        iterator = iter(pipeline.build_dataset(data_config, "train", training=True, repeat=True))
        seconds = _timed(lambda: next(iterator), FLAGS.warmup_steps, FLAGS.benchmark_steps)
        results["input_pipeline_samples_per_s"] = batch * FLAGS.benchmark_steps / seconds
    else:
        results["input_pipeline_samples_per_s"] = None
        results["input_pipeline_note"] = f"no records match {pattern}"

    # Model: one fixed batch.
    train_config = flag_defs.TrainConfig(model_dir="unused", learning_rate=FLAGS.learning_rate,
                                         jit_compile=FLAGS.jit_compile)
    model = aqa_model.build_aqa_model(model_config, data_config)
    training.compile_model(model, model_config, train_config,
                           training.make_optimizer(train_config, aqa_model.backbone_of(model)))
    rng = np.random.default_rng(0)
    x = {"video": rng.standard_normal([batch] + results["input"]).astype("float32")}
    if "difficulty" in model.input:  # --multiply_difficulty models
        x["difficulty"] = rng.uniform(1.5, 3.8, batch).astype("float32")
    y = {"score": rng.uniform(10, 100, batch).astype("float32")}
    for name, count in model_config.class_counts.items():
        if name in model.output:
            y[name] = rng.integers(0, count, batch).astype("int32")
    if aqa_model.has_caption_head(model):  # full-length captions (the worst case)
        words = rng.integers(2, model_config.vocab_size,
                             (batch, data_config.max_caption_words)).astype("int32")
        x["caption_tokens"] = np.concatenate([np.ones((batch, 1), "int32"), words], axis=1)
        y["caption"] = np.concatenate([words, np.zeros((batch, 1), "int32")], axis=1)
    results["parameters"] = int(model.count_params())
    seconds = _timed(lambda: model.train_on_batch(x, y), FLAGS.warmup_steps,
                     FLAGS.benchmark_steps)
    results["train_samples_per_s"] = batch * FLAGS.benchmark_steps / seconds
    predictor = training.Predictor(model, jit_compile=FLAGS.jit_compile)
    x_tensor = {k: tf.constant(v) for k, v in x.items() if k in predictor.input_names}
    seconds = _timed(lambda: predictor._infer(x_tensor)["score"].numpy(), FLAGS.warmup_steps,
                     FLAGS.benchmark_steps)
    results["inference_samples_per_s"] = batch * FLAGS.benchmark_steps / seconds
    if aqa_model.has_caption_head(model):
        # Greedy captions of max_caption_words words (an untrained model rarely stops early).
        generate = tf.function(aqa_model.CaptionGenerator(model, data_config.max_caption_words))
        seconds = _timed(lambda: generate(x_tensor["video"]).numpy(), FLAGS.warmup_steps,
                         FLAGS.benchmark_steps)
        results["caption_generation_samples_per_s"] = batch * FLAGS.benchmark_steps / seconds

    def fmt(v):
        return "n/a" if v is None else f"{v:.2f}"

    print(f"\nBenchmark: {model.name}, input {results['input']}, batch {batch}, "
          f"precision {precision}, XLA {FLAGS.jit_compile}, {results['machine']}")
    print(f"  {'measurement':<26}{'samples/s':>12}")
    for key in ("input_pipeline_samples_per_s", "train_samples_per_s", "inference_samples_per_s",
                "caption_generation_samples_per_s"):
        if key not in results:
            continue
        print(f"  {key.replace('_samples_per_s', ''):<26}{fmt(results[key]):>12}")
    if results.get("input_pipeline_note"):
        print(f"  (input pipeline: {results['input_pipeline_note']})")
    output = FLAGS.benchmark_output or f"benchmark_{model_config.backbone}_{precision}.json"
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Written to {output}")


if __name__ == "__main__":
    app.run(main)
