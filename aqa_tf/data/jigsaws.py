"""The JIGSAWS dataset as released: tasks and their indices, file layout, GRS labels, folds.

JIGSAWS (JHU-ISI Gesture and Skill Assessment Working Set) holds three surgical tasks on a
da Vinci robot. Each trial is rated with the Global Rating Score (GRS): six elements, each
1..5, whose sum (6..30) is the total. The release layout:

  <root>/<Task>/video/<Task>_<trial>_capture1.avi     left camera (capture2: right, unused)
  <root>/<Task>/meta_file_<Task>.txt                  per trial, separated by whitespace:
      trial name (e.g. Suturing_B001), self-reported skill N/I/E, total GRS, the 6 elements

AQA papers (USDL/MUSDL, nzl-thu/MUSDL `JIGSAWS/`) use the capture1 videos and a 4-fold
cross-validation per task published with their code as `splits.pkl` (task -> 4 lists of trial
names; fold k is the test set of run k, the other three its training set) and `label.pkl`
(trial name -> the 6 GRS elements). Their loader samples 160 frames uniformly over the whole
video (`aqa_tf.data.video.uniform_positions`) and cuts them into 10 clips of 16.

The converter (`tfrecords_tools.jigsaws`) and the synthetic release (`aqa_tf.data.synthetic.
write_jigsaws_tree`) both import this module; it imports neither.
"""

import os
from typing import Sequence

# Task -> action_id of its records (the one table of task indices).
TASK_IDS = {"Suturing": 1, "Needle_Passing": 2, "Knot_Tying": 3}
TASKS = tuple(TASK_IDS)

NUM_FOLDS = 4
SKILL_LEVELS = ("N", "I", "E")  # novice, intermediate, expert (self-reported)
# The GRS elements, in the order of the meta files and of label.pkl.
GRS_ELEMENTS = ("respect for tissue", "suture/needle handling", "time and motion",
                "flow of operation", "overall performance", "quality of final product")
GRS_ELEMENT_RANGE = (1, 5)
TOTAL_GRS_RANGE = (len(GRS_ELEMENTS) * GRS_ELEMENT_RANGE[0],
                   len(GRS_ELEMENTS) * GRS_ELEMENT_RANGE[1])
# The authors' frames per video (opts.py); the converter's --num_frames default.
NUM_FRAMES = 160
CAPTURE = 1  # the left camera, as the authors

# Written beside the task folders by the converter.
FOLDS_FILE = "jigsaws_folds.json"


def task_id(task: str) -> int:
    """action_id of a task; raises ValueError listing the known tasks."""
    if task not in TASK_IDS:
        raise ValueError(f"unknown JIGSAWS task {task!r}; known: {', '.join(TASKS)}")
    return TASK_IDS[task]


def fold_split(fold: int) -> str:
    """Shard prefix of fold k (0-based): `fold0` .. `fold3`."""
    return f"fold{int(fold)}"


def task_dir(out_dir: str, task: str) -> str:
    """Folder of a task's records (a `--data_dir` for training)."""
    return os.path.join(out_dir, task)


def video_path(root: str, task: str, trial: str, capture: int = CAPTURE) -> str:
    """`<root>/<Task>/video/<trial>_capture<k>.avi`, `trial` the full name (Suturing_B001)."""
    return os.path.join(root, task, "video", f"{trial}_capture{int(capture)}.avi")


def meta_path(root: str, task: str) -> str:
    return os.path.join(root, task, f"meta_file_{task}.txt")


def grs_problem(elements: Sequence[object]) -> str:
    """Why `elements` are not 6 whole GRS element scores 1..5 ('' when they are)."""
    low, high = GRS_ELEMENT_RANGE
    values = list(elements)
    if len(values) != len(GRS_ELEMENTS):
        return f"{len(values)} GRS elements, expected {len(GRS_ELEMENTS)}"
    for value in values:
        try:
            whole = float(value).is_integer()
        except (TypeError, ValueError):
            whole = False
        if isinstance(value, bool) or not whole or not low <= float(value) <= high:
            return f"GRS elements {values}: {value!r} is not a whole number {low}..{high}"
    return ""


def meta_line(trial: str, skill: str, elements: Sequence[int], separator: str = "\t") -> str:
    """One line of a meta file (without the newline): trial, skill, total GRS, elements."""
    fields = [trial, skill, str(sum(int(e) for e in elements))] + [str(int(e)) for e in elements]
    return separator.join(fields)
