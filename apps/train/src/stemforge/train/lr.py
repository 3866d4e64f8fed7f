"""AdamW learning rate with linear warm-up (MSG-LD: lr 3e-5, 1000 warm-up steps, then constant)."""

from __future__ import annotations


def warmup_lr(base_lr: float, step: int, warmup_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): ``base_lr * min(1, (step + 1) / warmup_steps)``.

    A pure function of the step, so a resumed run recomputes the schedule instead of restoring it.
    """
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)
