"""The MTL-AQA and AQA-7 converters as Apache Beam pipelines (`tfrecords_tools.beam_pipeline`,
issue 29): on a synthetic frames tree with one bad sample, the DirectRunner (2 worker processes)
writes the records that the process pool (`--runner=local`) writes, every field of every record
equal, reports the bad sample with the same reason, and leaves shards named and numbered as
`aqa_tf.data.shards` reads them. (The JIGSAWS and FineDiving converters' Beam tests are
`beam_convert_jigsaws_test.py` and `beam_convert_finediving_test.py`.) Apache Beam is optional
(requirements-beam.txt): without it the Beam tests skip, and asking for a Beam runner is one
line naming the install command."""

import json
import os
import re

import pytest

from aqa_tf import beam_lib
from aqa_tf.config import ConfigError
from aqa_tf.data import aqa7 as aqa7_layout
from aqa_tf.data import synthetic
from tests.helpers import assert_same_records, run_cli, user_error
from tfrecords_tools import aqa7
from tfrecords_tools import mtl_aqa
from tfrecords_tools import mtl_aqa_raw

T, H, W, SAMPLE_LENGTH, MARGIN = 30, 48, 64, 16, 2
OPTIONS = dict(sample_length=SAMPLE_LENGTH, jitter_margin=MARGIN, width=W, height=H,
               num_shards_train=2, num_shards_test=2, progress=False)
BAD = "01_002"  # one of its frames is not a JPEG


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Synthetic dives of two events (4 train, 2 test) as MTL-AQA extracted frames, one frame
    of `BAD` corrupt."""
    out = str(tmp_path_factory.mktemp("raw"))
    samples = (list(synthetic.generate_split("train", 4, 0, T, H, W)) +
               list(synthetic.generate_split("test", 2, 0, T, H, W)))
    mtl_aqa_raw.write_raw_dataset(out, samples, synthetic.synthetic_vocabulary(),
                                  write_videos=False)
    end = mtl_aqa.load_annotations(out)["annotations"][(1, 2)]["end_frame"]
    with open(os.path.join(out, "frames", "01", f"{end - 3:06d}.jpg"), "wb") as f:
        f.write(b"\xff\xd8 this is not a jpeg")
    return out


def _check_shards(out, max_shards, other_files):
    """Shards as aqa_tf.data.shards names them (none empty, at most `max_shards` per split) and,
    beside them, only `other_files`: nothing of Beam's left over."""
    names = sorted(os.listdir(out))
    shards = [n for n in names if n.endswith(".tfrecord")]
    assert [n for n in names if n not in shards] == sorted(other_files)
    for split in ("train", "test"):
        mine = [n for n in shards if n.startswith(f"{split}-")]
        assert 1 <= len(mine) <= max_shards
        assert mine == [f"{split}-{i:05d}-of-{len(mine):05d}.tfrecord" for i in range(len(mine))]
    assert all(os.path.getsize(os.path.join(out, n)) > 0 for n in shards)


def test_the_beam_command_writes_the_records_of_the_process_pool(raw, tmp_path):
    """`python -m tfrecords_tools.mtl_aqa --runner=DirectRunner` (2 worker processes, which
    import the converter's functions by module name, not from `__main__`): the bad sample's
    SKIPPED line and exit status 1, and the records of `--runner=local` (in this process),
    every field equal. One Beam run (each costs ~40 s of worker start-up here); a bad Beam
    option is one line (exit 2) before anything is read."""
    pytest.importorskip("apache_beam")
    frames = os.path.join(raw, "frames")
    local = mtl_aqa.convert(raw, str(tmp_path / "local"), frames_dir=frames, runner="local",
                            num_workers=1, **OPTIONS)
    assert local.written == {"train": 3, "test": 2} and set(local.skipped) == {BAD}
    flags = [f"--annotations_dir={raw}", f"--frames_dir={frames}",
             f"--sample_length={SAMPLE_LENGTH}", f"--jitter_margin={MARGIN}", f"--width={W}",
             f"--height={H}", "--num_shards_train=2", "--num_shards_test=2", "--num_workers=2",
             "--runner=DirectRunner"]
    out = str(tmp_path / "beam")
    proc = run_cli("tfrecords_tools.mtl_aqa", *flags, f"--out_dir={out}", expect=1)
    assert f"SKIPPED sample {BAD}: undecodable image" in proc.stderr
    assert "1 samples SKIPPED" in proc.stdout
    assert "train: 3 samples written" in proc.stdout and "test: 2 samples written" in proc.stdout
    with open(os.path.join(out, "conversion_report.json")) as f:
        report = json.load(f)
    assert report["skipped"] == local.skipped and report["written"] == local.written
    assert report["notes"] == json.loads(json.dumps(local.notes))

    assert sorted(assert_same_records(str(tmp_path / "local"), out)) == [
        "01_001", "01_003", "01_004", "02_001", "02_002"]
    _check_shards(out, 2, ["conversion_report.json", "vocab.json"])
    assert not [n for n in os.listdir(tmp_path) if ".partial-" in n]

    user_error(run_cli("tfrecords_tools.mtl_aqa", *flags, f"--out_dir={tmp_path / 'bad'}",
                       "--beam_pipeline_options=--direct_num_workers=many", expect=2),
               "--beam_pipeline_options", "invalid int value")
    assert not os.path.exists(tmp_path / "bad")


