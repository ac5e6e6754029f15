"""Generation providers: the EmpirioLabs client, pricing, and the offline simulator."""

from __future__ import annotations

__all__: list[str] = []
