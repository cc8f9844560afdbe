"""One registry mechanism for every pluggable kind (after MMAction2's `mmaction/registry.py`).

A registry maps names to implementations. Modules register their built-ins with a decorator
(`@BACKBONES.register("c3d")`) or a call (`NORMALIZATIONS.register("imagenet", (mean, std))`);
each registry knows which modules hold its built-ins and imports them the first time it is
asked for a name, so `--helpfull` and config validation list every choice without importing
the whole project at start-up. An unknown name raises an error listing the known ones.

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
    """

    def __init__(self, kind: str, locations: Sequence[str] = ()):
        self.kind = kind
        self.locations = tuple(locations)
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
        """Every registered name, sorted."""
        self._populate()
        return sorted(self._entries)

    def items(self) -> Iterator[Tuple[str, T]]:
        self._populate()
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        self._populate()
        return name in self._entries

    def get(self, name: str, field: str = "") -> T:
        """The implementation registered as `name`.

        Raises:
          ValueError: for an unknown name, listing the known ones (prefixed with
            `<field>=<name>` when `field` names the option that gave it).
        """
        self._populate()
        if name not in self._entries:
            where = f"{field}={name!r}: " if field else ""
            raise ValueError(f"{where}unknown {self.kind} {name!r}; known {self.kind}s: "
                             f"{', '.join(self.names())}")
        return self._entries[name]


# The project's registries and where their built-ins are registered.
BACKBONES: Registry[Callable[..., Any]] = Registry(
    "backbone", ["aqa_tf.models.backbones"])
HEADS: Registry[Callable[..., Any]] = Registry(
    "head", ["aqa_tf.models.heads.score", "aqa_tf.models.heads.dive",
             "aqa_tf.models.heads.caption", "aqa_tf.models.heads.distribution"])
# The score head's variant of each `--score_normalization`.
SCORE_HEADS: Registry[Callable[..., Any]] = Registry(
    "score normalisation", ["aqa_tf.models.heads.score",
                            "aqa_tf.models.heads.per_action_score"])
AGGREGATIONS: Registry[Callable[..., Any]] = Registry(
    "aggregation", ["aqa_tf.models.layers.aggregation"])
CHECKPOINT_SOURCES: Registry[Any] = Registry(
    "checkpoint source", ["aqa_tf.weights.sources"])
NORMALIZATIONS: Registry[Tuple[Tuple[float, ...], Tuple[float, ...]]] = Registry(
    "normalization", ["aqa_tf.data.normalization"])
SELECTION_RULES: Registry[Any] = Registry(
    "selection rule", ["aqa_tf.training.evaluation"])
DISTRIBUTIONS: Registry[Callable[[], Any]] = Registry(
    "distribution", ["aqa_tf.devices"])
