"""Distilled students: a teacher's samples in 1 to 4 model calls (docs/distillation.md)."""
from .config import DistillConfig
from .loop import DistillResult, distill, read_distill_state

__all__ = ["DistillConfig", "DistillResult", "distill", "read_distill_state"]
