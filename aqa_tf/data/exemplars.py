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
- `paired_records`: the tf.data stage that pairs training records of the same match value.

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
        if match not in MATCHES:
            raise ValueError(f"exemplar_match={match!r}; expected one of {', '.join(MATCHES)}")
        if match == "dive_number":
            return [d.upper() for d in self.dive_numbers]
        if match == "difficulty":
            return [f"{d:.2f}" for d in self.difficulties]
        if match == "action":
            return [str(int(a)) for a in self.actions]
        return [""] * len(self.keys)

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


def match_value_tensor(record, match: str):
    """The match value of a parsed record (`features.parse_sequence_example`) as a tf string,
    in `ExemplarIndex.match_values`' form."""
    import tensorflow as tf
    from aqa_tf.data import features
    if match == "dive_number":
        return tf.strings.upper(record[features.DIVE_NUMBER])
    if match == "difficulty":
        return tf.strings.as_string(record[features.DIFFICULTY], precision=2)
    if match == "action":
        return tf.strings.as_string(record[features.ACTION_ID])
    return tf.constant("")


def paired_records(serialized, match: str, seed: int):
    """Pairs a stream of serialized training records: consecutive records of the same match
    value (a `group_by_window` of two per value) become one element `[2]` (query, exemplar).

    Every record is in one pair per pass, so a pass gives about `n / 2` pairs, each trained in
    both directions (the authors' training step also regresses both ways). The stream should be
    shuffled with a buffer that holds the split, so that partners are drawn uniformly within
    the value, as the authors' `random.randint` does. A record left alone at the end of the
    pass (an odd count of its value) is paired with itself. `seed` salts the window keys."""
    import tensorflow as tf
    from aqa_tf.data import features

    spec = {features.DIVE_NUMBER: features.CONTEXT_SPEC[features.DIVE_NUMBER],
            features.DIFFICULTY: features.CONTEXT_SPEC[features.DIFFICULTY],
            features.ACTION_ID: features.CONTEXT_SPEC[features.ACTION_ID]}

    def key(record):
        context, _ = tf.io.parse_single_sequence_example(record, context_features=spec)
        value = match_value_tensor(context, match)
        return tf.strings.to_hash_bucket_fast(tf.strings.join([str(seed), ":", value]),
                                              2 ** 62)

    def pair(window):
        return window.batch(2)

    pairs = serialized.group_by_window(key, lambda _, window: pair(window), window_size=2)
    return pairs.map(lambda two: tf.stack([two[0], two[-1]]))
