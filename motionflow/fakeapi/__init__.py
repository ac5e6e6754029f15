"""A fake EmpirioLabs API server on loopback HTTP, for the simulator and for tests."""

from __future__ import annotations

from motionflow.fakeapi.config import FakeConfig
from motionflow.fakeapi.faults import ErrorStyle, Faults
from motionflow.fakeapi.jobs import ResultShape, StatusWords
from motionflow.fakeapi.server import FakeEmpirioLabs

__all__ = ["ErrorStyle", "FakeConfig", "FakeEmpirioLabs", "Faults", "ResultShape", "StatusWords"]
