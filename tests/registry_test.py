"""The registries: what each declares (name -> module, known without importing Keras) is what
its modules register, and a command line is parsed, and refused, before TensorFlow loads."""

import importlib
import subprocess
import sys

import pytest

from aqa_tf import registry
from tests.helpers import REPO_ROOT

DECLARING = [name for name in dir(registry)
             if isinstance(getattr(registry, name), registry.Registry)
             and getattr(registry, name).declared]


@pytest.mark.parametrize("name", DECLARING)
def test_each_declared_name_is_registered_by_its_module(name):
    reg = getattr(registry, name)
    for module in set(reg.declared.values()):
        importlib.import_module(module)
    registered = {n for n, _ in reg.items()}
    assert registered == set(reg.declared), (name, registered ^ set(reg.declared))


def test_an_unknown_name_lists_the_declared_ones():
    with pytest.raises(ValueError, match=r"--backbone='c4d': unknown backbone 'c4d'; known "
                                         r"backbones: c3d, i3d, mscadc"):
        registry.BACKBONES.get("c4d", "--backbone")


def test_registering_a_declared_name_twice_is_refused():
    registry.AGGREGATIONS.get("average")
    with pytest.raises(ValueError, match="already registered"):
        registry.AGGREGATIONS.register("average", object())


@pytest.mark.parametrize("module, bad, choices", [
    ("aqa_tf.train", "--backbone=c4d", "c3d|i3d|mscadc|"),
    ("aqa_tf.evaluate", "--heads=score,tpt", "c3d|i3d|mscadc|"),
    ("aqa_tf.export", "--quantize=int4", "c3d|i3d|mscadc|"),
    ("aqa_tf.predict", "--frames_per_second=25", "c3d|i3d|mscadc|"),
    ("aqa_tf.benchmark", "--aggregation=max", "c3d|i3d|mscadc|"),
    ("aqa_tf.protocols", "--protocol=all", "c3d|i3d|mscadc|"),
    ("aqa_tf.serving_client", "--action=hurdles", "diving|gym_vault|"),
    ("aqa_tf.demo", "--port=x", "--model"),
])
def test_flags_are_parsed_and_refused_before_tensorflow_loads(module, bad, choices):
    """`--helpfull` lists every choice, and a bad choice is refused, without importing
    TensorFlow or Keras (about 0.5 s instead of 8-12 s on a 2-core AMD EPYC)."""
    script = (
        "import sys, runpy\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'torch', 'jax') if m in sys.modules)\n"
        "print('exit', code, 'imported', heavy)\n")
    for args in (["--helpfull"], [bad]):
        proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)
        last = proc.stdout.strip().splitlines()[-1]
        assert last in ("exit 0 imported []", "exit 1 imported []", "exit 2 imported []"), (
            args, last, proc.stderr[-2000:])
        if args == ["--helpfull"]:
            assert choices in proc.stdout, module
        else:
            assert last.startswith("exit 1") or last.startswith("exit 2"), (args, last)
            assert bad.split("=")[0].lstrip("-") in proc.stderr, (args, proc.stderr[-500:])
