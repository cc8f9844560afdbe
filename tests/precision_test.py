"""`--mixed_precision=auto` (`aqa_tf.training.precision`): the probe runs the model itself, keeps
the faster precision (bf16 only with a clear margin), caches its answer per machine and model, and
says what it measured."""

import dataclasses
import json
import os

import pytest

from aqa_tf.training import precision
from aqa_tf.config import ConfigError, DataConfig, ModelConfig, TrainConfig

MODEL = ModelConfig(width_multiplier=0.0625, fc_units=8, heads=("score",))
DATA = DataConfig(num_frames=16, sample_length=16, clip_length=16, clip_stride=16, crop_size=32,
                  batch_size=2)
TRAIN = TrainConfig(mixed_precision="auto", precision_probe_steps=2)


def test_explicit_precisions_are_kept_without_a_probe(monkeypatch):
    monkeypatch.setattr(precision, "measure", lambda *a, **k: pytest.fail("probed"))
    for requested, policy in (("none", "float32"), ("mixed_bfloat16", "mixed_bfloat16"),
                              ("mixed_float16", "mixed_float16")):
        config = dataclasses.replace(TRAIN, mixed_precision=requested)
        assert precision.choose(MODEL, DATA, config) == policy


@pytest.mark.parametrize("bf16_speedup,expected", [(1.6, "mixed_bfloat16"),
                                                    (1.02, "float32"), (0.05, "float32")])
def test_the_faster_wins_bf16_only_with_a_margin(monkeypatch, bf16_speedup, expected):
    # Step seconds of three rounds (batch 2): the median round ratio decides, not one step.
    seconds = {"float32": [0.2, 0.2, 0.9],
               "mixed_bfloat16": [0.2 / bf16_speedup, 0.2 / bf16_speedup, 0.1]}
    monkeypatch.setattr(precision, "measure",
                        lambda policies, *a, **k: {p: seconds[p] for p in policies})
    monkeypatch.setattr(precision, "conv3d_gflops", lambda shape, dtype: 100.0)
    lines = []
    assert precision.choose(MODEL, DATA, TRAIN, log=lines.append) == expected
    assert f"--mixed_precision=auto: {expected} (probe" in lines[0]
    assert f"bf16/fp32 {bf16_speedup:.2f}x (median of the rounds)" in lines[0]
    assert "3 training steps of this model in each" in lines[0] and " cores" in lines[0]


def test_probe_runs_the_model_and_is_cached_per_machine_and_model(tmp_path, monkeypatch):
    lines = []
    chosen = precision.choose(MODEL, DATA, TRAIN, cache_dir=str(tmp_path), log=lines.append)
    assert chosen in precision.CANDIDATES
    with open(tmp_path / precision.PROBE_FILE) as f:
        cached = json.load(f)
    assert cached["chosen"] == chosen and cached["batch_size"] == 2
    speeds, conv = cached["train_samples_per_s"], cached["conv3d_gflop_per_s"]
    assert conv["float32"] > 0 and conv["bfloat16"] > 0
    if conv["bfloat16"] < precision.MIN_CONV_RATIO * conv["float32"]:
        # No native bf16 here: decided by the convolution, no model steps run.
        assert chosen == "float32" and speeds == {"float32": None, "mixed_bfloat16": None}
        assert "no training steps were needed" in lines[0]
    else:  # the faster one (bf16 with the margin)
        assert speeds["float32"] > 0 and speeds["mixed_bfloat16"] > 0
        assert cached["rounds"] >= TRAIN.precision_probe_steps
        assert (chosen == "mixed_bfloat16") == (
            cached["bf16_speedup"] >= precision.MIN_SPEEDUP)
    print(lines[0])  # the probe's own line, kept in the test log
    import keras
    assert keras.mixed_precision.global_policy().name == "float32"  # left as it was

    # A second run of the same model on the same machine reads the cache...
    monkeypatch.setattr(precision, "measure", lambda *a, **k: pytest.fail("probed again"))
    lines.clear()
    assert precision.choose(MODEL, DATA, TRAIN, cache_dir=str(tmp_path),
                            log=lines.append) == chosen
    assert "cached" in lines[0]
    # ... another model probes again.
    monkeypatch.setattr(precision, "measure",
                        lambda policies, *a, **k: dict.fromkeys(policies, [1.0]))
    other = dataclasses.replace(MODEL, backbone_batch_norm=not MODEL.backbone_batch_norm)
    assert precision.choose(other, DATA, TRAIN, cache_dir=str(tmp_path)) == "float32"


