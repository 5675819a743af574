"""HTTP service and web page over the run's Predictor: ``create_app(run_dir)``; ``cxr serve``.

``create_app`` is imported on first use, so the stdlib client (:mod:`cxrkit.serve.client`)
works without loading torch.
"""

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
