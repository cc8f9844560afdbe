"""The package layering, read from the imports of every module (function-level imports too).

  command-line entries (modules with a `__main__` block) -> library
  tfrecords_tools -> aqa_tf, never the reverse
  aqa_tf.models imports only modelling code: models, config, tasks, registry, metrics and
    the caption vocabulary
  aqa_tf.data never imports aqa_tf.models, training or serving
  aqa_tf.serving never imports aqa_tf.training, nor the reverse except for exporting
  no import cycles anywhere (a module never reaches itself through its imports)
  aqa_tf's top level holds the entries and the shared modules only

(`aqa_tf.registry` imports the modules that register its built-ins by name, on first use: that
is how a registry finds its entries, not a dependency of the registry's users.)
"""

import ast
import os
from typing import Dict, List, Set

import pytest

from tests.conftest import REPO_ROOT

# (`aqa_tf.data.captions`: the vocabulary whose words the caption head writes.)
MODELLING_IMPORTS = ("aqa_tf.models", "aqa_tf.config", "aqa_tf.tasks", "aqa_tf.registry",
                     "aqa_tf.metrics", "aqa_tf.data.captions", "aqa_tf.data.exemplars")
ENTRIES = ("train", "evaluate", "predict", "export", "benchmark", "serving_client", "protocols",
           "demo", "batch_predict")
# (`beam_lib`: Apache Beam's runners and options, for the converters of tfrecords_tools and
# for batch_predict.)
SHARED = ("config", "flag_defs", "registry", "tasks", "devices", "beam_lib")


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
    assert MODULES["aqa_tf.train"]["cli"] and not MODULES["aqa_tf.training.train_lib"]["cli"]
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


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("aqa_tf.data")))
def test_data_never_imports_training_or_serving(module):
    bad = [i for i in MODULES[module]["imports"]
           if _within(i, ["aqa_tf.training", "aqa_tf.serving"])]
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("aqa_tf.serving")))
def test_serving_never_imports_training(module):
    bad = [i for i in MODULES[module]["imports"] if _within(i, ["aqa_tf.training"])]
    assert not bad, f"{module} imports {bad}: serving must not need the training library"


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle of `graph` (module -> the modules it imports) as `[a, b, ..., a]`, or
    [] when there is none (depth-first search, iterative)."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph.get(root, ())))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child) and child in graph:
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return []


def import_graph(modules: Dict[str, dict]) -> Dict[str, Set[str]]:
    """module -> the project modules it imports (`from pkg import name` where `name` is not a
    module counts as importing `pkg`; a package's own `__init__` is not an edge of its
    modules)."""
    graph = {}
    for name, info in modules.items():
        edges = set()
        for imported in info["imports"]:
            target = imported if imported in modules else imported.rpartition(".")[0]
            if target in modules and target != name and not name.startswith(target + "."):
                edges.add(target)
        graph[name] = edges
    return graph


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    """Shown to fail on a cycle: the two modules that imported each other before the serving
    package was cut (`predict_lib` opened `.tflite` files through `tflite_lib`, which took
    `Scorer` from `predict_lib`)."""
    before = {"aqa_tf.predict_lib": {"imports": {"aqa_tf.tflite_lib", "aqa_tf.config"}},
              "aqa_tf.tflite_lib": {"imports": {"aqa_tf.predict_lib.Scorer"}},
              "aqa_tf.config": {"imports": set()}}
    assert find_cycle(import_graph(before)) == [
        "aqa_tf.predict_lib", "aqa_tf.tflite_lib", "aqa_tf.predict_lib"]
    after = {"aqa_tf.serving.predict_lib": {"imports": {"aqa_tf.serving.tflite_lib",
                                                        "aqa_tf.serving.scorer.Scorer"}},
             "aqa_tf.serving.tflite_lib": {"imports": {"aqa_tf.serving.scorer.Scorer"}},
             "aqa_tf.serving.scorer": {"imports": set()}}
    assert find_cycle(import_graph(after)) == []


def test_no_import_cycles():
    cycle = find_cycle(import_graph(MODULES))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_top_level_holds_entries_and_shared_modules_only():
    top = sorted(m.split(".")[1] for m in MODULES
                 if m.startswith("aqa_tf.") and m.count(".") == 1 and
                 not os.path.isdir(os.path.join(REPO_ROOT, "aqa_tf", m.split(".")[1])))
    assert top == sorted(ENTRIES + SHARED), top
    for entry in ENTRIES:
        assert MODULES[f"aqa_tf.{entry}"]["cli"], f"aqa_tf.{entry} has no __main__ block"
