"""Test-wide settings: quiet TensorFlow logs, run from the repository root, and where the real
MTL-AQA annotation files, the JIGSAWS label and split files and the FineDiving annotation files
are."""

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# As aqa_tf/__init__.py does, for tests that import TensorFlow before the package.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# Under pytest-xdist (pytest.ini: two workers) every worker, and every command line a test
# starts, would size TensorFlow's intra-op thread pool for the whole machine, and the workers'
# pools would compete for the same cores: each gets its share instead. Measured on a 2-core AMD
# EPYC Zen 3, two 3-epoch quickstart trainings side by side: 140-146 s with the default pools,
# 119-123 s with one intra-op thread each. (Set before TensorFlow is imported; a value the
# user set is kept.)
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _XDIST_WORKERS > 1:
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS",
                          str(max(1, (os.cpu_count() or 1) // _XDIST_WORKERS)))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# The longest modules run first, the longest first of all: pytest-xdist (`--dist loadfile
# --no-loadscope-reorder`, pytest.ini) hands out modules in collection order, so the
# trained-quickstart fixture of train_test.py (about 9 of the suite's 20 minutes on the 2-core
# machines) runs beside the rest of the suite instead of ending last, alone, and the short
# modules fill the end. (xdist's own reordering, by number of tests, started it 7 minutes in.)
FIRST_MODULES = ("tests/train_test.py", "tests/protocols_test.py",
                 "tests/models/tsa_rendered_learning_test.py", "tests/train_resume_test.py",
                 "tests/multi_worker_test.py", "tests/serving_load_test.py",
                 "tests/tflite_test.py", "tests/predict_test.py", "tests/configs_test.py",
                 "tests/weights/convert_test.py", "tests/demo_test.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        path = os.path.relpath(str(item.fspath), REPO_ROOT)
        return FIRST_MODULES.index(path) if path in FIRST_MODULES else len(FIRST_MODULES)
    items.sort(key=rank)  # stable: the other modules keep their order

# The real MTL-AQA annotation files (final_annotations_dict.pkl, final_captions_dict.pkl,
# train/test_split_0.pkl, vocab.json). Default: the layout of this project's machines, where the
# repository sits beside `shared/`.
MTL_AQA_ANNOTATIONS_ENV = "MTL_AQA_ANNOTATIONS"
DEFAULT_MTL_AQA_ANNOTATIONS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "datasets",
                                           "mtl_aqa")


def _real_files(path: str, required, message: str) -> str:
    """`path` when it holds every file of `required`; otherwise skips the test (outside CI) or
    fails it (`CI=true`, so that CI never passes without running it), with `message`."""
    import pytest
    if all(os.path.exists(os.path.join(path, name)) for name in required):
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " [CI=true: this test must run in CI]")
    pytest.skip(message)


def mtl_aqa_annotations() -> str:
    """The folder of the real MTL-AQA annotation files.

    Outside CI a test that needs them is skipped when they are absent, saying how to point at
    them; under CI (`CI=true`) it fails instead, so that CI never passes without running it.
    """
    path = os.environ.get(MTL_AQA_ANNOTATIONS_ENV, DEFAULT_MTL_AQA_ANNOTATIONS)
    return _real_files(path, ["final_annotations_dict.pkl"], (
        f"the real MTL-AQA annotation files are not in {path}: set "
        f"{MTL_AQA_ANNOTATIONS_ENV}=/path/to/MTL-AQA_split_0_data (the folder holding "
        "final_annotations_dict.pkl, final_captions_dict.pkl, train_split_0.pkl, "
        "test_split_0.pkl and vocab.json)"))


# The re-released MTL-AQA annotation dicts with judges' scores (and dive numbers): MUSDL's
# augmented_final_annotations_dict.pkl and CoRe's final_annotations_dict_with_dive_number.pkl.
MTL_AQA_JUDGES_ENV = "MTL_AQA_JUDGES"
DEFAULT_MTL_AQA_JUDGES = os.path.join(os.path.dirname(REPO_ROOT), "shared", "datasets",
                                      "mtl_aqa_judges")
MUSDL_ANNOTATIONS = "augmented_final_annotations_dict.pkl"
CORE_ANNOTATIONS = "final_annotations_dict_with_dive_number.pkl"


def mtl_aqa_judges() -> str:
    """The folder of the re-released annotation dicts with judges' scores (skip/fail rule of
    `mtl_aqa_annotations`; both files are required)."""
    path = os.environ.get(MTL_AQA_JUDGES_ENV, DEFAULT_MTL_AQA_JUDGES)
    return _real_files(path, [MUSDL_ANNOTATIONS, CORE_ANNOTATIONS], (
        f"the re-released MTL-AQA annotation files with judges' scores are not in {path}: set "
        f"{MTL_AQA_JUDGES_ENV}=/path/to/folder holding {MUSDL_ANNOTATIONS} (MUSDL, "
        f"nzl-thu/MUSDL MTL-AQA/data/info) and {CORE_ANNOTATIONS} (CoRe, yuxumin/CoRe "
        "MTL-AQA/info)"))


# The JIGSAWS preparation of the USDL/MUSDL authors (label.pkl, splits.pkl; nzl-thu/MUSDL
# JIGSAWS/data/info), which ../shared/datasets/jigsaws holds on this project's machines.
JIGSAWS_INFO_ENV = "JIGSAWS_INFO"
DEFAULT_JIGSAWS_INFO = os.path.join(os.path.dirname(REPO_ROOT), "shared", "datasets", "jigsaws")


def jigsaws_info() -> str:
    """The folder of the authors' JIGSAWS label.pkl and splits.pkl (skip/fail rule of
    `mtl_aqa_annotations`; both files are required)."""
    path = os.environ.get(JIGSAWS_INFO_ENV, DEFAULT_JIGSAWS_INFO)
    return _real_files(path, ["label.pkl", "splits.pkl"], (
        f"the JIGSAWS label.pkl and splits.pkl of the USDL/MUSDL authors are not in {path}: set "
        f"{JIGSAWS_INFO_ENV}=/path/to/folder holding both (nzl-thu/MUSDL JIGSAWS/data/info)"))


# The FineDiving annotation pickles (xujinglin/FineDiving, Annotations/), which
# ../shared/datasets/finediving holds on this project's machines.
FINEDIVING_ANNOTATIONS_ENV = "FINEDIVING_ANNOTATIONS"
DEFAULT_FINEDIVING_ANNOTATIONS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "datasets",
                                              "finediving")
