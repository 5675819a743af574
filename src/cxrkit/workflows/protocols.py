"""The same training config under several evaluation protocols, side by side in one table.

A published number means little without its protocol: on ``../shared/data/cxr`` a random
image-level split (the protocol behind the original 98.75%) puts test images next to their own
patients in train, and a model that learned "child vs adult" scores high on it. This workflow
trains one config per protocol (:mod:`cxrkit.data.splits` does the splitting), evaluates each
model on its own test split (and on ``external`` data when given), and writes
``protocols.json`` + ``protocols.md`` + ``report.html`` (the same table, with a bar plot of the
accuracies and their CIs). Checkpoints are chosen on val loss only; nothing is
tuned on a test split. Each protocol lives in ``OUT/<name>/`` (``run/`` + ``result.json``),
so a rerun reuses finished protocols and resumes an interrupted training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._io import atomic_write_json, atomic_write_text
from .._meta import RESEARCH_NOTICE
from ..data.splits import EXCLUDED
from ..errors import UsageError

FORMAT = "cxrkit-protocols/1"
RESULT_FILE = "result.json"
# Keys of a protocol: the split part of a TrainConfig. A config file may not set them here.
PROTOCOL_KEYS = ("classes", "split_by", "holdout_source", "select", "split_file")
NON_RADDB = ["ieee8023", "Actualmed", "Figure1"]


@dataclass(frozen=True)
class Protocol:
    name: str
    what: str  # one line for the table
    overrides: dict = field(default_factory=dict)


PROTOCOLS = {
    p.name: p
    for p in (
        Protocol("patient", "patient-disjoint: whole patients and near-duplicates per split", {"split_by": "patient"}),
        Protocol("image", "random image-level split (LEAKY; the original's protocol)", {"split_by": "image"}),
        Protocol(
            "lso-adult",
            "adult COVID vs adult normal; train on RadDB, test on the held-out ieee8023/Actualmed/Figure1 images",
            {
                "classes": "covid,normal",
                "select": ["population=adult"],
                "split_by": "source",
                "holdout_source": NON_RADDB,
            },
        ),
        Protocol(
            "lso-adult-normal",
            "trained without adult normals, scored on them (normals only in test)",
            {"split_by": "source", "holdout_source": ["label=normal population=adult"]},
        ),
        Protocol(
            "lso-pediatric-normal",
            "trained without pediatric normals, scored on them (normals only in test)",
            {"split_by": "source", "holdout_source": ["label=normal population=pediatric"]},
        ),
    )
}


def preset_protocol(name: str, preset: str, what: str) -> Protocol | None:
    """A protocol whose split keys come from a config preset (None when that preset is missing)."""
    from ..training.config import PRESET_DIR, read_config_file

    if not (PRESET_DIR / f"{preset}.yaml").is_file():
        return None
    values = read_config_file(preset)
    return Protocol(name, what, {k: values[k] for k in PROTOCOL_KEYS if k in values})


_v1 = preset_protocol(
    "v1-image",
    "seed-replication",
    "the original's v1 composition (219 random COVID + Kermany normals and viral), random image-level split (LEAKY)",
)
if _v1:
    PROTOCOLS[_v1.name] = _v1
DEFAULT_PROTOCOLS = ("patient", "image", "lso-adult", "lso-adult-normal", "lso-pediatric-normal")


def parse_protocols(text: str | list[str]) -> list[Protocol]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown or not names:
        raise UsageError(
            f"--protocols: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(PROTOCOLS)}"
        )
    return [PROTOCOLS[n] for n in dict.fromkeys(names)]


def protocol_config(protocol: Protocol, base: dict, data: str, out: Path):
    """The TrainConfig of one protocol: ``base`` (config file + flags) < the protocol's split keys."""
    from ..training.config import TrainConfig

    clash = sorted(k for k in base if k in PROTOCOL_KEYS)
    if clash:
        raise UsageError(f"{', '.join(clash)}: set by each protocol, not by the config; remove them from --config")
    return TrainConfig.from_dict(
        {**base, **protocol.overrides, "data": data, "out": str(out / protocol.name / "run")},
        f"protocol {protocol.name}",
    )


