"""Aggregation of clip features into one video feature (`--aggregation=`)."""

from keras import layers

AGGREGATIONS = ("average",)


def build_aggregation(name: str, **kwargs):
    """Returns a layer mapping clip features `[batch, num_clips, dim]` to `[batch, dim]`.

    `average` is C3D-AVG's element-wise mean over clips (paper 001, section 4.1).
    """
    if name == "average":
        return layers.GlobalAveragePooling1D(name="clip_average")
    raise ValueError(f"unknown aggregation {name!r}; known aggregations: {', '.join(AGGREGATIONS)}")
