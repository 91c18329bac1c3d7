"""How long to wait before retry number n (1-based) of a step or compensation."""

from __future__ import annotations

import random

from floxy_core.durations import MAX_DURATION_MS
from floxy_core.model import RetryStrategy, StepDefinition


def backoff_ms(step: StepDefinition, retry: int, rng: random.Random) -> int:
    """fixed = d, linear = d·n, exponential = d·2^(n-1), capped (`retry_max_delay`, else 30 days),
    with optional full jitter."""
    base = step.retry_delay_ms
    if base <= 0 or retry <= 0:
        return 0
    if step.retry_strategy is RetryStrategy.LINEAR:
        delay = base * retry
    elif step.retry_strategy is RetryStrategy.EXPONENTIAL:
        delay = base * (2 ** min(retry - 1, 40))
    else:
        delay = base
    # exponential growth past a month would schedule retries beyond any calendar
    delay = min(
        delay, MAX_DURATION_MS if step.retry_max_delay_ms is None else step.retry_max_delay_ms
    )
    if step.retry_jitter:
        delay = rng.randint(0, delay)
    return delay
