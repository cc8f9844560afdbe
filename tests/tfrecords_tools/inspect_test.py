import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, synthetic_records, truncated_copy
from tests.helpers import run_module
from tfrecords_tools import inspect as inspect_lib


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return synthetic_records(tmp_path_factory.mktemp("inspect"), num_workers=1, num_train=6,
                             num_test=3, num_frames=24, height=32, width=40, seed=2, num_shards=2)


def test_counts_histograms_and_validation(records):
    result = inspect_lib.inspect_paths([records])
    assert result["problems"] == []
    assert result["splits"]["train"]["count"] == 6 and result["splits"]["test"]["count"] == 3
    assert sum(result["splits"]["train"]["labels"]["ss_no"].values()) == 6
    assert result["splits"]["test"]["frame_shapes"] == {"(32, 40, 3)": 3 * 24}
    assert result["splits"]["train"]["num_frames"]["max"] == 24


def test_truncated_shard_is_named(records, tmp_path):
    broken = truncated_copy(records, str(tmp_path / "broken"), "train-00000-of-00002.tfrecord",
                            keep=0.5)
    result = inspect_lib.inspect_paths([broken])
    assert len(result["problems"]) == 1
    assert "train-00000-of-00002.tfrecord: truncated or corrupt after" in result["problems"][0]
    # The other shards are still read.
    assert result["splits"]["test"]["count"] == 3
    proc = run_module("tfrecords_tools.inspect", broken, timeout=300)
    assert proc.returncode == 1 and "train-00000-of-00002.tfrecord" in proc.stderr


def test_dump_frames_writes_a_contact_sheet(records, tmp_path):
    png = str(tmp_path / "sheet.png")
    proc = subprocess.run([sys.executable, "-m", "tfrecords_tools.inspect", records,
                           f"--dump_frames={png}", "--sample_key=02_002"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Contact sheet of sample 02_002 (24 frames)" in proc.stdout
    import cv2
    assert cv2.imread(png).shape == (3 * 34, 8 * 42, 3)
