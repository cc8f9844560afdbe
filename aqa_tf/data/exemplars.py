"""Exemplars for contrastive regression (CoRe: Yu et al., ICCV 2021, "Group-aware Contrastive
Regression for Action Quality Assessment"; code: github.com/yuxumin/CoRe).

CoRe scores a video relative to an exemplar of known score: the model predicts the difference
`query - exemplar`, and at test time the query is compared with `voters` exemplars from the
training split whose predictions are averaged. This module holds what does not need Keras:

- `ExemplarIndex`: the training split's keys, scores, difficulties and the value exemplars are
  matched on (`match_values`), read once from the records' context;
- `pair_deltas` and `group_boundaries`: the groups of the regression tree, built from the
  training split's score differences (the authors' `MTLPair.delta` and
  `utils/Group_helper.py`);
- `group_targets` and `relative_from_tree`: a difference's leaf and position inside it, and the
  inverse (`Group_helper.produce_label` / `inference`);
- `choose_voters`: the test-time exemplars of a query, training samples only;
- `read_index`, `num_pairs`: the index of a split's records, and the pairs of one pass of
  `data.pipeline.paired_records`, the tf.data stage that pairs training records.

Matching (`--exemplar_match`): `dive_number` (MTL-AQA's FINA code, FineDiving's
`action_type`: the "with dive type" protocol), `difficulty` (what the authors' MTL-AQA config
uses: `configs/MTL_CoRe.yaml` sets `dive_number_choosing: False, usingDD: True`, so
`MTLPair.py` draws exemplars of the same degree of difficulty), `action` (AQA-7's action, as
`SevenPair.py`) or `any` (every training sample: FineDiving's "without dive type" protocol).
"""

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

MATCHES = ("dive_number", "difficulty", "action", "any")
# The inference inputs of a model that compares with exemplars (`models.heads.core`).
EXEMPLAR_FEATURES = "exemplar_features"
EXEMPLAR_TARGETS = "exemplar_targets"


@dataclasses.dataclass
class ExemplarIndex:
    """The training samples exemplars are drawn from.

    Attributes:
      keys: sample keys, in record order.
      scores: final scores (points).
      difficulties: degrees of difficulty (`-1` where unknown).
      dive_numbers: FINA dive codes (`""` where unknown).
      actions: action ids (0 for single-action datasets).
    """

    keys: List[str]
    scores: np.ndarray
    difficulties: np.ndarray
    dive_numbers: List[str]
    actions: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def targets(self, use_difficulty: bool) -> np.ndarray:
        """What the regression compares: the score, or with `use_difficulty` the execution
        (score / difficulty: the authors' `completeness`)."""
        if not use_difficulty:
            return self.scores.astype(np.float64)
        return self.scores.astype(np.float64) / self.difficulties.astype(np.float64)

    def match_values(self, match: str) -> List[str]:
        """The value each sample is matched on (all equal for `any`)."""
        return [match_value(match, d, f, a) for d, f, a in
                zip(self.dive_numbers, self.difficulties, self.actions)]

    def groups(self, match: str) -> Dict[str, List[int]]:
        """Match value -> indices of the samples that have it (in record order)."""
        groups: Dict[str, List[int]] = {}
        for i, value in enumerate(self.match_values(match)):
            groups.setdefault(value, []).append(i)
        return groups

    def check(self, match: str, use_difficulty: bool):
        """Raises ValueError naming the first sample that cannot be an exemplar: no score, no
        difficulty where it is needed, no dive number where exemplars are matched on it."""
        for i, key in enumerate(self.keys):
            if not self.scores[i] >= 0:
                raise ValueError(f"training sample {key!r} has no final score")
            if (use_difficulty or match == "difficulty") and not self.difficulties[i] > 0:
                needs = ("exemplar_match=difficulty" if match == "difficulty"
                         else "the difficulty protocol")
                raise ValueError(f"training sample {key!r} has no difficulty, which {needs} "
                                 "needs")
            if match == "dive_number" and not self.dive_numbers[i]:
                raise ValueError(f"training sample {key!r} has no dive number "
                                 "(exemplar_match=dive_number)")


def read_index(config, split: str = "train") -> ExemplarIndex:
    """The `ExemplarIndex` of a split's samples (training: without the validation carve-out),
    in key order, from the records' context (no frames decoded)."""
    import tensorflow as tf  # imported where records are read

    from aqa_tf.data import features, pipeline
    names = (features.SAMPLE_KEY, features.FINAL_SCORE, features.DIFFICULTY,
             features.DIVE_NUMBER, features.ACTION_ID)
    spec = {name: features.CONTEXT_SPEC[name] for name in names}

    def context(serialized):
        return tf.io.parse_single_sequence_example(serialized, context_features=spec)[0]

    rows = sorted((r[features.SAMPLE_KEY].decode("utf-8"), r) for r in pipeline._records(
        config, split, training=False).map(context).as_numpy_iterator())
    return ExemplarIndex(
        keys=[k for k, _ in rows],
        scores=np.asarray([r[features.FINAL_SCORE] for _, r in rows], np.float32),
        difficulties=np.asarray([r[features.DIFFICULTY] for _, r in rows], np.float32),
        dive_numbers=[r[features.DIVE_NUMBER].decode("utf-8") for _, r in rows],
        actions=np.asarray([r[features.ACTION_ID] for _, r in rows], np.int64))


