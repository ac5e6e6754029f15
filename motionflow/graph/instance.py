"""Stage instances and the references bound in their parameters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from motionflow.recipe.matrix import Variant
from motionflow.recipe.refs import Ref
from motionflow.stages.base import Stage

__all__ = ["ALL_VARIANTS", "GatherSlot", "Instance", "Interp", "ParamPath", "Slot", "walk_slots"]

#: The pseudo-variant of a stage ``over: variants``: its results go to ``out/<recipe>/``.
ALL_VARIANTS = Variant("", ())
ParamPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Slot:
    """A parameter bound to an input or to an output field of an upstream instance."""

    ref: Ref
    upstream: Instance | None = None


@dataclass(frozen=True)
class GatherSlot:
    """In a stage ``over: variants``: a reference bound to the instances of every variant."""

    ref: Ref
    upstreams: tuple[Instance, ...]


@dataclass(frozen=True)
class Interp:
    """A string with references inside it: ``"${stages.p.text}, at night"``."""

    parts: tuple[str | Slot, ...]


@dataclass(eq=False, repr=False)
class Instance:
    """A stage bound to one or more variants (identical bindings are one instance).

    Attributes:
        id: unique within the graph (``stage#n``); instances with the same stage, bound
            parameters, take and upstreams are merged into one.
        stage: the stage's name in the recipe.
        impl: the stage kind.
        take: the take index that goes into the key (0 unless the stage has ``takes``).
        take_label: 1-based take number shown in names when several takes exist, else None.
        params: parameters after templating; references are :class:`Slot`/:class:`Interp`.
        upstream: instances this one waits for (references and ``needs``).
        variants: the variants that use this instance.
    """

    id: str
    stage: str
    impl: Stage
    take: int
    take_label: int | None
    params: dict[str, Any]
    upstream: list[Instance]
    variants: list[Variant] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        # Upstreams by id only: the generated repr would recurse down the whole chain (and
        # overflow on a recipe thousands of stages deep).
        ups = ", ".join(u.id for u in self.upstream)
        return f"<Instance {self.id} {self.label} upstream=[{ups}]>"

    @property
    def gathers(self) -> bool:
        """True for the single instance of a stage ``over: variants``."""
        return self.variants == [ALL_VARIANTS]

    @property
    def label(self) -> str:
        """``stage[variant, take]`` for messages; shared instances name their first variant."""
        if self.gathers:
            return f"{self.stage}[all variants]"
        variant = (
            self.variants[0].id if len(self.variants) == 1 else f"{len(self.variants)} variants"
        )
        take = f", take {self.take_label}" if self.take_label else ""
        return f"{self.stage}[{variant}{take}]"

    def slots(self) -> Iterator[tuple[ParamPath, Slot]]:
        """Every reference in the parameters, with its parameter path."""
        yield from walk_slots(self.params, ())


def walk_slots(value: Any, path: ParamPath) -> Iterator[tuple[ParamPath, Slot]]:
    """Every :class:`Slot` in bound parameters (a gather slot gives one per upstream)."""
    if isinstance(value, Slot):
        yield path, value
    elif isinstance(value, GatherSlot):
        for upstream in value.upstreams:
            yield path, Slot(value.ref, upstream)
    elif isinstance(value, Interp):
        for part in value.parts:
            if isinstance(part, Slot):
                yield path, part
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from walk_slots(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_slots(v, (*path, i))
