"""One registry mechanism for every pluggable kind (after MMAction2's `mmaction/registry.py`).

A registry maps names to implementations. Modules register their built-ins with a decorator
(`@BACKBONES.register("c3d")`) or a call (`NORMALIZATIONS.register("imagenet", (mean, std))`);
each registry knows which modules hold its built-ins and imports them the first time it is
asked for one. The registries of Keras code (backbones, heads, ...) also declare below the name
of each built-in and its module: their names (a flag's choices, `--helpfull`, config
validation) are known without importing Keras or TensorFlow, so a command line with a mistake
is refused, and `--help` printed, in a second instead of the ~8 s of importing TensorFlow
(a new built-in is its module plus its line here; `tests/registry_test.py` checks that the two
agree). An unknown name raises an error listing the known ones.

This module imports nothing else of aqa_tf, so every layer (config, data, models, weights,
CLIs) can read the registries.
"""

import importlib
from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> implementations of one kind.

    Args:
      kind: what is registered, singular ("backbone"); used in error messages.
      locations: modules that register the built-ins, imported on first use.
      declared: name -> module of each built-in: `names()` and `in` answer from it without
        importing anything; `get(name)` imports that name's module only.
    """

    def __init__(self, kind: str, locations: Sequence[str] = (),
                 declared: Optional[Dict[str, str]] = None):
        self.kind = kind
        self.declared = dict(declared or {})
        self.locations = tuple(dict.fromkeys([*locations, *self.declared.values()]))
        self._entries: Dict[str, T] = {}
        self._populated = not self.locations

    def register(self, name: str, value: Optional[T] = None):
        """Registers `value` as `name`; without `value`, a decorator that registers what it
        decorates (and returns it unchanged)."""
        if value is None:
            def decorator(obj):
                self.register(name, obj)
                return obj
            return decorator
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered "
                             f"({self._entries[name]!r})")
        self._entries[name] = value
        return value

    def _populate(self):
        if not self._populated:
            self._populated = True  # before importing: the imports register into this registry
            for module in self.locations:
                importlib.import_module(module)

    def names(self) -> List[str]:
        """Every registered name, sorted (declared ones without importing their modules)."""
        if not self.declared:
            self._populate()
        return sorted(set(self._entries) | set(self.declared))

    def items(self) -> Iterator[Tuple[str, T]]:
        self._populate()
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        if name in self._entries or name in self.declared:
            return True
        self._populate()
        return name in self._entries

    def get(self, name: str, field: str = "") -> T:
        """The implementation registered as `name`.

        Raises:
          ValueError: for an unknown name, listing the known ones (prefixed with
            `<field>=<name>` when `field` names the option that gave it).
        """
        if name not in self._entries and name in self.declared:
            importlib.import_module(self.declared[name])
        if name not in self._entries:
            self._populate()
        if name not in self._entries:
            where = f"{field}={name!r}: " if field else ""
            raise ValueError(f"{where}unknown {self.kind} {name!r}; known {self.kind}s: "
                             f"{', '.join(self.names())}")
        return self._entries[name]


# The project's registries and where their built-ins are registered.
def _declare(module: str, *names: str) -> Dict[str, str]:
    return {name: module for name in names}


BACKBONES: Registry[Callable[..., Any]] = Registry("backbone", declared={
    **_declare("aqa_tf.models.backbones.c3d", "c3d"),
    **_declare("aqa_tf.models.backbones.i3d", "i3d"),
    **_declare("aqa_tf.models.backbones.mscadc", "mscadc"),
    **_declare("aqa_tf.models.backbones.r2plus1d", "r2plus1d_18", "r2plus1d_34",
               "r2plus1d_34_ig65m", "r2plus1d_50"),
    **_declare("aqa_tf.models.backbones.resnet3d", "resnet3d_18", "resnet3d_34", "resnet3d_50",
               "resnet3d_101"),
    **_declare("aqa_tf.models.backbones.s3d", "s3d")})
HEADS: Registry[Callable[..., Any]] = Registry("head", declared={
    **_declare("aqa_tf.models.heads.score", "score"),
    **_declare("aqa_tf.models.heads.dive", "dive"),
    **_declare("aqa_tf.models.heads.caption", "caption"),
    **_declare("aqa_tf.models.heads.distribution", "usdl", "musdl"),
    **_declare("aqa_tf.models.heads.core", "core"),
    **_declare("aqa_tf.models.heads.tsa", "tsa")})
# The score head's variant of each `--score_normalization`.
SCORE_HEADS: Registry[Callable[..., Any]] = Registry("score normalisation", declared={
    **_declare("aqa_tf.models.heads.score", "global"),
    **_declare("aqa_tf.models.heads.per_action_score", "per_action", "per_action_standardized")})
AGGREGATIONS: Registry[Callable[..., Any]] = Registry("aggregation", declared=_declare(
    "aqa_tf.models.layers.aggregation", "average", "lstm", "lstm_encoder", "weight_decider"))
CHECKPOINT_SOURCES: Registry[Any] = Registry("checkpoint source", declared=_declare(
    "aqa_tf.weights.sources", "c3d", "core", "i3d", "i3d_hassony2", "keras_backbone",
    "keras_model", "mtl_aqa", "resnet", "s3d", "torchvision", "tsa"))
NORMALIZATIONS: Registry[Tuple[Tuple[float, ...], Tuple[float, ...]]] = Registry(
    "normalization", ["aqa_tf.data.normalization"])  # no Keras: imported to list its names
SELECTION_RULES: Registry[Any] = Registry("selection rule", declared=_declare(
    "aqa_tf.training.evaluation", "spearman", "spearman_accuracy", "spearman_fisher_z"))
DISTRIBUTIONS: Registry[Callable[[], Any]] = Registry("distribution", declared=_declare(
    "aqa_tf.devices", "default", "mirrored", "multi_worker"))
