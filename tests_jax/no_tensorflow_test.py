"""The model path in a fresh process where TensorFlow is installed (the conftest blocks it in
this one): importing every module of `aqa_tf.models`, building and running a model and
Keras's fit loop leave TensorFlow unimported. And weights trained under JAX load under the
TensorFlow backend (where export and TFLite live) with the same outputs."""

import os
import subprocess
import sys
import textwrap

import numpy as np

import keras

from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models import aqa_model

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, **env) -> str:
    """Runs `code` in a fresh interpreter at the repository root; returns its stdout."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT,
                            env={k: v for k, v in environment.items() if v is not None},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_models_import_and_run_without_importing_tensorflow():
    out = _python("""
        import importlib, pkgutil, sys
        import numpy as np
        import keras
        import aqa_tf.models
        modules = [m.name for m in pkgutil.walk_packages(aqa_tf.models.__path__,
                                                         "aqa_tf.models.")]
        for name in modules + ["aqa_tf.models.losses", "aqa_tf.training.optim"]:
            importlib.import_module(name)
        from aqa_tf.config import DataConfig, ModelConfig
        from aqa_tf.models import aqa_model
        model = aqa_model.build_aqa_model(
            ModelConfig(width_multiplier=0.0625, fc_units=8, heads=("score", "caption"),
                        vocab_size=8, caption_hidden=4, caption_embedding=4),
            DataConfig(sample_length=16, num_frames=16, clip_length=16, crop_size=32,
                       max_caption_words=2))
        out = model({"video": np.zeros((1, 1, 16, 32, 32, 3), "float32"),
                     "caption_tokens": np.ones((1, 3), "int32")})
        assert out["caption"].shape == (1, 3, 8)
        small = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        small.compile("adam", "mse")
        small.fit(np.zeros((4, 3)), np.zeros((4, 1)), epochs=1, verbose=0)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
        print(keras.backend.backend(), len(modules), loaded[:5])
    """, KERAS_BACKEND="jax")
    backend, count, loaded = out.split(maxsplit=2)
    assert backend == "jax" and int(count) >= 10
    assert loaded.strip() == "[]", f"TensorFlow imported on the model path: {loaded}"


def test_weights_saved_under_jax_load_under_tensorflow(tmp_path):
    options = dict(width_multiplier=0.0625, fc_units=8, heads=("score", "dive"),
                   aggregation="weight_decider")
    data = dict(sample_length=32, num_frames=32, clip_length=16, crop_size=32)
    keras.utils.set_random_seed(0)
    model = aqa_model.build_aqa_model(ModelConfig(**options), DataConfig(**data))
    video = np.random.default_rng(0).standard_normal((2, 2, 16, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "video.npy", video)
    model.save_weights(str(tmp_path / "model.weights.h5"))
    expected = {k: np.asarray(v) for k, v in model({"video": video}, training=False).items()}
    _python(f"""
        import numpy as np
        import keras
        from aqa_tf.config import DataConfig, ModelConfig
        from aqa_tf.models import aqa_model
        assert keras.backend.backend() == "tensorflow"
        model = aqa_model.build_aqa_model(ModelConfig(**{options!r}), DataConfig(**{data!r}))
        model.load_weights({str(tmp_path / "model.weights.h5")!r})
        out = model({{"video": np.load({str(tmp_path / "video.npy")!r})}}, training=False)
        np.savez({str(tmp_path / "tf.npz")!r}, **{{k: np.asarray(v) for k, v in out.items()}})
    """, KERAS_BACKEND="tensorflow", XLA_FLAGS=None, JAX_PLATFORMS=None,
            JAX_DISABLE_MOST_OPTIMIZATIONS=None)
    got = np.load(tmp_path / "tf.npz")
    assert set(got.files) == set(expected)
    for name, value in expected.items():  # different kernels: equal up to float rounding
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
