"""A RunContext for plain Python: a notebook, a script, a pipeline's unit tests.

Metrics go to `<work_dir>/metrics.jsonl` and memory (`ctx.metrics`), log lines to stdout and
`<work_dir>/run.log`, progress to a tqdm bar. Cancel by calling `ctx.cancel()` (from another thread).
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from worker.runtime.context import ARTIFACT_KINDS, RunContext


class LocalRunContext(RunContext):
    def __init__(
        self,
        *,
        seed: int = 0,
        work_dir: Path | None = None,
        cache_dir: Path | None = None,
        show_progress: bool = True,
        gpus: int = 0,
    ):
        work_dir = Path(work_dir or tempfile.mkdtemp(prefix="dlsite-run-"))
        super().__init__(seed=seed, work_dir=work_dir, cache_dir=cache_dir or work_dir / "cache", gpus=gpus)
        self.metrics: dict[str, dict[int, float]] = {}
        self.artifacts: list[tuple[Path, str, dict[str, Any]]] = []
        self.checkpoints: list[int] = []
        self.log_lines: list[str] = []
        self._stop = threading.Event()
        self._show_progress = show_progress
        self._bar: tqdm | None = None
        self._metrics_file = (self.work_dir / "metrics.jsonl").open("a")
        self._log_file = (self.work_dir / "run.log").open("a")

    def log_metrics(self, step: int, **values: float) -> None:
        for key, value in values.items():
            self.metrics.setdefault(key, {})[step] = float(value)
        row = {"step": step, "time": time.time(), **{k: float(v) for k, v in values.items()}}
        self._metrics_file.write(json.dumps(row) + "\n")
        self._metrics_file.flush()

    def progress(self, done: float, total: float, message: str = "") -> None:
        if not self._show_progress:
            return
        if self._bar is None or self._bar.total != total:
            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=total, file=sys.stderr, dynamic_ncols=True, unit="step")
        self._bar.n = round(done, 2)
        self._bar.set_description(message, refresh=False)
        self._bar.refresh()

    def log(self, message: str, level: str = "info") -> None:
        line = f"[{level}] {message}"
        self.log_lines.append(line)
        self._log_file.write(line + "\n")
        self._log_file.flush()
        if self._show_progress:
            tqdm.write(line, file=sys.stderr)

    def log_artifact(self, path: Path, *, kind: str, metadata: dict[str, Any] | None = None) -> None:
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"Unknown artifact kind {kind!r}; expected one of {ARTIFACT_KINDS}.")
        self.artifacts.append((Path(path), kind, metadata or {}))

    def _checkpoint_saved(self, step: int) -> None:
        self.checkpoints.append(step)

    def cancel(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        for handle in (self._metrics_file, self._log_file):
            if not handle.closed:
                handle.close()
