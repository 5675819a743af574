"""The PACS jobs: predict on chosen studies, and watch (poll, predict each new study once).

Per study: plan it from headers (``query.plan_study``), ask the PACS which results of this
model it already holds (their UIDs are derived, ``results.ResultNaming``), fetch the missing
instances into memory, run the run's own Predictor (``cxrkit.load``: the preprocessing,
calibration and uncertain threshold of ``cxr predict``), and STOW one SR (and one overlay
with ``cam``) per instance back into the study. A bad instance becomes an issue in the
summary and the batch goes on; a PACS that stays unreachable after the retries stops the job
(the rest would only time out too), and a rerun picks up where it stopped.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from .._meta import RESEARCH_NOTICE
from ..inference.defaults import DEFAULT_THRESHOLD
from .config import Connection, PacsError
from .query import Instance, Issue, existing_results, find_studies, plan_study, retrieve_bytes
from .results import ResultNaming, card_hash, figure_rgb, overlay_image, structured_report
from .state import JobState


@dataclass
class JobSummary:
    """Everything a job did, by UID only: the job's report and its ``--out`` JSON."""

    done: list[str] = field(default_factory=list)  # studies with results now complete
    already: list[str] = field(default_factory=list)  # studies that had every result before
    unreadable: list[str] = field(default_factory=list)  # studies with no instance the model may read
    planned: dict[str, int] = field(default_factory=dict)  # --dry-run: study -> instances to process
    failed: list[str] = field(default_factory=list)
    sr: int = 0
    overlays: int = 0
    issues: list[Issue] = field(default_factory=list)
    stopped: str | None = None  # why the job stopped early (PACS unreachable)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.kind == "error"]

    def line(self) -> str:
        skipped = len(self.issues) - len(self.errors)
        return (
            f"{len(self.done)} studies done, {len(self.already)} already had results, {len(self.failed)} failed; "
            f"{self.sr} SR, {self.overlays} overlays stored; {skipped} instances skipped, "
            f"{len(self.errors)} errors"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "notice": RESEARCH_NOTICE}


