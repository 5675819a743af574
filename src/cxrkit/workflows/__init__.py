"""Workflows: several steps (train, evaluate, ...) chained into one job with one report.

Scripts and tests call these; the CLI only parses arguments, calls one of them and prints::

    run_demo(TrainConfig(data="data/cxr", out=""), "runs/demo")     # what `make demo` runs
    evaluate_and_report("runs/x", audit=True)                        # `cxr evaluate --audit`
    compare_runs(["runs/a", "runs/b"])                               # `cxr compare`
    run_protocols(...)                                               # `cxr protocols`

Names load on first use (each pulls in torch).
"""

_LAZY = {
    "run_demo": "demo",
    "DemoResult": "demo",
    "inspect_to_folder": "demo",
    "write_inspection": "inspect",
    "DEMO_DEFAULTS": "demo",
    "evaluate_and_report": "evaluation",
    "Evaluated": "evaluation",
    "compare_runs": "evaluation",
    "COMPARE_HEADER": "evaluation",
    "markdown_table": "evaluation",
    "PROTOCOLS": "protocols",
    "run_protocols": "protocols",
    "adapt": "adapt",
    "AdaptResult": "adapt",
    "site_report": "adapt",
    "train_ready": "training",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