FINEDIVING_FILES = ("FineDiving_coarse_annotation.pkl", "FineDiving_fine-grained_annotation.pkl",
                    "Sub_action_Types_Table.pkl", "train_split.pkl", "test_split.pkl")


def finediving_annotations() -> str:
    """The folder of the real FineDiving annotation files (skip/fail rule of
    `mtl_aqa_annotations`; the five files the converter reads are required)."""
    path = os.environ.get(FINEDIVING_ANNOTATIONS_ENV, DEFAULT_FINEDIVING_ANNOTATIONS)
    return _real_files(path, FINEDIVING_FILES, (
        f"the FineDiving annotation files are not in {path}: set "
        f"{FINEDIVING_ANNOTATIONS_ENV}=/path/to/Annotations (the folder holding "
        + ", ".join(FINEDIVING_FILES) + "; xujinglin/FineDiving Annotations/)"))


def synthetic_records(folder, num_workers: int = 0, **fields) -> str:
    """Writes the synthetic dataset `SyntheticDataConfig(**fields)` into `folder`; returns it."""
    from aqa_tf.data import synthetic
    synthetic.write_tfrecords(str(folder), synthetic.SyntheticDataConfig(**fields),
                              num_workers=num_workers)
    return str(folder)


def truncated_copy(records_dir: str, destination: str, shard: str, keep: float) -> str:
    """A copy of `records_dir` whose file `shard` keeps only its first `keep` fraction."""
    import shutil
    shutil.copytree(records_dir, destination)
    path = os.path.join(destination, shard)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    return destination


def aqa7_records(folder, num_train_per_action: int, num_test_per_action: int,
                 num_frames: int = 24, height: int = 48, width: int = 64, seed: int = 0,
                 stored_height: int = 40, stored_width: int = 54) -> str:
    """A synthetic AQA-7 release (`synthetic.write_aqa7_tree`) converted to records by
    `tfrecords_tools.aqa7` into `<folder>/records`; returns that folder."""
    from aqa_tf.data import synthetic
    from tfrecords_tools import aqa7
    root = os.path.join(str(folder), "raw")
    synthetic.write_aqa7_tree(root, num_train_per_action, num_test_per_action,
                              num_frames=num_frames, height=height, width=width, seed=seed)
    out = os.path.join(str(folder), "records")
    aqa7.convert(root, out, width=stored_width, height=stored_height, num_shards_train=2,
                 num_shards_test=1, num_workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    """The quickstart's synthetic dataset (240 training, 100 test dives of 54 frames at 64x86),
    generated once per test module that asks for it."""
    return synthetic_records(tmp_path_factory.mktemp("synthetic"), num_train=240, num_test=100,
                             num_frames=54, height=64, width=86, seed=0)