def _headline(metrics: dict, classes: list[str]) -> dict:
    m = metrics["overall"]["metrics"]
    keys = ["accuracy", "macro_f1", *(f"sensitivity/{c}" for c in classes)]
    return {"n_images": metrics["overall"]["n_images"], **{k: m.get(k) for k in keys}}


def run_protocol(
    protocol: Protocol,
    config,
    external: str | None,
    resamples: int,
    workers: int,
    on_stage: Callable[[str], None],
    external_by: list[str] | None = None,
    abnormal: list[str] | None = None,
    train_callbacks: tuple = (),
) -> dict:
    """Train (or resume) and evaluate one protocol; the row of the table. The external set is
    scored by ``external_by`` subgroups and, with ``abnormal``, "abnormal called normal";
    ``train_callbacks`` (Lightning callbacks, e.g. progress lines) go to the training."""
    from ..evaluation import evaluate_run
    from ..run import RunDir
    from ..training import train

    run = RunDir(config.out)
    start = time.perf_counter()
    if not run.is_finished():
        on_stage(f"{protocol.name}: training {config.model}")
        train(
            config,
            resume=run.last_checkpoint.is_file(),
            progress_bar=False,
            on_stage=on_stage,
            callbacks=train_callbacks,
        )
    train_seconds = time.perf_counter() - start
    on_stage(f"{protocol.name}: evaluating on its own test split")
    try:
        metrics = evaluate_run(run.root, n_resamples=resamples, workers=workers, cache_dir=config.cache_dir)
    except UsageError as exc:  # e.g. an empty test split
        raise UsageError(f"protocol {protocol.name}: {exc}") from None
    atomic_write_json(run.root / "evaluation" / "metrics.json", metrics)
    classes, facts = metrics["run"]["classes"], metrics["protocol"]
    row = {
        "protocol": protocol.name,
        "what": protocol.what,
        "classes": classes,
        "split": {k: config.to_dict()[k] for k in PROTOCOL_KEYS if k != "split_file"},
        "leaky": facts["leaky"],
        **{k: facts[k] for k in ("leaked_test_images", "test_missing_classes", "excluded_images", "images", "counts")},
        "test": _headline(metrics, classes),
        "warnings": metrics["warnings"],
    }
    if facts["excluded_images"]:
        on_stage(f"{protocol.name}: scoring the {facts['excluded_images']} images the protocol left out")
        left = evaluate_run(
            run.root, split=EXCLUDED, n_resamples=resamples, workers=workers, cache_dir=config.cache_dir
        )
        row["left_out"] = _headline(left, classes)
    if external:
        on_stage(f"{protocol.name}: scoring the external set {external}")
        ext = evaluate_run(
            run.root,
            data=external,
            split="all",
            by=external_by,
            n_resamples=resamples,
            workers=workers,
            cache_dir=config.cache_dir,
            abnormal=abnormal,
        )
        row["external"] = {
            **_headline(ext, classes),
            "data": str(external),
            "subgroups": {
                col: {v: {"n_images": r["n_images"], "accuracy": r["metrics"].get("accuracy")} for v, r in vals.items()}
                for col, vals in ext["subgroups"].items()
            },
            "abnormal": ext.get("abnormal"),
            "warnings": ext["warnings"],
        }
    row["seconds"] = {"train": round(train_seconds, 1), "total": round(time.perf_counter() - start, 1)}
    row["config"] = config.to_dict()
    return row


