import glob
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf

from aqa_tf.metrics import captions as caption_metrics
from aqa_tf.data import captions
from aqa_tf.data import pipeline
from aqa_tf.data import synthetic
from aqa_tf.data import features
from aqa_tf.data import shards as shards_lib
from tests.conftest import mtl_aqa_annotations
from tests.helpers import run_module
from tfrecords_tools import mtl_aqa
from tfrecords_tools import mtl_aqa_raw

T, H, W, SAMPLE_LENGTH, MARGIN = 30, 48, 64, 16, 2
OPTIONS = dict(sample_length=SAMPLE_LENGTH, jitter_margin=MARGIN, width=W, height=H,
               num_shards_train=2, num_shards_test=1, num_workers=1, progress=False)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Synthetic dives of two events written in the real MTL-AQA layout."""
    out = tmp_path_factory.mktemp("raw")
    samples = (list(synthetic.generate_split("train", 3, 0, T, H, W)) +
               list(synthetic.generate_split("test", 2, 0, T, H, W)))
    mtl_aqa_raw.write_raw_dataset(str(out), samples, synthetic.synthetic_vocabulary())
    return str(out), {s.sample_key: s for s in samples}


def _read_split(out_dir, split):
    files = sorted(glob.glob(os.path.join(out_dir, f"{split}-*.tfrecord")))
    return {r["sample_key"]: r for r in (features.parse_to_numpy(x.numpy())
                                         for x in tf.data.TFRecordDataset(files))}


@pytest.mark.parametrize("source", ["frames", "videos"])
def test_conversion_reads_back_every_field(raw, source, tmp_path):
    raw_dir, samples = raw
    out = str(tmp_path / "records")
    kwargs = {"frames_dir": os.path.join(raw_dir, "frames")} if source == "frames" else {
        "videos_dir": os.path.join(raw_dir, "videos")}
    report = mtl_aqa.convert(raw_dir, out, **kwargs, **OPTIONS)
    assert report.skipped == {} and report.written == {"train": 3, "test": 2}
    vocab = captions.Vocabulary.load(os.path.join(out, "vocab.json"))
    annotations = mtl_aqa.load_annotations(raw_dir)["annotations"]
    tolerance = 6 if source == "frames" else 10
    for split, keys in (("train", ["01_001", "01_002", "01_003"]), ("test", ["02_001", "02_002"])):
        records = _read_split(out, split)
        assert sorted(records) == keys
        for key, record in records.items():
            source_sample = samples[key]
            spec = source_sample.labels
            for name in mtl_aqa.LABELS:
                assert record[name] == getattr(spec, name), name
            assert record["final_score"] == pytest.approx(spec.final_score, rel=1e-6)
            assert record["difficulty"] == pytest.approx(spec.difficulty, rel=1e-6)
            assert vocab.decode(record["caption"]) == source_sample.caption_words
            annotation = annotations[tuple(int(p) for p in key.split("_"))]
            assert record["start_frame"] == annotation["start_frame"]
            assert record["end_frame"] == annotation["end_frame"]
            assert record["action_id"] == 0 and (record["height"], record["width"]) == (H, W)
            # Stored: SAMPLE_LENGTH frames ending at the end frame, plus the margin on each side.
            assert record["num_frames"] == SAMPLE_LENGTH + 2 * MARGIN
            assert record["end_index"] == SAMPLE_LENGTH - 1 + MARGIN
            first = source_sample.end_index - record["end_index"]
            expected = source_sample.frames[first:first + record["num_frames"]].astype(int)
            stored = np.stack([features.decode_jpeg(f) for f in record["frames"]]).astype(int)
            errors = np.abs(stored - expected).mean(axis=(1, 2, 3))
            assert errors.max() < tolerance, errors
            # Alignment: each stored frame is closest to its own source frame.
            shifted = np.abs(stored[1:] - expected[:-1]).mean(axis=(1, 2, 3))
            assert np.all(errors[1:] < shifted)


def test_real_annotation_files():
    data = mtl_aqa.load_annotations(mtl_aqa_annotations())
    assert len(data["annotations"]) == 1412
    assert len(data["splits"]["train"]) == 1059 and len(data["splits"]["test"]) == 353
    assert len(data["vocab"]) == 5781
    assert len(data["captions_without_annotation"]) == 4
    assert all(isinstance(k[0], int) for k in data["captions"])
    vocab = data["vocab"]
    for key, words in data["captions"].items():
        ids = vocab.encode(words, where=str(key))
        assert ids[0] == captions.SOS_ID and ids[-1] == captions.EOS_ID
        plain = words[1:] if words[0] == captions.SOS else list(words)
        plain = plain[:-1] if plain and plain[-1] == captions.EOS else plain
        assert vocab.decode(ids) == plain
        cut = captions.cut_caption(ids, 100)
        assert vocab.decode(cut) == plain[:100] and cut[-1] == captions.EOS_ID
        assert len(cut) == min(len(plain), 100) + 2
        # The training pipeline's cut (in the graph): the caption targets are the same words.
        padded = pipeline.cut_and_pad_caption(tf.constant(ids, tf.int64), 100).numpy()
        assert caption_metrics.decode_captions([padded[1:]], vocab) == [" ".join(plain[:100])]


def _break(raw_dir, tmp_path):
    """A copy of the raw data with one corrupt JPEG, one missing frame range, one NaN score."""
    import shutil
    broken = str(tmp_path / "broken")
    shutil.copytree(raw_dir, broken)
    annotations_path = os.path.join(broken, "final_annotations_dict.pkl")
    with open(annotations_path, "rb") as f:
        annotations = pickle.load(f)
    end = annotations[(1, 1)]["end_frame"]
    with open(os.path.join(broken, "frames", "01", f"{end - 3:06d}.jpg"), "wb") as f:
        f.write(b"\xff\xd8 this is not a jpeg")
    end = annotations[(1, 2)]["end_frame"]
    for n in range(end - 6, end - 2):
        os.remove(os.path.join(broken, "frames", "01", f"{n:06d}.jpg"))
    annotations[(2, 1)]["final_score"] = float("nan")
    with open(annotations_path, "wb") as f:
        pickle.dump(annotations, f)
    return broken


def test_bad_samples_are_reported_and_the_good_ones_written(raw, tmp_path):
    broken = _break(raw[0], tmp_path)
    out = str(tmp_path / "records")
    report = mtl_aqa.convert(broken, out, frames_dir=os.path.join(broken, "frames"), **OPTIONS)
    assert set(report.skipped) == {"01_001", "01_002", "02_001"}
    assert "undecodable image" in report.skipped["01_001"] and "01/" in report.skipped["01_001"]
    assert "missing 4 of the frames" in report.skipped["01_002"]
    assert "final_score is nan" in report.skipped["02_001"]
    assert sorted(_read_split(out, "train")) == ["01_003"]
    assert sorted(_read_split(out, "test")) == ["02_002"]
    assert report.written == {"train": 1, "test": 1}

    # The CLI says the same and exits non-zero.
    proc = run_module(
        "tfrecords_tools.mtl_aqa", f"--annotations_dir={broken}",
        f"--frames_dir={os.path.join(broken, 'frames')}", f"--out_dir={tmp_path / 'cli'}",
        f"--sample_length={SAMPLE_LENGTH}", f"--jitter_margin={MARGIN}", f"--width={W}",
        f"--height={H}", "--num_workers=2", timeout=300)
    assert proc.returncode != 0
    assert "sample 01_001: undecodable image" in proc.stdout + proc.stderr
    assert "3 samples SKIPPED" in proc.stdout


def test_missing_video_is_reported(raw, tmp_path):
    import shutil
    videos = str(tmp_path / "videos")
    shutil.copytree(os.path.join(raw[0], "videos"), videos)
    os.remove(os.path.join(videos, "02.mp4"))
    report = mtl_aqa.convert(raw[0], str(tmp_path / "out"), videos_dir=videos, **OPTIONS)
    assert set(report.skipped) == {"02_001", "02_002"}
    assert "02.mp4 does not exist" in report.skipped["02_001"]
    assert report.written == {"train": 3, "test": 0}


def test_converting_again_never_mixes_old_and_new_shards(raw, tmp_path):
    """Issue 24, case 4: a second conversion into a folder that holds records is refused (one
    line, exit 2) unless --overwrite, which replaces the folder only once the new conversion is
    complete; a skipped sample leaves no empty shard. Before, the old shards stayed beside the
    new ones (`[train] 5 samples` after writing 2) and a skipped sample left a 0-byte shard."""
    from tests.helpers import run_cli, user_error
    out = str(tmp_path / "records")
    mtl_aqa.convert(raw[0], out, frames_dir=os.path.join(raw[0], "frames"), **OPTIONS)
    assert len(_read_split(out, "train")) == 3
    broken = _break(raw[0], tmp_path)  # 2 of 3 train samples and 1 of 2 test samples bad
    with pytest.raises(shards_lib.DataError, match="is not empty: give --overwrite"):
        mtl_aqa.convert(broken, out, frames_dir=os.path.join(broken, "frames"), **OPTIONS)
    assert len(_read_split(out, "train")) == 3  # untouched
    flags = [f"--annotations_dir={broken}", f"--frames_dir={os.path.join(broken, 'frames')}",
             f"--out_dir={out}", f"--sample_length={SAMPLE_LENGTH}", f"--jitter_margin={MARGIN}",
             f"--width={W}", f"--height={H}", "--num_shards_train=2", "--num_shards_test=2",
             "--num_workers=1"]
    user_error(run_cli("tfrecords_tools.mtl_aqa", *flags, expect=2), f"--out_dir={out}",
               "is not empty")
    run_cli("tfrecords_tools.mtl_aqa", *flags, "--overwrite", expect=1)  # 1: samples skipped
    assert sorted(_read_split(out, "train")) == ["01_003"]
    assert sorted(_read_split(out, "test")) == ["02_002"]
    names = sorted(os.listdir(out))
    assert [n for n in names if n.endswith(".tfrecord")] == [
        "test-00000-of-00001.tfrecord", "train-00000-of-00001.tfrecord"], names
    assert all(os.path.getsize(os.path.join(out, n)) > 0 for n in names)
    assert not [n for n in os.listdir(tmp_path) if ".partial-" in n]
    # A file where the folder should be: one line.
    user_error(run_cli("tfrecords_tools.mtl_aqa", *flags[:2],
                       f"--out_dir={out}/conversion_report.json", *flags[3:], expect=2),
               "is a file, not a folder")


def test_a_truncated_annotation_pickle_is_one_line(raw, tmp_path):
    """Issue 24, case 7: before, a truncated pickle ended in an UnpicklingError traceback."""
    import shutil
    from tests.helpers import run_cli, user_error
    broken = str(tmp_path / "truncated")
    shutil.copytree(raw[0], broken, ignore=shutil.ignore_patterns("frames", "videos"))
    path = os.path.join(broken, "final_annotations_dict.pkl")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(shards_lib.DataError, match="not a readable pickle"):
        mtl_aqa.load_annotations(broken)
    proc = run_cli("tfrecords_tools.mtl_aqa", f"--annotations_dir={broken}",
                   f"--frames_dir={broken}", f"--out_dir={tmp_path / 'out'}", expect=2)
    user_error(proc, path, "not a readable pickle")
    assert not os.path.exists(tmp_path / "out")
