"""The models under Keras's JAX backend, without TensorFlow: run as their own pytest process,
`KERAS_BACKEND=jax python -m pytest -q tests_jax` (Keras picks its backend once, when it is
first imported, so these tests cannot share a process with `tests/`).

This file sets `KERAS_BACKEND=jax` before Keras is imported and makes `import tensorflow` fail
for the whole session, as on a machine without TensorFlow: a model path that reaches
TensorFlow fails with the importer in its traceback. (TensorFlow stays installed:
`no_tensorflow_test.py` checks in a fresh process that nothing on the model path imports it
where it is available.) A run that names other paths too is refused; one that reaches this
folder after Keras was imported with another backend leaves its tests out.
"""

import atexit
import importlib.abc
import os
import shutil
import sys
import tempfile

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def _keras_backend_already_chosen() -> str:
    """The backend of an already imported Keras ("" when Keras is not imported yet)."""
    if "keras" not in sys.modules:
        return ""
    return sys.modules["keras"].backend.backend()


class NoTensorFlow(importlib.abc.MetaPathFinder):
    """Makes every import of TensorFlow (and of packages built on it) raise ImportError."""

    BLOCKED = ("tensorflow", "tensorflow_text", "tf_keras")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"tests_jax: {name!r} imported under the JAX backend; the models "
                              "must not need TensorFlow (see the traceback for the importer)")
        return None


_chosen = _keras_backend_already_chosen()
if _chosen and _chosen != "jax":
    # Keras was imported first, with another backend: these tests need a process of their own.
    collect_ignore_glob = ["*_test.py"]
else:
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    # The tests compile many small graphs and run each once or twice: XLA's CPU compilation is
    # most of their time. Without LLVM optimisation and with the older fusion emitters it is
    # 2-10x cheaper (measured on a 2-core Zen 3: R(2+1)D-18's train step 18 -> 9 s CPU,
    # building C3D 39 -> 3 s CPU, the variable initialisers' compilation).
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=false "
                                       "--xla_backend_optimization_level=0")
    # Within the session, compiled programs are kept on disk, keyed by their content: a model
    # rebuilt for a round trip runs the programs its original compiled.
    _CACHE = tempfile.mkdtemp(prefix="aqa_tf_jax_cache_")
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    assert "tensorflow" not in sys.modules, "TensorFlow was imported before tests_jax/conftest"
    sys.meta_path.insert(0, NoTensorFlow())

    import keras  # noqa: E402

    assert keras.backend.backend() == "jax", keras.backend.backend()

    def pytest_configure(config):
        here = os.path.dirname(os.path.abspath(__file__))
        for arg in config.args:
            path = os.path.join(str(config.invocation_params.dir), str(arg).split("::")[0])
            if os.path.commonpath([os.path.abspath(path), here]) != here:
                raise pytest.UsageError(
                    f"{arg}: tests_jax/ runs in a pytest process of its own (it selects the JAX "
                    "backend and blocks TensorFlow): KERAS_BACKEND=jax python -m pytest tests_jax")
        # Keras's variables and JAX arrays define `__array__` without NumPy 2's `copy`
        # keyword: NumPy warns at every conversion (thousands per run), nothing of ours.
        config.addinivalue_line(
            "filterwarnings",
            "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

    # The longest tests first (seconds in CI's rehearsal, 2-core AMD EPYC Zen 3): .ci/run hands
    # these tests out one at a time (`--dist load`: they share no fixtures), so the two
    # workers start with the long ones and the short ones fill the end. (Handed out by module,
    # train_cli_test.py's two, 116 s, went to one worker and everything else, 180 s, to the
    # other.)
    FIRST_TESTS = ("test_training_command_on_jax_trains_evaluates_and_exports",  # 78 s
                   "test_benchmark_command_on_jax_needs_no_tensorflow_and_counts_its_flops",
                   "test_tsa_trains_votes_with_step_maps_and_round_trips",  # 32 s
                   "test_weights_saved_under_jax_load_under_tensorflow")  # 22 s

    def pytest_collection_modifyitems(items):
        def rank(item):
            name = item.name.split("[")[0]
            return FIRST_TESTS.index(name) if name in FIRST_TESTS else len(FIRST_TESTS)
        items.sort(key=rank)  # stable: the others keep their order
