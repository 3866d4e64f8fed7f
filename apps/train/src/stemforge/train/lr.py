"""AdamW learning rate: linear warm-up, then constant (MSG-LD: lr 3e-5, 1000 warm-up steps) or cosine.

Both are pure functions of the step, so a resumed run recomputes the schedule instead of restoring it.
"""

from __future__ import annotations

import math


def warmup_lr(base_lr: float, step: int, warmup_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): ``base_lr * min(1, (step + 1) / warmup_steps)``."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


def scheduled_lr(
    base_lr: float,
    step: int,
    warmup_steps: int,
    *,
    decay: str = "constant",
    decay_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> float:
    """Warm-up, then ``decay``: ``"constant"`` (``warmup_lr``) or ``"cosine"``.

    The cosine half-period runs from the end of the warm-up to step ``decay_steps`` (counted from 0,
    like ``step``), falling from ``base_lr`` to ``min_lr_ratio * base_lr``, which it keeps afterwards.
    """
    lr = warmup_lr(base_lr, step, warmup_steps)
    if decay == "constant" or step < warmup_steps:
        return lr
    if decay != "cosine":
        raise ValueError(f"unknown learning-rate decay {decay!r}; use 'constant' or 'cosine'")
    span = max(1, decay_steps - max(warmup_steps, 0))
    progress = min(1.0, (step - max(warmup_steps, 0)) / span)
    floor = min_lr_ratio * base_lr
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
