"""Numba kernels shared across modules, compiled with ``cache=True`` so a restart does not recompile.

Numba goes only where it was measured to pay: the kernels here are single passes over sorted
data that NumPy cannot express without several temporaries.
"""
from __future__ import annotations

from .ranking import RankingSummary, merge_sorted_scores

__all__ = ["RankingSummary", "merge_sorted_scores"]
