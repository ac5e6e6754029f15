"""Binding rendered parameters to upstream instances, and the identity that merges instances."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from motionflow.graph.instance import GatherSlot, Instance, Interp, Slot
from motionflow.recipe.matrix import Variant

__all__ = ["bind", "binder", "gather", "identity"]


def binder(mine: dict[str, list[Instance]], take: int) -> Callable[[Slot], Slot]:
    """Bind a slot to this variant's upstream instance (the same take when it fans out)."""

    def resolve(slot: Slot) -> Slot:
        if slot.ref.scope == "inputs":
            return slot
        ups = mine[slot.ref.name]
        return Slot(slot.ref, ups[take] if len(ups) > 1 else ups[0])

    return resolve


def bind(value: Any, resolve: Callable[[Slot], Slot]) -> Any:
    """``value`` with every slot replaced by ``resolve(slot)``."""
    if isinstance(value, Slot):
        return resolve(value)
    if isinstance(value, Interp):
        return Interp(tuple(resolve(p) if isinstance(p, Slot) else p for p in value.parts))
    if isinstance(value, dict):
        return {k: bind(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [bind(v, resolve) for v in value]
    return value


def gather(
    rendered: Any,
    by_variant: dict[str, dict[str, list[Instance]]],
    variants: list[Variant],
) -> tuple[Any, list[str]]:
    """Bind a gathering stage: each stage reference lists that stage's instances over every
    variant (each once, in matrix order, takes in order). Labels follow the first one."""
    labels: list[str] = []

    def bind_all(value: Any) -> Any:
        if isinstance(value, Slot) and value.ref.scope == "stages":
            ups: dict[int, Instance] = {}
            for variant in variants:
                for inst in by_variant[variant.id].get(value.ref.name, []):
                    ups.setdefault(id(inst), inst)
            if not labels:
                labels.extend(_item_label(inst) for inst in ups.values())
            return GatherSlot(value.ref, tuple(ups.values()))
        if isinstance(value, dict):
            return {k: bind_all(v) for k, v in value.items()}
        if isinstance(value, list):
            return [bind_all(v) for v in value]
        return value

    return bind_all(rendered), labels


def _item_label(inst: Instance) -> str:
    if inst.gathers:
        return inst.stage
    base = inst.variants[0].label
    return f"{base} · take {inst.take_label}" if inst.take_label else base


def identity(value: Any) -> Any:
    """A hashable, order-independent form of bound parameters (for merging instances)."""
    if isinstance(value, GatherSlot):
        return ("$gather", value.ref.field, tuple(u.id for u in value.upstreams))
    if isinstance(value, Slot):
        if value.upstream is None:
            return ("$input", value.ref.name)
        return ("$instance", value.upstream.id, value.ref.field)
    if isinstance(value, Interp):
        return ("$interp", tuple(identity(p) for p in value.parts))
    if isinstance(value, dict):
        return ("$dict", tuple(sorted((k, identity(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("$list", tuple(identity(v) for v in value))
    return (type(value).__name__, value)
