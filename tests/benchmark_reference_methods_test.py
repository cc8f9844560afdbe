"""tools/benchmark_reference_methods.py: a user's mistake (no or unknown --method, no
--reference_dir, a folder that is not the method's repository) is one `error:` line and exit
status 2, checked before PyTorch is imported (here a `torch` that fails as it loads stands in
for it, so CI needs neither torch nor the authors' code).

The smoke test runs the script at a tiny size on the authors' code where it is on this machine:
$MUSDL_REPO / $CORE_REPO (a checkout or a git directory of github.com/nzl-thu/MUSDL,
github.com/yuxumin/CoRe), else the local mirror (`../.mirror/<owner>+<name>/repo`, as
`tests.helpers.authors_module` looks); without it, or without torch, it is skipped.
"""

import io
import json
import math
import os
import subprocess
import sys
import tarfile

import pytest

from tests.benchmark_reference_test import _error_line
from tests.conftest import REPO_ROOT
from tests.helpers import authors_repository

SCRIPT = os.path.join(REPO_ROOT, "tools", "benchmark_reference_methods.py")


def _run(*args, cwd=REPO_ROOT, env=None, timeout=120):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture
def no_torch(tmp_path):
    """An environment where `import torch` fails loudly."""
    fake = tmp_path / "no_torch"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise RuntimeError('torch was imported')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(fake)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def test_missing_or_unknown_method_is_one_error_line(tmp_path, no_torch):
    line = _error_line(_run(f"--reference_dir={tmp_path}", env=no_torch, cwd=tmp_path))
    assert "--method is required: one of usdl, musdl, core, tsa" in line
    line = _error_line(_run("--method=c3d", f"--reference_dir={tmp_path}", env=no_torch))
    assert "--method=c3d: must be one of usdl, musdl, core, tsa" in line


def test_missing_reference_dir_is_one_error_line(tmp_path, no_torch):
    line = _error_line(_run("--method=core", env=no_torch, cwd=tmp_path))
    assert "--reference_dir is required" in line
    assert "git clone https://github.com/yuxumin/CoRe" in line
    line = _error_line(_run("--method=tsa", f"--reference_dir={tmp_path / 'absent'}",
                            env=no_torch))
    assert "no such folder" in line


def test_a_folder_that_is_not_the_methods_repository_is_one_error_line(tmp_path, no_torch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "i3d.py").write_text("")
    line = _error_line(_run("--method=musdl", f"--reference_dir={tmp_path}", env=no_torch))
    assert "is not a checkout of github.com/nzl-thu/MUSDL (for --method=musdl)" in line
    assert "models/evaluator.py" in line and "models/i3d.py" not in line
    # Another method's repository (CoRe's files) is not MUSDL's, nor FineDiving's.
    for name in ("models/Backbone.py", "models/RegressTree.py", "tools/helper.py",
                 "utils/Group_helper.py", "utils/misc.py", "configs/MTL_CoRe.yaml"):
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        (tmp_path / name).write_text("")
    line = _error_line(_run("--method=tsa", f"--reference_dir={tmp_path}", env=no_torch))
    assert "github.com/xujinglin/FineDiving" in line and "models/PS.py" in line


def test_flags_beyond_the_folder_are_checked_without_torch(tmp_path, no_torch):
    for name in ("models/i3d.py", "models/evaluator.py", "MTL-AQA/main.py", "MTL-AQA/opts.py",
                 "MTL-AQA/config.py"):  # the files that identify MUSDL's repository
        os.makedirs(tmp_path / os.path.dirname(name), exist_ok=True)
        (tmp_path / name).write_text("")
    line = _error_line(_run("--method=usdl", f"--reference_dir={tmp_path}", "--voters=2",
                            env=no_torch))
    assert "--voters: only core and tsa score a query against exemplars, not usdl" in line
    line = _error_line(_run("--method=usdl", f"--reference_dir={tmp_path}", "--num_frames=50",
                            env=no_torch))
    assert "--num_frames=50: their clip cutting reads 96 frames" in line
    line = _error_line(_run("--method=usdl", f"--reference_dir={tmp_path}",
                            "--measure=train,predict", env=no_torch))
    assert "--measure=train,predict: train, inference or both" in line


# --------------------------------------------------------- the authors' code, tiny size ----

REPOSITORIES = {"usdl": ("nzl-thu/MUSDL", "MUSDL_REPO", "MTL-AQA/main.py"),
                "core": ("yuxumin/CoRe", "CORE_REPO", "tools/helper.py")}


def _checkout(tmp_path, repo: str, env: str, marker: str) -> str:
    """A checkout of `repo`: $`env` or the mirror, as a checkout, or a git directory (its HEAD
    extracted into `tmp_path`); skipped where there is none."""
    where = authors_repository(repo, env)
    if os.path.isfile(os.path.join(where, marker)):
        return where
    for git_dir in (os.path.join(where, ".git"), where):  # a checkout's or a bare one
        if not os.path.isdir(git_dir):
            continue
        try:
            proc = subprocess.run(["git", "--git-dir", git_dir, "archive", "HEAD"],
                                  capture_output=True, timeout=60)
        except OSError:
            break
        if proc.returncode == 0:
            folder = tmp_path / repo.replace("/", "+")
            with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(folder, filter="data")
                else:
                    archive.extractall(folder)
            return str(folder)
    pytest.skip(f"{repo} is not on this machine (set {env} to a checkout or its git "
                "directory); the error-line tests still run")


@pytest.mark.parametrize("method", sorted(REPOSITORIES))
def test_their_code_runs_at_a_tiny_size(method, tmp_path):
    pytest.importorskip("torch", reason="the smoke test runs the authors' PyTorch modules")
    root = _checkout(tmp_path, *REPOSITORIES[method])
    output = tmp_path / "results.json"
    proc = _run(f"--method={method}", f"--reference_dir={root}", "--crop_size=32",
                "--batch_size=1", "--warmup_steps=0", "--benchmark_steps=1",
                f"--output={output}", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(output.read_text())
    for key in ("train_samples_per_s", "inference_samples_per_s"):
        assert math.isfinite(results[key]) and results[key] > 0, (key, results[key])
    assert results["method"] == method and results["paper_size"] is False
    assert results["input"] == [10, 16, 32, 32, 3]
    assert results["batch_size"] == results["inference_batch_size"] == 1
    assert results["reference"]["code"] == f"github.com/{REPOSITORIES[method][0]}"
    assert "train" in proc.stdout and "inference" in proc.stdout