def test_a_beam_runner_without_beam_is_one_line(raw, tmp_path, monkeypatch):
    """Runs everywhere (Beam installed or not): the refusal names the install command, before
    any output folder is made."""

    monkeypatch.setattr(beam_lib, "beam_available", lambda: False)
    with pytest.raises(ConfigError, match=re.escape(
            "--runner=DirectRunner needs Apache Beam, which is not installed: "
            "pip install -r requirements-beam.txt")):
        mtl_aqa.convert(raw, str(tmp_path / "out"), frames_dir=os.path.join(raw, "frames"),
                        runner="DirectRunner", **OPTIONS)
    assert not os.path.exists(tmp_path / "out")


def test_the_aqa7_beam_command_writes_the_records_of_the_process_pool(tmp_path):
    """`python -m tfrecords_tools.aqa7 --runner=DirectRunner` (2 worker processes) on a
    synthetic AQA-7 release (six actions, 2 training and 1 test sample each) with one corrupt
    JPEG: the records of `--runner=local`, every field equal, the same report (skipped sample and
    reason, counts, per-action statistics of the samples written) and `aqa7_actions.json`."""
    pytest.importorskip("apache_beam")
    root = str(tmp_path / "raw")
    samples = synthetic.write_aqa7_tree(root, 2, 1, num_frames=8, height=32, width=40, seed=3)
    bad = sorted((s for s in samples if s.split == "train"), key=lambda s: s.sample_key)[1]
    with open(os.path.join(aqa7_layout.sample_dir(root, bad.action_name, bad.sample_number),
                           "img_00003.jpg"), "wb") as f:
        f.write(b"\xff\xd8 this is not a jpeg")
    sizes = dict(width=40, height=32, num_shards_train=2, num_shards_test=2)
    local = aqa7.convert(root, str(tmp_path / "local"), runner="local", num_workers=1,
                         progress=False, **sizes)
    assert local.written == {"train": 11, "test": 6} and set(local.skipped) == {bad.sample_key}
    out = str(tmp_path / "beam")
    proc = run_cli("tfrecords_tools.aqa7", f"--root={root}", f"--out_dir={out}",
                   *(f"--{k}={v}" for k, v in sizes.items()), "--num_workers=2",
                   "--runner=DirectRunner", expect=1)
    assert f"SKIPPED sample {bad.sample_key}: undecodable image" in proc.stderr
    with open(os.path.join(out, "conversion_report.json")) as f:
        report = json.load(f)
    assert report["skipped"] == local.skipped and report["written"] == local.written
    assert report["notes"] == json.loads(json.dumps(local.notes))
    with open(os.path.join(out, aqa7_layout.ACTIONS_FILE)) as f, \
            open(os.path.join(tmp_path / "local", aqa7_layout.ACTIONS_FILE)) as g:
        assert json.load(f) == json.load(g)
    keys = sorted(assert_same_records(str(tmp_path / "local"), out))
    assert len(keys) == 17 and bad.sample_key not in keys
    _check_shards(out, 2, ["conversion_report.json", aqa7_layout.ACTIONS_FILE])
