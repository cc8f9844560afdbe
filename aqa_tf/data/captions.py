"""Caption vocabulary and tokenisation, shared by real-data conversion and synthetic data.

The vocabulary file is the MTL-AQA `vocab.json` format:
`{"ix_to_word": {"0": "<eos>", "1": "<sos>", ...}, "word_to_ix": {"<eos>": 0, ...}}`.
Token ids in records are `<sos> w1 ... wn <eos>`, uncut; `cut_caption` applies the maximum
caption length (100 words in the MTL-AQA reference) at training time.
"""

import json
from typing import Dict, Iterable, List, Sequence

from aqa_tf.tasks import EOS, EOS_ID, SOS, SOS_ID  # noqa: F401 (part of this module's API)


class Vocabulary:
    """Word <-> id mapping read from (or written to) a `vocab.json` file."""

    def __init__(self, ix_to_word: Dict[int, str]):
        self.ix_to_word = {int(k): str(v) for k, v in ix_to_word.items()}
        self.word_to_ix = {w: i for i, w in self.ix_to_word.items()}
        if self.ix_to_word.get(EOS_ID) != EOS or self.ix_to_word.get(SOS_ID) != SOS:
            raise ValueError(f"vocabulary must map {EOS_ID} -> {EOS} and {SOS_ID} -> {SOS}, got "
                             f"{self.ix_to_word.get(EOS_ID)!r}, {self.ix_to_word.get(SOS_ID)!r}")
        if len(self.word_to_ix) != len(self.ix_to_word):
            raise ValueError("vocabulary maps two ids to the same word")

    @classmethod
    def from_words(cls, words: Iterable[str]) -> "Vocabulary":
        """Builds a vocabulary `<eos>, <sos>, words...` (order kept, duplicates dropped)."""
        ordered = [EOS, SOS]
        for w in words:
            if w not in ordered:
                ordered.append(w)
        return cls(dict(enumerate(ordered)))

    def beyond(self, size: int) -> Dict[int, str]:
        """The words with ids `>= size`: those a caption head of `size` words never produces."""
        return {i: w for i, w in sorted(self.ix_to_word.items()) if i >= size}

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
        if "ix_to_word" not in data:
            raise ValueError(f"{path}: not a vocab.json file (no 'ix_to_word' key)")
        return cls(data["ix_to_word"])

    def save(self, path: str):
        data = {"ix_to_word": {str(i): w for i, w in sorted(self.ix_to_word.items())},
                "word_to_ix": {w: i for i, w in sorted(self.ix_to_word.items())}}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)

    def __len__(self):
        return len(self.ix_to_word)

    def encode(self, words: Sequence[str], where: str = "caption") -> List[int]:
        """Maps words to `<sos> ... <eos>` ids. A leading `<sos>` in `words` is kept, not doubled.

        Raises:
          ValueError: naming `where` and the word, if a word is not in the vocabulary.
        """
        words = list(words)
        if words and words[0] == SOS:
            words = words[1:]
        if words and words[-1] == EOS:
            words = words[:-1]
        ids = [SOS_ID]
        for w in words:
            if w not in self.word_to_ix:
                raise ValueError(f"{where}: word {w!r} is not in the vocabulary")
            ids.append(self.word_to_ix[w])
        ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int], strip_special: bool = True) -> List[str]:
        """Maps ids back to words, stopping at the first `<eos>`."""
        words = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i == SOS_ID and strip_special:
                continue
            words.append(self.ix_to_word[i])
        return words


def cut_caption(ids: Sequence[int], max_words: int = 100) -> List[int]:
    """Cuts `<sos> w1 ... wn <eos>` to at most `max_words` words, still ending with `<eos>`.

    As in the MTL-AQA reference, captions longer than the maximum are truncated and the last
    kept position becomes `<eos>`.
    """
    ids = list(ids)
    if not ids:
        return ids
    body = ids[1:] if ids[0] == SOS_ID else ids
    words = [i for i in body if i != EOS_ID]
    return [SOS_ID] + words[:max_words] + [EOS_ID]
