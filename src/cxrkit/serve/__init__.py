"""HTTP service and web page over the run's Predictor: ``create_app(run_dir)``; ``cxr serve``."""

from .app import create_app

__all__ = ["create_app"]
