"""The platform's RunContext: reports go to the database and the websocket layer.

The training thread only appends to memory. One background thread per run wakes about twice a
second and, in one transaction fenced by (run, attempt), writes the batch of metric rows and log
lines, the progress and the heartbeat, and reads the cancel flag; then it sends the batch's websocket
events. If the run no longer belongs to this attempt, the context stops the training loop.
"""

from __future__ import annotations

import asyncio
import math
import logging
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, close_old_connections, connection
from django.utils import timezone

from apps.experiments import services
from apps.experiments.events import events_send
from apps.experiments.services import RunReport
from worker.runtime.context import ARTIFACT_KINDS, RunContext
from worker.runtime.storage import upload_file, upload_folder_zip

logger = logging.getLogger(__name__)


class PlatformRunContext(RunContext):
    def __init__(
        self, *, run_id: int, attempt: int, seed: int, work_dir: Path, cache_dir: Path, gpus: int = 0,
    ):
        super().__init__(seed=seed, work_dir=work_dir, cache_dir=cache_dir, gpus=gpus)
        self.run_id = run_id
        self.attempt = attempt
        self.checkpoint_interval = settings.CHECKPOINT_INTERVAL
        self._lock = threading.Lock()
        self._report = RunReport()
        self._uploads: list[tuple[Path, str, dict, bool]] = []  # path, kind, metadata, is_checkpoint
        self._cancelled = False
        self.lost_ownership = False
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, name=f"run-{run_id}-flusher", daemon=True)
        self._thread.start()

    # Hot path: memory only --------------------------------------------------------------------------

    def log_metrics(self, step: int, **values: float) -> None:
        now = timezone.now()
        finite = {key: float(value) for key, value in values.items() if math.isfinite(float(value))}
        for key in values.keys() - finite.keys():
            # A diverged loss is worth a line in the log; it cannot be a point on a chart.
            self.log(f"{key} is {values[key]} at step {step}: not recorded as a metric", level="warning")
        with self._lock:
            self._report.metrics.extend((key, int(step), value, now) for key, value in finite.items())
            self._report.current_step = int(step)

    def progress(self, done: float, total: float, message: str = "") -> None:
        with self._lock:
            self._report.progress = done / total if total else 0.0
            self._report.progress_message = message

    def log(self, message: str, level: str = "info") -> None:
        logger.info("run %s: %s", self.run_id, message)
        with self._lock:
            self._report.log_lines.append((timezone.now(), level, message))

    def log_artifact(self, path: Path, *, kind: str, metadata: dict[str, Any] | None = None) -> None:
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"Unknown artifact kind {kind!r}; expected one of {ARTIFACT_KINDS}.")
        with self._lock:
            self._uploads.append((Path(path), kind, metadata or {}, False))
        self._wake.set()

    def _checkpoint_saved(self, step: int) -> None:
        with self._lock:
            self._uploads.append((self.checkpoint_dir, "checkpoint", {"step": step}, True))
        self._wake.set()

    def should_stop(self) -> bool:
        return self._cancelled or self.lost_ownership

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    # Background thread -----------------------------------------------------------------------------

    def _flush_loop(self) -> None:
        # The flusher has its own event loop for channel-layer sends, kept for the run's lifetime.
        loop = asyncio.new_event_loop()
        try:
            while not self._closing.is_set():
                self._wake.wait(settings.RUN_FLUSH_INTERVAL)
                self._wake.clear()
                self._flush_once(loop)
            self._flush_once(loop)
        finally:
            loop.close()
            connection.close()

    def _flush_once(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            uploads, self._uploads = self._uploads, []
        try:
            close_old_connections()
            if not self._report_pending(loop):
                return
            for path, kind, metadata, is_checkpoint in uploads:
                self._upload(path, kind, metadata, is_checkpoint, loop)
        except Exception:
            # A database hiccup must not kill training: try the uploads again next tick.
            logger.exception("run %s: flush failed, retrying", self.run_id)
            with self._lock:
                self._uploads = uploads + self._uploads

    def _report_pending(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Record what was reported since the last time; False once another worker owns the run.

        A batch the database refuses (it would fail again) is dropped; on any other failure it is put
        back, before what was reported meanwhile, and the error raised.
        """
        with self._lock:
            report, self._report = self._report, RunReport()
        try:
            outcome = services.run_report(run_id=self.run_id, attempt=self.attempt, report=report)
        except (IntegrityError, DataError):
            logger.exception("run %s: a report batch was refused by the database and dropped", self.run_id)
            return True
        except Exception:
            with self._lock:
                report.metrics.extend(self._report.metrics)
                report.log_lines.extend(self._report.log_lines)
                if self._report.progress is not None:
                    report.progress, report.progress_message = self._report.progress, self._report.progress_message
                self._report = report
            raise
        if not outcome.owned:
            self.lost_ownership = True
            return False
        events_send(run_id=self.run_id, events=outcome.events, loop=loop)
        self._cancelled = self._cancelled or outcome.cancel_requested
        return True

    def _upload(self, path: Path, kind: str, metadata: dict, is_checkpoint: bool, loop: asyncio.AbstractEventLoop) -> None:
        if is_checkpoint:
            step = metadata["step"]
            name = f"checkpoint-{step:06d}.zip"
            storage_path, size, sha256 = upload_folder_zip(path, f"runs/{self.run_id}/checkpoints/{name}")
            # The folder may have moved on since it was marked: the zip can hold a later step, whose
            # metrics were reported before it was saved but may not be recorded yet. Record them before
            # the checkpoint, so a run resumed from it has every step's metrics.
            if not self._report_pending(loop):
                return
        else:
            name = str(path.relative_to(self.artifacts_dir)) if path.is_relative_to(self.artifacts_dir) else path.name
            storage_path, size, sha256 = upload_file(path, f"runs/{self.run_id}/artifacts/{name}")
        services.artifact_register(
            run_id=self.run_id, attempt=self.attempt, name=name, kind=kind, storage_path=storage_path,
            size=size, sha256=sha256, metadata=metadata,
        )
        if is_checkpoint:
            services.checkpoints_prune(run_id=self.run_id, keep=settings.CHECKPOINTS_KEPT)

    def close(self) -> None:
        if self._thread.is_alive():
            self._closing.set()
            self._wake.set()
            self._thread.join(timeout=60)

