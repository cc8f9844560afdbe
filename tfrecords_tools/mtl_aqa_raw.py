"""Writes samples in the real MTL-AQA release layout (event videos, frames, pickles).

Used by `synthesize --format=mtl_aqa_raw` and by tests, so that the real-data converter
(`tfrecords_tools.mtl_aqa`) runs end to end on data we can generate:

  videos/<event:02d>.mp4            one "broadcast" per event: its samples one after the other
  frames/<event:02d>/%06d.jpg       the same video as extracted frames (1-based, like ffmpeg)
  final_annotations_dict.pkl        (event, sample_no) -> labels, start_frame, end_frame (1-based)
  final_captions_dict.pkl           (np.int64 event, sample_no) -> ['<sos>', words...]
  train_split_0.pkl, test_split_0.pkl, vocab.json
  final_annotations_dict_with_dive_number.pkl   with `judges=True` only: the same annotations
                                    plus `judge_scores` (7 floats) and `dive_number`, as in the
                                    re-released CoRe file (`mtl_aqa --annotations_file`)
"""

import collections
import os
import pickle
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from aqa_tf.data import captions
from aqa_tf.data.video import write_video

FILLER_FRAMES = 5  # frames of empty scene between two dives of an event video
JUDGES_FILE = "final_annotations_dict_with_dive_number.pkl"


def write_raw_dataset(out_dir: str, samples: Sequence, vocab: captions.Vocabulary, fps: int = 25,
                      write_videos: bool = True, write_frames: bool = True,
                      train_keys: Optional[Sequence[Tuple[int, int]]] = None,
                      judges: bool = False) -> Dict[str, str]:
    """Writes `samples` (objects with `sample_key` "EE_SSS", `frames` uint8 [T, H, W, 3],
    `end_index`, `labels` with the label attributes, `caption_words`; with `judges` also
    `judge_scores` and `dive_number`) in the MTL-AQA layout.

    Returns the written paths by name.
    """
    import cv2
    os.makedirs(out_dir, exist_ok=True)
    by_event = collections.defaultdict(list)
    for sample in samples:
        event, sample_no = (int(p) for p in sample.sample_key.split("_"))
        by_event[event].append((sample_no, sample))
    annotations, caption_dict = {}, {}
    paths = {}
    for event, items in sorted(by_event.items()):
        items.sort(key=lambda item: item[0])
        height, width = items[0][1].frames.shape[1:3]
        filler = np.full((FILLER_FRAMES, height, width, 3), 40, np.uint8)
        pieces, position = [], 0  # position: 0-based index of the next event frame
        for sample_no, sample in items:
            pieces.append(filler)
            position += FILLER_FRAMES
            start = position
            pieces.append(sample.frames)
            position += len(sample.frames)
            spec = sample.labels
            annotations[(event, sample_no)] = {
                "primary_view": 0, "start_frame": start + 1,
                "end_frame": start + sample.end_index + 1,
                "position": spec.position, "difficulty": spec.difficulty,
                "armstand": spec.armstand, "rotation_type": spec.rotation_type,
                "ss_no": spec.ss_no, "tw_no": spec.tw_no, "final_score": spec.final_score}
            # The real captions file keys its events as numpy int64.
            caption_dict[(np.int64(event), sample_no)] = [captions.SOS] + list(sample.caption_words)
        pieces.append(filler)
        video = np.concatenate(pieces)
        if write_videos:
            os.makedirs(os.path.join(out_dir, "videos"), exist_ok=True)
            write_video(os.path.join(out_dir, "videos", f"{event:02d}.mp4"), video, fps)
        if write_frames:
            folder = os.path.join(out_dir, "frames", f"{event:02d}")
            os.makedirs(folder, exist_ok=True)
            for i, frame in enumerate(video):
                cv2.imwrite(os.path.join(folder, f"{i + 1:06d}.jpg"), frame[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
    paths.update(_write_pickles(out_dir, annotations, caption_dict, train_keys, min(by_event),
                                samples if judges else None))
    paths["vocab.json"] = os.path.join(out_dir, "vocab.json")
    vocab.save(paths["vocab.json"])
    if write_videos:
        paths["videos"] = os.path.join(out_dir, "videos")
    if write_frames:
        paths["frames"] = os.path.join(out_dir, "frames")
    return paths


def _write_pickles(out_dir: str, annotations: Dict, caption_dict: Dict,
                   train_keys: Optional[Sequence[Tuple[int, int]]], first_event: int,
                   judged_samples: Optional[Sequence]) -> Dict[str, str]:
    """Writes the annotation, caption and split pickles (and, given `judged_samples`, the
    annotations with their judges as `JUDGES_FILE`); returns their paths by name. Default
    training split: the samples of the first event."""
    keys = sorted(annotations)
    if train_keys is None:
        train_keys = [k for k in keys if k[0] == first_event]
    train_keys = [tuple(int(v) for v in k) for k in train_keys]
    test_keys = [k for k in keys if k not in set(train_keys)]
    files = [("final_annotations_dict.pkl", annotations),
             ("final_captions_dict.pkl", caption_dict),
             ("train_split_0.pkl", train_keys), ("test_split_0.pkl", test_keys)]
    if judged_samples is not None:
        files.append((JUDGES_FILE, _with_judges(annotations, judged_samples)))
    paths = {}
    for name, data in files:
        paths[name] = os.path.join(out_dir, name)
        with open(paths[name], "wb") as f:
            pickle.dump(data, f)
    return paths


def _with_judges(annotations: Dict, samples: Sequence) -> Dict:
    """The annotations plus each sample's `judge_scores` (a float64 array, as the re-released
    files store them) and `dive_number`."""
    by_key = {tuple(int(p) for p in s.sample_key.split("_")): s for s in samples}
    return {key: {**value, "judge_scores": np.array(by_key[key].judge_scores, np.float64),
                  "dive_number": by_key[key].dive_number}
            for key, value in annotations.items()}
