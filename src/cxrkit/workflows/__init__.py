"""Workflows: several steps (train, evaluate, ...) chained into one job with one report."""

from .protocols import PROTOCOLS, run_protocols

__all__ = ["PROTOCOLS", "run_protocols"]
