"""Every command in README.md and docs/*.md runs as written: each fenced `python -m aqa_tf...`
(or `tfrecords_tools...`) command names an existing module, and every `--flag` it passes is a
flag of that module (`--helpfull` of the module, in a process of its own)."""

import functools
import glob
import os
import re
import shlex
import sys
from typing import Dict, List, Set, Tuple

import pytest

from tests.helpers import REPO_ROOT, run_module

PAGES = [os.path.join(REPO_ROOT, "README.md")] + sorted(
    glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))
PACKAGES = ("aqa_tf", "tfrecords_tools")
# Flags that absl defines in every program.
ABSL_FLAGS = {"flagfile", "helpfull", "help", "helpshort", "helpxml", "undefok", "logtostderr",
              "alsologtostderr", "v", "verbosity", "log_dir", "stderrthreshold"}


def fenced_blocks(text: str) -> List[str]:
    """The contents of the ``` fenced blocks of a Markdown text."""
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> List[List[str]]:
    """The project commands of a shell block, as argument lists starting at the module name
    (line continuations joined; `VAR=value` prefixes, `&&`-chained commands handled)."""
    found = []
    text = block.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            for i, word in enumerate(words[:-2]):
                if re.fullmatch(r"python3?", os.path.basename(word)) and words[i + 1] == "-m" \
                        and words[i + 2].split(".")[0] in PACKAGES:
                    found.append(words[i + 2:])
    return found


def documented_commands() -> List[Tuple[str, List[str]]]:
    return [(os.path.relpath(page, REPO_ROOT), command)
            for page in PAGES for block in fenced_blocks(open(page).read())
            for command in commands(block)]


COMMANDS = documented_commands()


@functools.lru_cache(maxsize=None)
def module_flags(module: str) -> Set[str]:
    """The flags `python -m module --helpfull` lists (absl's own included)."""
    proc = run_module(module, "--helpfull", timeout=300)
    names = set(re.findall(r"^\s+--(?:\[no\])?([A-Za-z0-9_]+)", proc.stdout, flags=re.M))
    assert names, f"{module} --helpfull listed no flags:\n{proc.stdout[-1000:]}" + \
        proc.stderr[-2000:]
    return names | ABSL_FLAGS


def flags_of(command: List[str]) -> Dict[str, str]:
    """--name[=value] / --noname of a command -> name as the module defines it."""
    names = {}
    for word in command[1:]:
        match = re.match(r"--([A-Za-z0-9_]+)", word)
        if match:
            names[word] = match.group(1)
    return names


def test_the_pages_give_the_commands_of_every_entry():
    modules = {command[0] for _, command in COMMANDS}
    assert {"aqa_tf.train", "aqa_tf.evaluate", "aqa_tf.predict", "aqa_tf.export",
            "aqa_tf.benchmark", "aqa_tf.serving_client", "aqa_tf.protocols"} <= modules, modules


def test_the_extractor_reads_continuations_and_chains():
    block = ("pip install -r requirements.txt && python -m aqa_tf.train \\\n"
             "    --flagfile configs/quickstart.cfg --epochs=1  # a comment\n"
             "KERAS_BACKEND=jax python3 -m aqa_tf.benchmark --format=tflite\n")
    assert commands(block) == [["aqa_tf.train", "--flagfile", "configs/quickstart.cfg",
                                "--epochs=1"], ["aqa_tf.benchmark", "--format=tflite"]]
    assert flags_of(["aqa_tf.export", "--noplot", "--quantize=int8"]) == {
        "--noplot": "noplot", "--quantize=int8": "quantize"}


@pytest.mark.parametrize("module", sorted({c[0] for _, c in COMMANDS}))
def test_each_documented_command_names_a_module_and_flags_it_has(module):
    path = os.path.join(REPO_ROOT, *module.split(".")) + ".py"
    assert os.path.exists(path), f"{module}: no such module ({path})"
    known = module_flags(module)
    for page, command in COMMANDS:
        if command[0] != module:
            continue
        for word, name in flags_of(command).items():
            plain = name[2:] if name.startswith("no") and name[2:] in known else name
            assert plain in known, (f"{page}: `python -m {' '.join(command)}`: {module} has no "
                                    f"flag {word.split('=')[0]}")


if __name__ == "__main__":  # list them
    for page, command in COMMANDS:
        print(f"{page}: python -m {' '.join(command)}", file=sys.stdout)
