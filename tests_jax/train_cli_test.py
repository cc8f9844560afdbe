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


# Runs `python -m <module> <args>` with every import of TensorFlow failing, as on a machine
# without it (a GPU machine with JAX alone).
WITHOUT_TENSORFLOW = """
import importlib.abc, runpy, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError(f"{name!r} imported where TensorFlow must not be needed")
sys.meta_path.insert(0, NoTensorFlow())
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _run(args, backend: str, timeout: int = 1200, without_tensorflow: bool = False) -> str:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = ["-c", WITHOUT_TENSORFLOW] if without_tensorflow else ["-m"]
    proc = subprocess.run([sys.executable, *command, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return proc.stdout


# The quickstart's model on two 16-frame clips of 32x32 crops (a quarter of its compute): these
# tests check the backend's mechanics, not what the model learns.
SMALL = ("--sample_length=32", "--num_frames=32", "--crop_size=32")


def _predictions(path: str) -> dict:
    with open(path) as f:
        return {row["sample_key"]: float(row["pred_score"]) for row in csv.DictReader(f)}


def test_training_command_on_jax_trains_evaluates_and_exports(tmp_path):
    run, export = tmp_path / "run", tmp_path / "export"
    stdout = _run(["aqa_tf.train", "--flagfile=configs/quickstart.cfg",
                   f"--data_dir={tmp_path / 'data'}", "--synthetic_num_train=28",
                   "--synthetic_num_test=8", "--synthetic_num_frames=34", *SMALL,
                   f"--model_dir={run}", f"--export_dir={export}",
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


def test_benchmark_command_on_jax_needs_no_tensorflow_and_counts_its_flops(tmp_path):
    """`aqa_tf.benchmark` on JAX, in a process where TensorFlow cannot be imported (as on a GPU
    machine with JAX alone): training and inference speeds, and FLOPs per sample counted on the
    traced computation that agree with TensorFlow's profiler on the same model."""
    results = {}
    for backend in ("jax", "tensorflow"):
        output = tmp_path / f"{backend}.json"
        stdout = _run(["aqa_tf.benchmark", "--flagfile=configs/quickstart.cfg", "--data_dir=",
                       *SMALL, "--batch_size=2", "--mixed_precision=none", "--warmup_steps=1",
                       "--benchmark_steps=1", "--batch_on_device",
                       # A small peak Conv3D (the default, C3D's conv3a, is timed for seconds).
                       "--peak_conv=2,4,8,8,16,32",
                       f"--benchmark_output={output}"], backend=backend,
                      without_tensorflow=backend == "jax")
        assert f"Keras on {backend}" in stdout
        results[backend] = json.load(open(output))
    for backend, result in results.items():
        assert result["keras_backend"]["backend"] == backend
        assert result["train_samples_per_s"] > 0 and result["inference_samples_per_s"] > 0
        assert result["train_steps_run"] == 2  # through fit: 1 warm-up + 1 timed step
        assert 0 < result["train_fraction_of_peak"] and 0 < result["inference_fraction_of_peak"]
        # ... and against the peak Conv3D's own training step (forward and both gradients).
        assert result["peak_conv3d_training_gflop_per_s"] > 0
        assert result["train_fraction_of_training_peak"] == pytest.approx(
            result["train_gflop_per_s"] / result["peak_conv3d_training_gflop_per_s"])
        assert result["batch_on_device"] is False  # no GPU here: the flag does nothing
    jax_flops = results["jax"]["forward_gflop_per_sample"]
    tf_flops = results["tensorflow"]["forward_gflop_per_sample"]
    # Both count every multiply-add of the convolutions and matrix products (the zero padding's
    # too); TensorFlow's profiler also counts some elementwise operations (bias, ReLU).
    assert 0.97 * tf_flops <= jax_flops <= tf_flops, (jax_flops, tf_flops)


def test_jaxpr_flops_count_convolutions_and_matrix_products():
    """The JAX FLOP count of `aqa_tf.benchmark` (`benchmark_lib.jaxpr_flops`) on a model whose
    count is known: a 'same' Conv3D (padding included), a grouped one, and a Dense layer
    applied per time step."""
    import keras
    from aqa_tf.training import benchmark_lib
    x = keras.Input((4, 6, 6, 3))
    h = keras.layers.Conv3D(8, 3, padding="same")(x)
    h = keras.layers.Conv3D(8, (1, 3, 3), padding="valid", groups=2)(h)
    h = keras.layers.Reshape((4, 4 * 4 * 8))(h)
    y = keras.layers.Dense(5)(h)
    model = keras.Model(x, y)
    import jax
    video = np.zeros((1, 4, 6, 6, 3), "float32")
    jaxpr = jax.make_jaxpr(lambda w, v: model.stateless_call(w, [], v)[0])(
        [w.value for w in model.trainable_variables], video)
    expected = (2 * (4 * 6 * 6 * 8) * 27 * 3      # 'same' conv: every output, 27 x 3 taps
                + 2 * (4 * 4 * 4 * 8) * 9 * 4     # grouped conv: 9 taps x 4 inputs per group
                + 2 * 4 * 5 * (4 * 4 * 8))        # dense per time step
    assert benchmark_lib.jaxpr_flops(jaxpr.jaxpr) == expected
