"""The bad-input table (issue 24): for each command line, the mistakes a user makes, each run
as the user runs it (`python -m ...` in a subprocess): exit status 2, one line `error: ...`
naming the file or option and the problem, no traceback, and nothing that was already there
lost. docs/errors.md lists the same cases in words.

`aqa_tf.predict`'s table needs an export and videos: predict_test.py
(`test_bad_inputs_give_one_clear_line`, a table of cases checked the same way); the run-folder
lock: run_folder_test.py; a truncated shard: train_resume_test.py.
"""

import os

import pytest

from tests.helpers import run_module, user_error

QUICKSTART = "--flagfile=configs/quickstart.cfg"


@pytest.fixture
def place(tmp_path):
    """A folder of bad inputs: `file` (a text file), `full/` (a folder holding `old.txt`,
    which must survive), `bad.weights.h5` (not HDF5), `annotations/` (a truncated
    final_annotations_dict.pkl), `split/` (a truncated AQA-7 .mat split file)."""
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("keep me\n")
    (tmp_path / "bad.weights.h5").write_text("not HDF5\n")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "final_annotations_dict.pkl").write_bytes(b"\x80\x04\x95\x10")
    split = tmp_path / "aqa7" / "Split_4"
    split.mkdir(parents=True)
    (split / "split_4_train_list.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    (split / "split_4_test_list.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    return tmp_path


def _check(place, module, args, names):
    """Runs `module args` ({p}: the `place` folder) and checks the one-line refusal, which
    names each of `names`; `full/old.txt` is still there."""
    args = [a.format(p=place) for a in args]
    proc = run_module(module, *args)
    line = user_error(proc, *[n.format(p=place) for n in names])
    print(line)
    assert (place / "full" / "old.txt").read_text() == "keep me\n"
    return line


@pytest.mark.parametrize("args, names", [
    # A value outside an option's choices: absl refuses it while parsing.
    (["--backbone=c4d"], ["--backbone=c4d", "c3d"]),
    (["--frames_per_second=25"], ["Unknown command line flag 'frames_per_second'"]),
    (["--flagfile={p}/missing.cfg"], ["{p}/missing.cfg"]),
    # An inconsistent configuration: our validation.
    (["--model_dir={p}/run", "--num_frames=8", "--clip_length=16", "--sample_length=8"],
     ["num_frames=8 < clip_length=16"]),
    # A dataset that is not there (and may not be synthesized).
    ([QUICKSTART, "--model_dir={p}/run", "--data_dir={p}/nothing", "--nosynthesize_if_missing"],
     ["{p}/nothing"]),
    # A --model_dir that is a file, an --export_dir under one (before: a traceback at the
    # end of training), a non-empty --data_dir that is no dataset.
    ([QUICKSTART, "--model_dir={p}/file", "--data_dir={p}/full"], ["--model_dir={p}/file"]),
    ([QUICKSTART, "--model_dir={p}/run", "--export_dir={p}/file/exports"],
     ["--export_dir={p}/file/exports: cannot write there (Not a directory)"]),
    ([QUICKSTART, "--model_dir={p}/run", "--data_dir={p}/full"], ["{p}/full"]),
], ids=["choice", "unknown-flag", "missing-flagfile", "inconsistent", "no-dataset",
        "model-dir-is-a-file", "export-dir-under-a-file", "not-a-dataset"])
def test_train(place, args, names):
    _check(place, "aqa_tf.train", args, names)


def test_train_refuses_a_model_option_before_writing_anything(place):
    """A mistake in the model's options, here with the quickstart, whose dataset is generated
    where it is missing: refused before the run folder or the dataset is made (before, the
    dataset was generated and the run folder created, then the model config refused)."""
    _check(place, "aqa_tf.train", [QUICKSTART, "--model_dir={p}/run", "--data_dir={p}/data",
                                   "--backbone_bn_momentum=1.5"],
           ["backbone_bn_momentum=1.5", "[0, 1)"])
    assert not (place / "run").exists() and not (place / "data").exists()


@pytest.mark.parametrize("args, names", [
    ([], ["--checkpoint is required"]),
    (["--split=foo", "--checkpoint=x"], ["--split=foo", "test|val"]),
    (["--data_dir={p}", "--checkpoint={p}/x.h5"], ["checkpoint {p}/x.h5 does not exist"]),
    ([QUICKSTART, "--data_dir={p}/nothing", "--checkpoint={p}/bad.weights.h5"],
     ["{p}/bad.weights.h5"]),
], ids=["no-checkpoint", "bad-split", "missing-checkpoint", "corrupt-checkpoint"])
def test_evaluate(place, args, names):
    _check(place, "aqa_tf.evaluate", args, names)


@pytest.mark.parametrize("args, names", [
    (["--checkpoint=x", "--quantize=foo"], ["--quantize=foo", "int8"]),
    ([QUICKSTART, "--checkpoint={p}/missing.weights.h5", "--export_dir={p}/out"],
     ["{p}/missing.weights.h5"]),
    ([QUICKSTART, "--checkpoint={p}/bad.weights.h5", "--export_dir={p}/out"],
     ["{p}/bad.weights.h5"]),
    ([QUICKSTART, "--checkpoint=any.weights.h5", "--export_dir={p}/file/exports"],
     ["--export_dir={p}/file/exports: cannot write there (Not a directory)"]),
], ids=["bad-quantize", "missing-checkpoint", "corrupt-checkpoint", "export-dir-under-a-file"])
def test_export(place, args, names):
    _check(place, "aqa_tf.export", args, names)


@pytest.mark.parametrize("module, args, names", [
    ("aqa_tf.benchmark", ["--format=tflite", "--quantize=foo"], ["--quantize=foo", "int8"]),
    ("aqa_tf.serving_client", ["{p}/file", "--server=localhost"],
     ["--server=localhost: expected HOST:PORT"]),
    ("aqa_tf.serving_client", ["{p}/missing.mp4", "--server=localhost:1"],
     ["{p}/missing.mp4", "no such file"]),
    ("aqa_tf.protocols", ["--protocol=all_actions"], ["--protocol=all_actions"]),
    ("aqa_tf.weights.convert", ["--source=c3d", "--checkpoint={p}/missing.pth",
                                "--out={p}/out.weights.h5"], ["{p}/missing.pth"]),
    ("aqa_tf.demo", ["--model={p}/missing"], ["--model={p}/missing: no such file"]),
    ("aqa_tf.demo", [], ["give --model (an export) or --server / --rest"]),
    ("aqa_tf.demo", ["--model={p}/file", "--port=70000"], ["port=70000: expected 0-65535"]),
], ids=["benchmark-quantize", "client-address", "client-missing-video", "protocol-name",
        "convert-missing", "demo-missing-model", "demo-no-model", "demo-port"])
def test_other_entries(place, module, args, names):
    _check(place, module, args, names)


@pytest.mark.parametrize("module, args, names", [
    # A non-empty --out_dir without --overwrite: refused, its files kept (before: the old
    # shards stayed beside the new ones and were read with them).
    ("tfrecords_tools.synthesize", ["--out_dir={p}/full", "--num_train=2", "--num_test=2"],
     ["{p}/full", "--overwrite"]),
    ("tfrecords_tools.synthesize", ["--out_dir={p}/file", "--num_train=2", "--num_test=2"],
     ["{p}/file"]),
    ("tfrecords_tools.mtl_aqa", ["--annotations_dir={p}/annotations", "--out_dir={p}/full",
                                 "--videos_dir={p}"], ["{p}/full", "--overwrite"]),
    # A truncated annotation pickle, a truncated AQA-7 split file.
    ("tfrecords_tools.mtl_aqa", ["--annotations_dir={p}/annotations", "--out_dir={p}/out",
                                 "--videos_dir={p}"],
     ["{p}/annotations/final_annotations_dict.pkl"]),
    ("tfrecords_tools.aqa7", ["--root={p}/aqa7", "--out_dir={p}/out"], ["{p}/aqa7/Split_4"]),
    ("tfrecords_tools.inspect", ["{p}/missing"], ["{p}/missing"]),
    # JIGSAWS: a missing splits file, an unknown task (checked before the splits file).
    ("tfrecords_tools.jigsaws", ["--root={p}", "--splits={p}/missing.pkl", "--out_dir={p}/out"],
     ["--splits={p}/missing.pkl", "no such file"]),
    ("tfrecords_tools.jigsaws", ["--root={p}", "--splits={p}/file", "--tasks=Suturing,Sewing",
                                 "--out_dir={p}/out"], ["--tasks", "'Sewing'", "Knot_Tying"]),
], ids=["synthesize-full", "synthesize-file", "mtl-aqa-full", "mtl-aqa-pickle", "aqa7-mat",
        "inspect-missing", "jigsaws-no-splits", "jigsaws-task"])
def test_converters(place, module, args, names):
    _check(place, module, args, names)
    assert not os.path.exists(place / "out")