def run_protocols(
    data: str,
    out: str | Path,
    protocols: list[Protocol],
    base: dict | None = None,
    external: str | None = None,
    resamples: int = 1000,
    workers: int = 2,
    on_stage: Callable[[str], None] = lambda msg: None,
    on_protocol_done: Callable[[str, dict], None] = lambda name, row: None,
    external_by: list[str] | None = None,
    abnormal: list[str] | None = None,
    train_callbacks: tuple = (),
) -> dict:
    """Every protocol's row (reusing finished ones), then the table; returns ``protocols.json``'s dict.

    A training stopped by a signal raises :class:`~cxrkit.training.stop.TrainingStopped`; the
    same call again resumes it (finished protocols are reused)."""
    out = Path(out)
    rows = []
    for protocol in protocols:
        config = protocol_config(protocol, base or {}, data, out)
        result_path = out / protocol.name / RESULT_FILE
        if result_path.is_file():
            import json

            row = json.loads(result_path.read_text())
            if row.get("config") != config.to_dict() or (external and row.get("external", {}).get("data") != external):
                raise UsageError(
                    f"{result_path} was made with another config or external set; "
                    f"delete {out / protocol.name} or choose another --out"
                )
            on_stage(f"{protocol.name}: finished before, reused")
        else:
            row = run_protocol(
                protocol, config, external, resamples, workers, on_stage, external_by, abnormal, train_callbacks
            )
            atomic_write_json(result_path, row)
        rows.append(row)
        on_protocol_done(protocol.name, row)
    table = {
        "format": FORMAT,
        "notice": RESEARCH_NOTICE,
        "data": data if isinstance(data, list) else str(data),
        "external": external,
        "rows": add_gaps(rows),
    }
    atomic_write_json(out / "protocols.json", table)
    atomic_write_text(out / "protocols.md", to_markdown(table))
    atomic_write_text(out / "report.html", to_html(table))
    return table


def add_gaps(rows: list[dict]) -> list[dict]:
    """Accuracy minus the patient-disjoint accuracy, in points (None without a patient row)."""
    ref = next((r["test"]["accuracy"]["value"] for r in rows if r["protocol"] == "patient"), None)
    for r in rows:
        acc = r["test"]["accuracy"]["value"]
        r["gap_to_patient_points"] = None if ref is None else round(100 * (acc - ref), 1)
    return rows


def format_ci(key: str, ci: dict | None) -> str:
    """The report's CI text; imported on use, as ``cxr --help`` imports this module (evaluation loads torch)."""
    from ..evaluation.report import format_ci

    return format_ci(key, ci)


def _classes(table: dict) -> list[str]:
    return list(dict.fromkeys(c for r in table["rows"] for c in r["classes"]))


def _sensitivities(row: dict, t: dict, classes: list[str]) -> list[str]:
    return [format_ci("sensitivity", t.get(f"sensitivity/{c}")) if c in row["classes"] else "-" for c in classes]


def main_table(table: dict) -> tuple[list[str], list[list[str]]]:
    """Header and one row of plain-text cells per protocol: what Markdown and HTML both show."""
    classes, external = _classes(table), bool(table.get("external"))
    head = ["protocol", "leaky?", "train/val/test", "leaked test imgs", "accuracy [95% CI]", "macro-F1"]
    abnormal = any((r.get("external") or {}).get("abnormal") for r in table["rows"])
    head += [*(f"sens. {c}" for c in classes), "gap to patient (pts)", *(["external accuracy"] * external)]
    head += [*(["external abnormal called normal"] * abnormal), "wall"]
    rows = []
    for r in table["rows"]:
        t, imgs, gap = r["test"], r["images"], r["gap_to_patient_points"]
        cells = [r["protocol"], "LEAKY" if r["leaky"] else "no", f"{imgs['train']}/{imgs['val']}/{imgs['test']}"]
        cells += [
            str(r["leaked_test_images"]),
            format_ci("accuracy", t["accuracy"]),
            format_ci("macro_f1", t["macro_f1"]),
        ]
        cells += [*_sensitivities(r, t, classes), "-" if gap is None else f"{gap:+.1f}"]
        if external:
            cells.append(format_ci("accuracy", r.get("external", {}).get("accuracy")))
        if abnormal:
            abn = (r.get("external") or {}).get("abnormal")
            cells.append(format_ci("called_normal", abn["called_normal"]) if abn else "-")
        rows.append([*cells, f"{r['seconds']['total'] / 60:.1f} min"])
    return head, rows