class PacsJob:
    """One model against one PACS. ``log`` receives one line per study (UIDs only)."""

    def __init__(
        self,
        predictor,
        conn: Connection,
        state: JobState | None = None,
        cam: bool = False,
        reprocess: bool = False,
        threshold: float | None = None,
        log: Callable[[str], None] = print,
        after_study: Callable[[str], None] | None = None,
    ):
        self.predictor = predictor
        self.conn = conn
        self.cam = cam
        self.reprocess = reprocess
        self.threshold = getattr(predictor, "threshold", DEFAULT_THRESHOLD) if threshold is None else threshold
        self.naming = ResultNaming(
            predictor.model_id, card_hash(_card(predictor)), uuid.uuid4().hex if reprocess else ""
        )
        self.state = state
        self.log = log
        self.after_study = after_study  # tests: a hook between studies
        self._explainer = None
        self.handled: set[str] = set()  # studies this job finished (watch --reprocess: once each)

    def select(self, studies: list[str] | None = None, since: str | None = None) -> list[str]:
        """The given studies, or every study (since a date) that the state does not mark done."""
        if studies:
            return list(dict.fromkeys(studies))
        found = [s for s in find_studies(self.conn, since) if s not in self.handled]
        if self.reprocess or self.state is None:
            return found
        return [s for s in found if not self.state.done(s)]

    def run(self, studies: list[str], dry_run: bool = False, max_attempts: int | None = None) -> JobSummary:
        """Plan studies one by one; predict their instances in batches that span studies (a
        one-image study alone would run the model at batch size 1); store per study."""
        summary, group = JobSummary(), []
        try:
            for k, study in enumerate(studies):
                if max_attempts and self.state and self.state.attempts(study) >= max_attempts:
                    continue
                try:
                    work = self._plan(study, summary, dry_run)
                except PacsError as exc:
                    self._failed([study], exc, summary)
                    if exc.transient:
                        raise _Stop(len(studies) - k - 1) from exc
                    continue
                if work is None:
                    self._finished(study)
                    continue
                group.append(work)
                if sum(len(w[1]) for w in group) >= getattr(self.predictor, "batch_size", 32):
                    self._flush(group, summary, len(studies) - k - 1)
                    group = []
            self._flush(group, summary, 0)
        except _Stop as stop:
            summary.stopped = (
                f"{stop.__cause__}; stopped with {stop.left} studies left; rerun the same command to continue"
            )
        return summary

    def _plan(self, study: str, summary: JobSummary, dry_run: bool):
        """(study, instances to process, instance numbers), or None when nothing is to be done."""
        plan = plan_study(self.conn, study)
        summary.issues += plan.issues
        todo = self._missing(plan)
        if dry_run:
            summary.planned[study] = len(todo)
            self.log(f"study {study}: would process {len(todo)} instance(s), {len(plan.issues)} left out")
            return None
        if not plan.eligible:
            summary.unreadable.append(study)
            self.log(f"study {study}: no instance the model may read ({len(plan.issues)} left out)")
        elif not todo:
            summary.already.append(study)
            self.log(
                f"study {study}: nothing to do ({len(plan.eligible)} readable instance(s) already have "
                f"results, {len(plan.issues)} left out)"
            )
        else:
            return study, todo, {inst.sop: k + 1 for k, inst in enumerate(plan.eligible)}, len(plan.issues)
        if self.state:
            self.state.record(study, True)
        return None

    def _finished(self, study: str) -> None:
        self.handled.add(study)
        if self.after_study:
            self.after_study(study)

    def _failed(self, studies: list[str], exc: PacsError, summary: JobSummary) -> None:
        for study in studies:
            summary.failed.append(study)
            summary.issues.append(Issue(study, str(exc), "error"))
            self.log(f"study {study}: failed: {exc}")
            if self.state:
                self.state.record(study, False)

    def _flush(self, group: list, summary: JobSummary, left: int) -> None:
        """Fetch, predict and store the instances of a group of planned studies."""
        if not group:
            return
        try:
            read = self._read([inst for _, todo, _, _ in group for inst in todo], summary)
        except PacsError as exc:  # transient: the PACS went away while fetching
            self._failed([w[0] for w in group], exc, summary)
            raise _Stop(left) from exc
        preds = {}
        if read:
            images = np.stack([self.predictor.prepare(gray) for _, _, gray in read])
            names = [inst.sop for inst, _, _ in read]
            preds = dict(zip(names, self.predictor.results_from_uint8(images, names, self.threshold)))
            maps = self._explain(images) if self.cam else None
        for n, (study, todo, numbers, n_left_out) in enumerate(group):
            mine = [(k, r) for k, r in enumerate(read) if r[0].study == study]
            before = len(summary.errors)
            try:
                out = [
                    structured_report(
                        preds[inst.sop],
                        list(self.predictor.classes),
                        header,
                        self.naming,
                        self.threshold,
                        self.predictor.temperature,
                        numbers[inst.sop],
                    )
                    for _, (inst, header, _) in mine
                ]
                if self.cam:
                    out += [self._overlay(maps, k, r, numbers) for k, r in mine]
                if out:
                    self._store(study, out)
            except PacsError as exc:
                self._failed([study], exc, summary)
                if exc.transient:
                    self._failed([w[0] for w in group[n + 1 :]], exc, summary)
                    raise _Stop(left) from exc
                continue
            summary.sr += len(mine)
            summary.overlays += len(mine) if self.cam else 0
            summary.done.append(study)
            if self.state:
                self.state.record(study, True)
            self.log(
                f"study {study}: {len(mine)} SR, {len(mine) if self.cam else 0} overlay(s), "
                f"{len(summary.errors) - before + len(todo) - len(mine)} error(s), {n_left_out} left out"
            )
            self._finished(study)

    def _store(self, study: str, out: list) -> None:
        response = self.conn.call(f"study {study}: STOW-RS", lambda: self.conn.client.store_instances(out, study))
        failed = response.get("FailedSOPSequence") or []
        if failed:
            raise PacsError(f"study {study}: PACS refused {len(failed)} of {len(out)} result object(s)")

    def _missing(self, plan) -> list[Instance]:
        """Eligible instances whose SR (or overlay, with cam) is not on the PACS yet."""
        kinds = ("SR", "CAM") if self.cam else ("SR",)
        have: set[str] = set()
        for kind in kinds:
            series = self.naming.series_uid(plan.study, kind)
            if series in plan.result_series:
                have |= existing_results(self.conn, plan.study, series)
        return [i for i in plan.eligible if any(self.naming.sop_uid(i.sop, k) not in have for k in kinds)]

    def _read(self, batch: list[Instance], summary: JobSummary) -> list:
        """(instance, header without pixels, decoded gray) for each readable instance, fetched by
        4 threads (the PACS round trip, not the CPU, bounds one fetch); bad ones become issues."""
        import pydicom

        with ThreadPoolExecutor(4, thread_name_prefix="cxr-wado") as pool:
            fetched = list(pool.map(self._fetch, batch))
        read = []
        for inst, raw in zip(batch, fetched):
            if isinstance(raw, PacsError):
                if raw.transient:
                    raise raw
                summary.issues.append(Issue(inst.sop, str(raw), "error"))
                continue
            try:
                gray = self.predictor.decode(raw, inst.sop)
            except Exception as exc:  # untrusted objects: one decoder bug must not stop the batch
                reason = getattr(exc, "reason", None) or f"cannot decode the image ({type(exc).__name__}: {exc})"
                summary.issues.append(Issue(inst.sop, reason, "error"))
                continue
            read.append((inst, pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True), gray))
        return read

    def _fetch(self, inst: Instance) -> bytes | PacsError:
        try:
            return retrieve_bytes(self.conn, inst)
        except PacsError as exc:
            return exc

    def _explain(self, images: np.ndarray):
        from ..explain import DEFAULT_METHOD, Explainer

        if self._explainer is None:
            self._explainer = Explainer(self.predictor, DEFAULT_METHOD)
        return self._explainer.explain(images)

    def _overlay(self, ex, i: int, item: tuple, numbers: dict[str, int]):
        from ..explain import overlay_figure

        inst, header, gray = item
        caption = f"{self._explainer.method} on layer {self._explainer.layer_name}; model {self.naming.model_id}"
        view = self.predictor.preprocessing.view(gray)  # roi: lungs: the maps cover the lung crop
        fig = overlay_figure(
            view, ex.maps[i], ex.classes[i], ex.probabilities[i], list(self.predictor.classes), caption
        )
        return overlay_image(figure_rgb(fig), header, self.naming, numbers[inst.sop])


