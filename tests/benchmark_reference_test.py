"""tools/benchmark_reference.py without the authors' code: a missing or wrong --reference_dir is
one `error:` line and exit status 2 (checked before PyTorch is imported, so CI needs neither)."""

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "tools", "benchmark_reference.py")


def _run(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _error_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert proc.stdout == ""
    return lines[0]


def test_missing_reference_dir_is_one_error_line(tmp_path):
    line = _error_line(_run(cwd=tmp_path))  # from any folder: the script finds aqa_tf itself
    assert "--reference_dir is required" in line
    assert "ParitoshParmar/MTL-AQA" in line


def test_a_folder_without_their_modules_is_one_error_line(tmp_path):
    (tmp_path / "C3D_altered.py").write_text("")
    line = _error_line(_run(f"--reference_dir={tmp_path}"))
    assert "is not the authors' C3DAVG folder" in line
    assert "S2VTModel.py" in line and "C3D_altered.py" not in line


def test_a_missing_folder_is_one_error_line(tmp_path):
    line = _error_line(_run(f"--reference_dir={tmp_path / 'absent'}"))
    assert "no such folder" in line
