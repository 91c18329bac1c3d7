"""Retry delays: pure functions of the step definition and the retry number."""

from __future__ import annotations

import random

import pytest

from floxy_core.engine.retry import backoff_ms
from floxy_core.errors import HandlerError
from floxy_core.model import RetryStrategy, StepDefinition, StepType


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (RetryStrategy.FIXED, [100, 100, 100, 100]),
        (RetryStrategy.LINEAR, [100, 200, 300, 400]),
        (RetryStrategy.EXPONENTIAL, [100, 200, 400, 800]),
    ],
)
def test_backoff_shapes(strategy: RetryStrategy, expected: list[int]) -> None:
    step = StepDefinition("s", StepType.TASK, "h", retry_delay_ms=100, retry_strategy=strategy)
    assert [backoff_ms(step, n, random.Random(1)) for n in range(1, 5)] == expected


def test_backoff_cap_and_jitter() -> None:
    step = StepDefinition(
        "s",
        StepType.TASK,
        "h",
        retry_delay_ms=100,
        retry_strategy=RetryStrategy.EXPONENTIAL,
        retry_max_delay_ms=250,
        retry_jitter=True,
    )
    values = [backoff_ms(step, 5, random.Random(seed)) for seed in range(50)]
    assert max(values) <= 250 and min(values) >= 0 and len(set(values)) > 5


def test_handler_error_types() -> None:
    assert HandlerError("x").retryable and not HandlerError("x", retryable=False).retryable
