"""Caption metrics with pycocoevalcap, the implementation captioning papers report: BLEU-1..4,
METEOR, ROUGE-L and CIDEr (paper 001, Table 5).

Captions are compared as space-joined vocabulary words (our captions are already tokenised,
lower-case vocabulary words, so the COCO PTB tokenizer is not applied). METEOR runs the Java
METEOR 1.5 jar shipped with pycocoevalcap: without a `java` executable it is reported as
unavailable, with the reason, and the other metrics are still computed.
"""

import csv
import shutil
from typing import Dict, Iterable, List, Sequence

_METEOR = []


def _meteor():
    """One METEOR scorer per process: its Java process takes ~10 s to load the paraphrase
    tables, so it is started once and reused by every evaluation."""
    if not _METEOR:
        from pycocoevalcap.meteor.meteor import Meteor
        _METEOR.append(Meteor())
    return _METEOR[0]


METRIC_NAMES = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")


def caption_scores(references: Dict[str, List[str]], generated: Dict[str, str]) -> Dict:
    """Scores generated captions against references.

    Args:
      references: sample key -> reference captions (strings of words; MTL-AQA has one each).
      generated: sample key -> generated caption. Only keys present in both are scored.

    Returns:
      `{"caption/bleu_1": ..., ..., "caption/cider": ..., "caption/num_scored": n}`; METEOR
      unavailable gives `"caption/meteor": None` and `"caption/meteor_unavailable": reason`.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    keys = sorted(k for k in generated if references.get(k))
    out = {"caption/num_scored": len(keys)}
    if not keys:
        return out
    gts = {k: [r if r else "<eos>" for r in references[k]] for k in keys}
    # An empty generation is scored as a single end token (pycocoevalcap needs a word).
    res = {k: [generated[k] or "<eos>"] for k in keys}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        out[f"caption/bleu_{n + 1}"] = float(bleu[n])
    out["caption/rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    out["caption/cider"] = float(Cider().compute_score(gts, res)[0])
    if shutil.which("java") is None:
        out["caption/meteor"] = None
        out["caption/meteor_unavailable"] = "no java executable on PATH (METEOR 1.5 is a jar)"
    else:
        try:
            out["caption/meteor"] = float(_meteor().compute_score(gts, res)[0])
        except Exception as error:  # a broken Java install: report, keep the others
            out["caption/meteor"] = None
            out["caption/meteor_unavailable"] = f"METEOR failed: {error}"
    return out


def write_captions(path: str, keys: Sequence[str], references: Dict[str, List[str]],
                   generated: Dict[str, str]):
    """CSV of `sample_key, reference, generated` (one row per sample, for reading)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sample_key", "reference", "generated"])
        for key in keys:
            writer.writerow([key, " | ".join(references.get(key, [])), generated.get(key, "")])


def decode_captions(ids: Iterable[Iterable[int]], vocab) -> List[str]:
    """Token id rows (`<sos>` optional, padding -1 or after `<eos>`) -> strings of words."""
    out = []
    for row in ids:
        words = vocab.decode([i for i in row if i >= 0])
        out.append(" ".join(words))
    return out