def test_slow_bf16_convolution_decides_without_model_steps(monkeypatch):
    policies = []
    monkeypatch.setattr(precision, "measure", lambda p, *a, **k: policies.extend(p)
                        or dict.fromkeys(p, [1.0]))
    monkeypatch.setattr(precision, "conv3d_gflops",
                        lambda shape, dtype: 100.0 if dtype == "float32" else 4.0)
    lines = []
    assert precision.choose(MODEL, DATA, TRAIN, log=lines.append) == "float32"
    assert policies == []  # no model steps: the convolution decided
    assert "a bf16 Conv3D runs at 0.04x float32's speed" in lines[0]


def test_auto_with_multi_worker_is_a_config_error():
    with pytest.raises(ConfigError, match="multi_worker"):
        precision.choose(MODEL, DATA, dataclasses.replace(TRAIN, distribution="multi_worker"))


def test_cpu_description_names_the_cpu():
    described = precision.cpu_description()
    assert described["model_name"] and int(described["cores"]) >= 1
    if os.path.exists("/proc/cpuinfo"):
        assert "cpu_family" in described and "flags" in described


def test_evaluation_runs_in_the_precision_the_run_trained_in(tmp_path, monkeypatch):
    """`aqa_tf.evaluate` reproduces a run's final report: an explicit precision is kept, `auto`
    takes the probe's recorded choice from the run folder (no probe of its own), float32 where
    nothing is recorded."""
    monkeypatch.setattr(precision, "conv3d_gflops", lambda *a, **k: pytest.fail("probed"))
    monkeypatch.setattr(precision, "_gpu_policy", lambda: None)
    assert precision.evaluation_policy("mixed_bfloat16", str(tmp_path)) == "mixed_bfloat16"
    assert precision.evaluation_policy("none", str(tmp_path)) == "float32"
    lines = []
    assert precision.evaluation_policy("auto", str(tmp_path), log=lines.append) == "float32"
    with open(tmp_path / precision.PROBE_FILE, "w") as f:
        json.dump({"key": "another machine's", "chosen": "mixed_bfloat16"}, f)
    assert precision.evaluation_policy("auto", str(tmp_path), log=lines.append) == \
        "mixed_bfloat16"
    assert "no precision_probe.json" in lines[0] and "the run trained in" in lines[1], lines


def test_probe_steps_the_two_models_in_turn_for_its_rounds_and_seconds(monkeypatch):
    """`measure` alternates the policies' steps (so load on the machine hits both alike), runs
    at least the requested rounds, and more while they take under `min_seconds`."""
    import keras
    calls = []
    monkeypatch.setattr(keras.Model, "train_on_batch",
                        lambda self, x, y: calls.append(self.dtype_policy.name))
    seconds = precision.measure(precision.CANDIDATES, MODEL, DATA, TRAIN, rounds=3, warmup=1,
                                min_seconds=0.0)
    assert {p: len(s) for p, s in seconds.items()} == {"float32": 3, "mixed_bfloat16": 3}
    assert calls == ["float32", "mixed_bfloat16"] + ["float32", "mixed_bfloat16"] * 3
    calls.clear()
    seconds = precision.measure(precision.CANDIDATES, MODEL, DATA, TRAIN, rounds=1, warmup=0,
                                min_seconds=60.0, max_rounds=7)
    assert len(seconds["float32"]) == 7 and len(calls) == 14
    assert keras.mixed_precision.global_policy().name == "float32"
