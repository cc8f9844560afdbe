"""`KERAS_BACKEND=jax python -m aqa_tf.train`: the training command on the JAX backend, with
the same tf.data input as on TensorFlow (TensorFlow is installed: the input pipeline, TensorBoard
logs and the SavedModel export are TensorFlow; the model, its training and evaluation steps run
on JAX). Run in subprocesses: this pytest process blocks TensorFlow (conftest).

The run trains two epochs on a small synthetic dataset; the checks are of the mechanics
across the two backends, not of learning (the 30-epoch quickstart's figures on JAX are in
README): every epoch evaluated and backed up, the model trained, the export written by
TensorFlow, and TensorFlow's evaluation of the JAX-trained weights giving the same test scores
as the JAX run's own evaluation.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, backend: str, timeout: int = 1200) -> str:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return proc.stdout


def _predictions(path: str) -> dict:
    with open(path) as f:
        return {row["sample_key"]: float(row["pred_score"]) for row in csv.DictReader(f)}


def test_training_command_on_jax_trains_evaluates_and_exports(tmp_path):
    run, export = tmp_path / "run", tmp_path / "export"
    stdout = _run(["aqa_tf.train", "--flagfile=configs/quickstart.cfg",
                   f"--data_dir={tmp_path / 'data'}", "--synthetic_num_train=28",
                   "--synthetic_num_test=8", f"--model_dir={run}", f"--export_dir={export}",
                   "--epochs=2", "--batch_size=4", "--val_fraction=0.25",
                   "--noevaluate_before_training",
                   "--mixed_precision=none", "--verbose=2"], backend="jax")
    assert "dtype policy float32; Keras on jax" in stdout
    # Both epochs evaluated on the validation split and backed up; the loss went down.
    for epoch in (1, 2):
        record = json.load(open(run / "metrics" / f"epoch_{epoch:03d}.json"))
        assert np.isfinite(record["val"]["spearman"])
    losses = [json.load(open(run / "metrics" / f"epoch_{e:03d}.json"))["train"]["loss"]
              for e in (1, 2)]
    assert losses[1] < losses[0], losses
    final = json.load(open(run / "final_metrics.json"))
    assert np.isfinite(final["metrics"]["spearman"])
    # The SavedModel, written by aqa_tf.export on TensorFlow from the run's best weights.
    assert "Exporting on TensorFlow" in stdout
    assert (export / "quickstart" / "1" / "saved_model.pb").exists()

    # TensorFlow evaluates the JAX-trained weights: the same score for every test sample.
    metrics = tmp_path / "tf_eval.json"
    _run(["aqa_tf.evaluate", f"--flagfile={run / 'flags.txt'}", f"--checkpoint={run}",
          f"--output_json={metrics}"], backend="tensorflow")
    on_jax = _predictions(run / "test_predictions.csv")
    on_tf = _predictions(tmp_path / "tf_eval_predictions.csv")
    assert set(on_tf) == set(on_jax) and len(on_jax) == 8
    np.testing.assert_allclose([on_tf[k] for k in sorted(on_jax)],
                               [on_jax[k] for k in sorted(on_jax)], atol=2e-3)


def test_benchmark_command_on_jax_counts_the_flops_tensorflow_counts(tmp_path):
    """`aqa_tf.benchmark` on JAX: training and inference speeds, and FLOPs per sample from
    XLA's cost analysis that agree with TensorFlow's profiler on the same model."""
    results = {}
    for backend in ("jax", "tensorflow"):
        output = tmp_path / f"{backend}.json"
        stdout = _run(["aqa_tf.benchmark", "--flagfile=configs/quickstart.cfg", "--data_dir=",
                       "--batch_size=2", "--mixed_precision=none", "--warmup_steps=1",
                       "--benchmark_steps=1", f"--benchmark_output={output}"], backend=backend)
        assert f"Keras on {backend}" in stdout
        results[backend] = json.load(open(output))
    for backend, result in results.items():
        assert result["keras_backend"]["backend"] == backend
        assert result["train_samples_per_s"] > 0 and result["inference_samples_per_s"] > 0
        assert 0 < result["train_fraction_of_peak"] and 0 < result["inference_fraction_of_peak"]
        # ... and against the peak Conv3D's own training step (forward and both gradients).
        assert result["peak_conv3d_training_gflop_per_s"] > 0
        assert result["train_fraction_of_training_peak"] == pytest.approx(
            result["train_gflop_per_s"] / result["peak_conv3d_training_gflop_per_s"])
    jax_flops = results["jax"]["forward_gflop_per_sample"]
    tf_flops = results["tensorflow"]["forward_gflop_per_sample"]
    # TensorFlow's profiler counts every multiply-add of a convolution; XLA's cost analysis
    # leaves out those on the zero padding, which at the quickstart's 56x56 crop is much of the
    # last blocks' 3x3x3 windows (measured: 0.90 vs 1.07 GFLOP).
    assert 0.75 * tf_flops <= jax_flops <= 1.02 * tf_flops, (jax_flops, tf_flops)
