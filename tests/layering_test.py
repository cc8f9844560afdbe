"""The package layering, read from the imports of every module (function-level imports too).

  command-line entries (modules with a `__main__` block) -> library
  tfrecords_tools -> aqa_tf, never the reverse
  aqa_tf.models imports only modelling code: aqa_tf.models, config, tasks, registry
  aqa_tf.data never imports aqa_tf.models

(`aqa_tf.registry` imports the modules that register its built-ins by name, on first use: that
is how a registry finds its entries, not a dependency of the registry's users.)
"""

import ast
import os
from typing import Dict, Set

import pytest

from tests.conftest import REPO_ROOT

MODELLING_IMPORTS = ("aqa_tf.models", "aqa_tf.config", "aqa_tf.tasks", "aqa_tf.registry")


def module_name(path: str) -> str:
    relative = os.path.relpath(path, REPO_ROOT)[:-len(".py")].split(os.sep)
    return ".".join(relative[:-1] if relative[-1] == "__init__" else relative)


def imports_of(source: str, module: str, is_package: bool = False) -> Set[str]:
    """Absolute names of the modules `source` imports (`from pkg import name` counts as
    `pkg.name` too, since `name` may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _modules(package: str) -> Dict[str, dict]:
    found = {}
    for folder, _, files in os.walk(os.path.join(REPO_ROOT, package)):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                with open(path) as f:
                    source = f.read()
                name = module_name(path)
                found[name] = {"imports": imports_of(source, name, file == "__init__.py"),
                               "cli": 'if __name__ == "__main__":' in source}
    return found


MODULES = {**_modules("aqa_tf"), **_modules("tfrecords_tools")}


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_reader_sees_imports():
    assert "aqa_tf.flag_defs" in MODULES["aqa_tf.train"]["imports"]
    assert MODULES["aqa_tf.train"]["cli"] and not MODULES["aqa_tf.train_lib"]["cli"]
    source = "from . import heads\nfrom ..data import features\nimport tfrecords_tools.inspect\n"
    assert imports_of(source, "aqa_tf.models.aqa_model") >= {
        "aqa_tf.models.heads", "aqa_tf.data.features", "tfrecords_tools.inspect"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("aqa_tf")))
def test_library_never_imports_the_tools(module):
    bad = [i for i in MODULES[module]["imports"] if _within(i, ["tfrecords_tools"])]
    assert not bad, f"{module} imports {bad}: the tools import the library, not the reverse"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("aqa_tf.models")))
def test_models_import_only_modelling_code(module):
    bad = [i for i in MODULES[module]["imports"]
           if i.startswith("aqa_tf.") and not _within(i, MODELLING_IMPORTS)]
    assert not bad, f"{module} imports {bad}; models may import only {MODELLING_IMPORTS}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("aqa_tf.data")))
def test_data_never_imports_models(module):
    bad = [i for i in MODULES[module]["imports"] if _within(i, ["aqa_tf.models"])]
    assert not bad, f"{module} imports {bad}"


def test_only_entry_modules_import_entry_modules():
    entries = {m for m, info in MODULES.items() if info["cli"]}
    assert {"aqa_tf.train", "aqa_tf.evaluate", "aqa_tf.benchmark",
            "aqa_tf.weights.convert"} <= entries
    for module, info in MODULES.items():
        bad = sorted(info["imports"] & entries - {module})
        assert info["cli"] or not bad, f"library module {module} imports the entry module(s) {bad}"
