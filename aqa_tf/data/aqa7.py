"""The AQA-7 dataset as released: action names and indices, file layout, sample keys.

Parmar & Morris, *Action Quality Assessment Across Multiple Actions*, WACV 2019 (paper 003),
Sec. 3 and 5. Seven actions were collected; the paper's experiments (and the public loaders) use
the first six, indexed 1..6 as below. Trampoline (index 7, ~650 frames of ten "tricks") is
excluded. The release layout:

  <root>/<action>-out/<sample:03d>/img_<frame:05d>.jpg      frames, numbered from 1
  <root>/Split_4/split_4_train_list.mat   variable consolidated_train_list (803 rows)
  <root>/Split_4/split_4_test_list.mat    variable consolidated_test_list  (303 rows)

Each split row is [action index 1..6, sample number, final score] (MATLAB doubles).

Both the converter (`tfrecords_tools.aqa7`) and the library (synthetic data, a future
per-action score normalisation) import this module; it imports nothing from either.
"""

import json
import os
from typing import Dict, List

from aqa_tf import tasks

# Index i + 1 names ACTIONS[i] (the order of the split files' first column).
ACTIONS = tasks.AQA7_ACTIONS

SPLIT_DIR = "Split_4"
# split -> (file under SPLIT_DIR, MATLAB variable holding the [N, 3] matrix).
SPLIT_FILES = {"train": ("split_4_train_list.mat", "consolidated_train_list"),
               "test": ("split_4_test_list.mat", "consolidated_test_list")}
FRAME_PATTERN = "img_{frame:05d}.jpg"

# Written beside the shards by the converter: per-action counts and training score statistics.
ACTIONS_FILE = "aqa7_actions.json"


def action_index(name: str) -> int:
    """1-based index of an action name; raises ValueError listing the known names."""
    if name not in ACTIONS:
        raise ValueError(f"unknown AQA-7 action {name!r}; known: {', '.join(ACTIONS)}")
    return ACTIONS.index(name) + 1


def action_name(index: int) -> str:
    """Name of a 1-based action index; raises ValueError outside 1..6."""
    if not 1 <= int(index) <= len(ACTIONS):
        raise ValueError(f"AQA-7 action index {index} outside 1..{len(ACTIONS)}")
    return ACTIONS[int(index) - 1]


def sample_key(action: str, sample_number: int) -> str:
    """Record key of a sample, e.g. ("gym_vault", 17) -> "gym_vault_017"."""
    return f"{action}_{int(sample_number):03d}"


def sample_dir(root: str, action: str, sample_number: int) -> str:
    """Folder of one sample's frames: `<root>/<action>-out/<sample:03d>`."""
    return os.path.join(root, f"{action}-out", f"{int(sample_number):03d}")


def split_path(root: str, split: str) -> str:
    return os.path.join(root, SPLIT_DIR, SPLIT_FILES[split][0])


def load_action_stats(data_dir: str) -> List[Dict[str, object]]:
    """The per-action summary the converter wrote beside the shards (`ACTIONS_FILE`): one dict
    per action with `name`, `index`, `num_train`, `num_test`, `train_score_mean`,
    `train_score_std`."""
    path = os.path.join(data_dir, ACTIONS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing (written by tfrecords_tools.aqa7)")
    with open(path) as f:
        return json.load(f)["actions"]
