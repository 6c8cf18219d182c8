"""The contract suite's speed: azure-ai-ml decides whether to warn about an experimental
class (DataCollector, built for every deployment GET) by ``inspect.stack()``, which reads
the source of every frame: 0.2 s a call under pytest's deep stacks, most of the suite's
time. The same decision (is a ``_from_rest_object`` on the stack?) from the frames alone."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from azure.ai.ml._utils import _experimental


def _from_rest_on_stack() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_from_rest_object":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


@pytest.fixture(autouse=True, scope="module")
def _cheap_experimental_check() -> Iterator[None]:
    original = _experimental._should_skip_warning
    _experimental._should_skip_warning = _from_rest_on_stack
    yield
    _experimental._should_skip_warning = original