def num_pairs(config, match: str) -> int:
    """Pairs in one pass of the paired training stream (`data.pipeline.paired_records`): per
    match value, half its samples rounded up."""
    groups = read_index(config).groups(match)
    return sum((len(members) + 1) // 2 for members in groups.values())


def match_value(match: str, dive_number: str, difficulty: float, action: int) -> str:
    """What a sample is matched on: its dive number (upper case), difficulty (2 decimals),
    action id, or "" (`any`)."""
    if match not in MATCHES:
        raise ValueError(f"exemplar_match={match!r}; expected one of {', '.join(MATCHES)}")
    if match == "dive_number":
        return dive_number.upper()
    if match == "difficulty":
        return f"{float(np.float32(difficulty)):.2f}"
    if match == "action":
        return str(int(action))
    return ""


def pair_deltas(targets: np.ndarray, groups: Dict[str, List[int]]) -> np.ndarray:
    """|a - b| over every unordered pair of samples in the same group (the authors'
    `MTLPair.delta`: the differences the tree's groups are cut from)."""
    out = []
    for members in groups.values():
        values = np.asarray([targets[i] for i in members], np.float64)
        upper = np.triu_indices(len(values), k=1)
        out.append(np.abs(values[:, None] - values[None, :])[upper])
    return np.concatenate(out) if out else np.zeros([0])


def group_boundaries(deltas: Sequence[float], depth: int, score_range: float) -> np.ndarray:
    """The `2 ** (depth - 1)` groups `[left, right]` of the regression tree's leaves, float64
    `[leaves, 2]`, symmetric about 0 (`utils/Group_helper.py`, `Symmetrical=True, Min=0,
    Max=score_range` as `tools/builder.py` builds it).

    The positive half cuts the sorted differences at equal counts: leaf `half + i` spans
    `sorted[int(i / half * (n - 1))]` .. `sorted[int((i + 1) / half * (n - 1))]`, the first
    starting at 0 and the last ending at `score_range`; leaf `i` of the negative half mirrors
    leaf `leaves - 1 - i`.
    """
    if depth < 2:
        raise ValueError(f"tree_depth={depth}: a tree needs depth >= 2 (two leaves)")
    values = sorted(float(d) for d in deltas)
    if not values:
        raise ValueError("no pair of training samples to cut the tree's groups from")
    leaves, n = 2 ** (depth - 1), len(values)
    half = leaves // 2
    groups = [[0.0, 0.0] for _ in range(leaves)]
    for i in range(half):
        left = 0.0 if i == 0 else values[int((i / half) * (n - 1))]
        right = float(score_range) if i == half - 1 else values[int(((i + 1) / half) * (n - 1))]
        groups[half + i] = [left, right]
    for i in range(half):
        groups[i] = sorted(-x for x in groups[leaves - 1 - i])
    return np.asarray(groups, np.float64)


def group_targets(deltas: np.ndarray, boundaries: np.ndarray):
    """(leaf `[n]` int, position `[n, leaves]` float) of differences `deltas` (the authors'
    `produce_label`): a difference >= 0 belongs to leaf `[left, right)`, one < 0 to `(left,
    right]`; the leaf is the first one it belongs to (0 when none: a difference beyond
    `score_range`). Its position is `(delta - left) / (right - left)` in its leaf (`delta - left`
    when the leaf is one point) and -1 in the others."""
    d = np.asarray(deltas, np.float64).reshape(-1, 1)
    left, right = boundaries[None, :, 0], boundaries[None, :, 1]
    inside = np.where(d >= 0, (d >= left) & (d < right), (d > left) & (d <= right))
    width = right - left
    position = np.where(width == 0, d - left, (d - left) / np.where(width == 0, 1.0, width))
    return np.argmax(inside, axis=1), np.where(inside, position, -1.0)


def relative_from_tree(leaf_scores: np.ndarray, deltas: np.ndarray,
                       boundaries: np.ndarray) -> np.ndarray:
    """The difference the tree predicts (the authors' `Group_helper.inference`): in the leaf of
    highest probability, `left + (right - left) * delta` (`left + delta` for a one-point leaf)."""
    leaf = np.argmax(leaf_scores, axis=-1)
    left, right = boundaries[leaf, 0], boundaries[leaf, 1]
    delta = np.take_along_axis(deltas, leaf[..., None], axis=-1)[..., 0]
    return np.where(left == right, left + delta, left + (right - left) * delta)


def choose_voters(index: ExemplarIndex, match: str, value: str, voters: int,
                  rng: np.random.Generator, exclude: Optional[str] = None) -> List[int]:
    """Indices of `voters` training samples whose match value is `value` (the authors shuffle
    the group and take the first `voter_number`), fewer when the group is smaller; all the
    training samples when no sample has that value. `exclude` leaves a key out (a query that is
    itself a training sample)."""
    values = index.match_values(match)
    members = [i for i, v in enumerate(values) if v == value and index.keys[i] != exclude]
    if not members:
        members = [i for i in range(len(index)) if index.keys[i] != exclude]
    order = rng.permutation(len(members))
    return [members[i] for i in order[:voters]]
