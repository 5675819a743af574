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
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import RESEARCH_NOTICE
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
        return (f"{len(self.done)} studies done, {len(self.already)} already had results, {len(self.failed)} failed; "
                f"{self.sr} SR, {self.overlays} overlays stored; {skipped} instances skipped, "
                f"{len(self.errors)} errors")

    def to_dict(self) -> dict:
        return {**asdict(self), "notice": RESEARCH_NOTICE}


class PacsJob:
    """One model against one PACS. ``log`` receives one line per study (UIDs only)."""

    def __init__(self, predictor, conn: Connection, state: JobState | None = None, cam: bool = False,
                 reprocess: bool = False, threshold: float | None = None, log: Callable[[str], None] = print,
                 after_study: Callable[[str], None] | None = None):
        self.predictor = predictor
        self.conn = conn
        self.cam = cam
        self.reprocess = reprocess
        self.threshold = predictor.threshold if threshold is None else threshold
        self.naming = ResultNaming(predictor.model_id, card_hash(predictor.run.card),
                                   uuid.uuid4().hex if reprocess else "")
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
        summary = JobSummary()
        for study in studies:
            if max_attempts and self.state and self.state.attempts(study) >= max_attempts:
                continue
            try:
                complete = self.process_study(study, summary, dry_run)
            except PacsError as exc:
                summary.failed.append(study)
                summary.issues.append(Issue(study, str(exc), "error"))
                self.log(f"study {study}: failed: {exc}")
                if self.state and not dry_run:
                    self.state.record(study, False)
                if exc.transient:
                    summary.stopped = f"{exc}; stopped with {len(studies) - studies.index(study) - 1} " \
                                      "studies left; rerun the same command to continue"
                    break
                continue
            if complete and not dry_run:
                self.handled.add(study)
                if self.state:
                    self.state.record(study, True)
            if self.after_study:
                self.after_study(study)
        return summary

    def process_study(self, study: str, summary: JobSummary, dry_run: bool) -> bool:
        """Plan and process one study; True when it has every result it can have."""
        plan = plan_study(self.conn, study)
        summary.issues += plan.issues
        todo = self._missing(plan)
        if dry_run:
            summary.planned[study] = len(todo)
            self.log(f"study {study}: would process {len(todo)} instance(s), {len(plan.issues)} left out")
            return False
        if not plan.eligible:
            summary.unreadable.append(study)
            self.log(f"study {study}: no instance the model may read ({len(plan.issues)} left out)")
            return True
        if not todo:
            summary.already.append(study)
            self.log(f"study {study}: nothing to do ({len(plan.eligible)} readable instance(s) already have "
                     f"results, {len(plan.issues)} left out)")
            return True
        numbers = {inst.sop: k + 1 for k, inst in enumerate(plan.eligible)}
        before = (summary.sr, summary.overlays, len(summary.errors))
        step = self.predictor.batch_size
        for start in range(0, len(todo), step):
            self._process_batch(todo[start:start + step], numbers, summary)
        summary.done.append(study)
        self.log(f"study {study}: {summary.sr - before[0]} SR, {summary.overlays - before[1]} overlay(s), "
                 f"{len(summary.errors) - before[2]} error(s), {len(plan.issues)} left out")
        return True

    def _missing(self, plan) -> list[Instance]:
        """Eligible instances whose SR (or overlay, with cam) is not on the PACS yet."""
        kinds = ("SR", "CAM") if self.cam else ("SR",)
        have: set[str] = set()
        for kind in kinds:
            series = self.naming.series_uid(plan.study, kind)
            if series in plan.result_series:
                have |= existing_results(self.conn, plan.study, series)
        return [i for i in plan.eligible if any(self.naming.sop_uid(i.sop, k) not in have for k in kinds)]

    def _process_batch(self, batch: list[Instance], numbers: dict[str, int], summary: JobSummary) -> None:
        import pydicom

        read = []
        for inst in batch:
            try:
                raw = retrieve_bytes(self.conn, inst)
            except PacsError as exc:
                if exc.transient:
                    raise
                summary.issues.append(Issue(inst.sop, str(exc), "error"))
                continue
            gray = self.predictor.try_decode(raw, inst.sop)
            if hasattr(gray, "reason"):  # a Failure: the reason names the decoding problem
                summary.issues.append(Issue(inst.sop, gray.reason, "error"))
                continue
            read.append((inst, pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True), gray))
        if not read:
            return
        images = np.stack([self.predictor.prepare(gray) for _, _, gray in read])
        preds = self.predictor.results_from_uint8(images, [inst.sop for inst, _, _ in read], self.threshold)
        out = [structured_report(p, list(self.predictor.classes), header, self.naming, self.threshold,
                                 self.predictor.temperature, numbers[inst.sop])
               for p, (inst, header, _) in zip(preds, read)]
        if self.cam:
            out += self._overlays(images, read, numbers)
        study = batch[0].study
        response = self.conn.call(f"study {study}: STOW-RS", lambda: self.conn.client.store_instances(out, study))
        failed = response.get("FailedSOPSequence") or []
        if failed:
            raise PacsError(f"study {study}: PACS refused {len(failed)} of {len(out)} result object(s)")
        summary.sr += len(preds)
        summary.overlays += len(out) - len(preds)

    def _overlays(self, images: np.ndarray, read: list, numbers: dict[str, int]) -> list:
        from ..explain import DEFAULT_METHOD, Explainer, overlay_figure

        if self._explainer is None:
            self._explainer = Explainer(self.predictor, DEFAULT_METHOD)
        ex = self._explainer.explain(images)
        caption = f"{self._explainer.method} on layer {self._explainer.layer_name}; model {self.naming.model_id}"
        return [overlay_image(figure_rgb(overlay_figure(gray, ex.maps[i], ex.classes[i], ex.probabilities[i],
                                                        list(self.predictor.classes), caption)),
                              header, self.naming, numbers[inst.sop])
                for i, (inst, header, gray) in enumerate(read)]


def watch(job: PacsJob, interval: float, cycles: int | None = None, since: str | None = None,
          max_attempts: int = 3, sleep: Callable[[float], None] = time.sleep) -> list[JobSummary]:
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