def left_out_table(table: dict) -> tuple[list[str], list[list[str]]]:
    """The images each protocol left out, scored by its model (rows only for protocols that left some)."""
    classes = _classes(table)
    head = ["protocol", "left-out images", "accuracy [95% CI]", *(f"sens. {c}" for c in classes)]
    rows = [
        [r["protocol"], str(t["n_images"]), format_ci("accuracy", t["accuracy"]), *_sensitivities(r, t, classes)]
        for r in table["rows"]
        if (t := r.get("left_out"))
    ]
    return head, rows


LEFT_OUT_INTRO = (
    "Scored on the images each protocol left out (same data, never trained on; e.g. the adult "
    "normals outside the v1 composition):"
)
FOOTNOTES = (
    "leaked test imgs: test images whose patient or near-duplicate is in train.",
    "CIs: bootstrap over patients (images without an id count alone); checkpoints "
    "chosen on val loss; nothing chosen on a test split.",
)


def protocol_notes(table: dict) -> list[tuple[str, str]]:
    """(protocol, what it is; which classes its test split lacks)."""
    return [
        (
            r["protocol"],
            r["what"]
            + (
                f"; no test images of {', '.join(r['test_missing_classes'])} (their sensitivity is n/a, "
                "and accuracy is the sensitivity of the classes present)"
                if r["test_missing_classes"]
                else ""
            ),
        )
        for r in table["rows"]
    ]


def to_markdown(table: dict) -> str:
    def md(head: list[str], rows: list[list[str]]) -> list[str]:
        marked = [[f"`{r[0]}`", *("**LEAKY**" if c == "LEAKY" else c for c in r[1:])] for r in rows]
        return [
            "| " + " | ".join(head) + " |",
            "|" + " --- |" * len(head),
            *("| " + " | ".join(r) + " |" for r in marked),
        ]

    lines = md(*main_table(table))
    head, rows = left_out_table(table)
    if rows:
        lines += ["", LEFT_OUT_INTRO, "", *md(head, rows)]
    notes = [f"- `{name}`: {text}" for name, text in protocol_notes(table)]
    return "\n".join(
        [f"Data: `{table['data']}`. {RESEARCH_NOTICE}", "", *lines, "", *notes, *(f"- {n}" for n in FOOTNOTES), ""]
    )


def to_html(table: dict) -> str:
    """``report.html`` of the protocols run: the tables of :func:`to_markdown` and the accuracy plot."""
    from ..evaluation.plots import protocols_png
    from ..evaluation.report import tables_page

    rows = table["rows"]
    head, cells = main_table(table)
    figure = protocols_png(
        [r["protocol"] for r in rows],
        [r["test"]["accuracy"] for r in rows],
        [r["images"]["test"] for r in rows],
        [r["leaky"] for r in rows],
    )
    tables = [
        {
            "title": "Each protocol on its own test split",
            "header": head,
            "rows": cells,
            "warn_rows": {i for i, r in enumerate(rows) if r["leaky"] or r["test_missing_classes"]},
            "figure": figure,
            "alt": "accuracy per protocol with 95% CIs; leaky protocols hatched",
        }
    ]
    left_head, left_rows = left_out_table(table)
    if left_rows:
        tables.append(
            {
                "title": "The images each protocol left out",
                "text": LEFT_OUT_INTRO,
                "header": left_head,
                "rows": left_rows,
            }
        )
    total = sum(r["seconds"]["total"] for r in rows) / 60
    intro = [f"Data: {table['data']}" + (f"; external: {table['external']}" if table.get("external") else "")]
    intro += [
        f"{len(rows)} protocols, {total:.1f} min wall in all. Highlighted rows are LEAKY or lack a class in test."
    ]
    notes = [f"{name}: {text}" for name, text in protocol_notes(table)] + list(FOOTNOTES)
    return tables_page("Evaluation protocols side by side", RESEARCH_NOTICE, intro, tables, notes)
