"""The names an export and its clients agree on: signatures, their inputs and outputs, and the
metadata file (`aqa_tf.serving.export_lib` writes them; `aqa_tf.serving.client` and
`aqa_tf.serving.predict_lib` read them).

This module imports nothing, so that a client of a model server can read it without TensorFlow
or Keras.
"""

# Where SavedModel consumers (TF Serving) expect files that are not part of the graph, and the
# export's metadata file in it: what a client needs to prepare a video.
ASSETS_EXTRA = "assets.extra"
METADATA_FILE = "aqa_tf.json"
# Keys of the metadata file that a client reads to prepare a video.
REQUIRED_METADATA = ("stored_height", "stored_width", "window_length")

# Metadata key of the (min, max) score of the training split, where the export knows it.
TRAINING_SCORE_RANGE = "training_score_range"

# The signatures of every export, and those of a model with a caption head.
SCORE_SIGNATURE = "serving_default"      # input `video`: uint8 [batch, frames, H, W, 3]
SCORE_JPEG_SIGNATURE = "serving_jpeg"    # input `frames`: string [batch, frames] of JPEGs
METADATA_SIGNATURE = "metadata"
CAPTION_SIGNATURE = "caption"
CAPTION_JPEG_SIGNATURE = "caption_jpeg"
SIGNATURES = (SCORE_SIGNATURE, SCORE_JPEG_SIGNATURE, METADATA_SIGNATURE)
CAPTION_SIGNATURES = (CAPTION_SIGNATURE, CAPTION_JPEG_SIGNATURE)

# The `metadata` signature's input (ignored; its length is the number of copies returned) and
# output (each element the text of the metadata file).
METADATA_INPUT = "batch"
METADATA_OUTPUT = "json"

# Metadata key of the heads' extra signatures: signature name -> the label a person reads its
# text output under (e.g. {"caption": "commentary"}). `<name>` takes uint8 video and
# `<name>_jpeg` JPEG frames. Exports made before the key existed have the caption head's.
HEAD_SIGNATURES = "head_signatures"
JPEG_SUFFIX = "_jpeg"
LEGACY_HEAD_SIGNATURES = {CAPTION_SIGNATURE: "commentary"}


def head_signatures(meta: dict) -> dict:
    """Signature name -> label of the heads' extra signatures an export's metadata lists."""
    if HEAD_SIGNATURES in meta:
        return dict(meta[HEAD_SIGNATURES])
    return {name: label for name, label in LEGACY_HEAD_SIGNATURES.items()
            if name in meta.get("signatures", ())}


def exemplar_row(bank_meta: dict, match: str, dive_number=None, difficulty=None) -> int:
    """The row of a request in the metadata's `exemplar_bank` (what `exemplar_inputs` finds in
    the graph, `export_lib.exemplar_inputs`; TFLite clients call this)."""
    values = bank_meta["values"]
    if match == "dive_number" and dive_number is not None:
        value = str(dive_number).upper()
    elif match == "difficulty" and difficulty is not None:
        import numpy as np
        value = f"{float(np.float32(difficulty)):.2f}"
    else:
        value = None
    return values.index(value) if value in values else len(values) - 1