def _card(predictor) -> dict:
    """The run's model card as a dict (a mapping today; an object with ``to_dict`` also works)."""
    card = getattr(getattr(predictor, "run", None), "card", None) or {}
    return card.to_dict() if hasattr(card, "to_dict") else dict(card)


class _Stop(Exception):
    """The PACS stayed unreachable: the job stops; ``left`` studies were not looked at."""

    def __init__(self, left: int):
        super().__init__(left)
        self.left = left


def watch(
    job: PacsJob,
    interval: float,
    cycles: int | None = None,
    since: str | None = None,
    max_attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> list[JobSummary]:
    """Poll every ``interval`` s; each cycle processes the studies not done yet and logs one line.

    While the PACS is unreachable the wait doubles, up to 16 x ``interval``; a study that fails
    ``max_attempts`` times for another reason is left alone (``--reprocess`` or a new state
    file tries again). ``cycles`` (tests, cron) stops after that many polls.
    """
    summaries, wait, cycle = [], interval, 0
    while cycles is None or cycle < cycles:
        cycle += 1
        try:
            studies = job.select(since=since)
            summary = job.run(studies, max_attempts=max_attempts)
        except PacsError as exc:
            summary = JobSummary(stopped=str(exc))
        summaries.append(summary)
        wait = min(wait * 2, 16 * interval) if summary.stopped else interval
        note = f"; PACS trouble: {summary.stopped}" if summary.stopped else ""
        job.log(f"cycle {cycle}: {summary.line()}{note}; next poll in {wait:g} s")
        if cycles is not None and cycle >= cycles:
            break
        sleep(wait)
    return summaries
