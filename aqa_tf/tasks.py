"""What an AQA model is asked for: the output names, the sub-action classes and the caption
tokens. Data (`aqa_tf.data`) and models (`aqa_tf.models`) both read this module and nothing
of each other, so the names stay one vocabulary: the same keys name heads, losses, loss
weights, metrics and serving outputs.
"""

# Model outputs.
SCORE_OUTPUT = "score"
# With per-action score normalisation (paper 003): the regressor's output, the score divided by
# its action's training standard deviation; the loss is computed on it.
NORMALIZED_SCORE_OUTPUT = "normalized_score"
# Model input of multi-action models: the action index of each sample (records' action_id).
ACTION_INPUT = "action"
# Degree of difficulty, read by models that score difficulty x execution (paper 002).
DIFFICULTY_INPUT = "difficulty"
CAPTION_OUTPUT = "caption"
# Sub-action classification outputs (paper 001: the dive is described by five labels).
CLASS_OUTPUTS = ("position", "armstand", "rotation_type", "somersaults", "twists")
# Model input of captioning models: the words read under teacher forcing (`<sos> w1 .. wn`).
CAPTION_TOKENS = "caption_tokens"
# The two step transitions of a dive within the model's frames (procedure-aware heads: TSA),
# int32 `[batch, 2]`: a target of the query's, an input of the exemplar's
# (`data.pipeline.window_transitions`).
STEP_TRANSITIONS = "step_transitions"

# AQA-7 actions used by paper 003, in the index order of the dataset (action_id 1..6).
AQA7_ACTIONS = ("diving", "gym_vault", "ski_big_air", "snowboard_big_air", "sync_diving_3m",
                "sync_diving_10m")

# MTL-AQA class counts (paper 001, Table 2; label ranges of the annotation release).
MTL_AQA_NUM_CLASSES = {
    "position": 3,       # free, tuck, pike
    "armstand": 2,       # no, yes
    "rotation_type": 4,  # inward, reverse, backward, forward
    "somersaults": 10,   # ss_no class index
    "twists": 8,         # tw_no class index
}

# Display names of the MTL-AQA classes (`aqa_tf.predict`, the export's metadata). ss_no and tw_no
# count half turns: ss_no 7 is 3.5 somersaults (the commentaries of such dives say "three and
# a half").
MTL_AQA_CLASS_NAMES = {
    "position": ("free", "tuck", "pike"),
    "armstand": ("no armstand", "armstand"),
    "rotation_type": ("inward", "reverse", "backward", "forward"),
    "somersaults": tuple(f"{k / 2:g} somersault" + "s" * (k != 2) for k in range(10)),
    "twists": tuple(f"{k / 2:g} twist" + "s" * (k != 2) for k in range(8)),
}


def class_names(name: str, count: int) -> tuple:
    """Display names of the `count` classes of output `name` (MTL-AQA's when the count is
    theirs, else the class indices)."""
    known = MTL_AQA_CLASS_NAMES.get(name, ())
    return tuple(known) if len(known) == count else tuple(str(i) for i in range(count))


# Caption special tokens (the MTL-AQA `vocab.json` convention).
EOS = "<eos>"
SOS = "<sos>"
EOS_ID = 0
SOS_ID = 1
