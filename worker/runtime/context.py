"""RunContext: the only door between a pipeline and whatever runs it.

A pipeline reports metrics, progress, log lines, checkpoints and artifacts through a RunContext and
asks it whether to stop. `LocalRunContext` (worker.runtime.local) runs a pipeline from a plain Python
shell or a test, writing to a folder with a progress bar; `PlatformRunContext`
(worker.runtime.platform) writes to the database and the websocket layer. Both keep the training loop's
calls cheap: they only append to memory.

This module imports neither Django nor TensorFlow.
"""

from __future__ import annotations

import json
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

ARTIFACT_KINDS = ("model", "checkpoint", "plot", "samples", "video", "report", "log")
CHECKPOINT_STATE_FILE = "checkpoint.json"


class RunContext(ABC):
    """What a pipeline may ask of the platform while it trains."""

    def __init__(self, *, seed: int, work_dir: Path, cache_dir: Path, gpus: int = 0):
        self.seed = seed
        self.gpus = gpus  # how many GPUs the run asked for; see distribution_strategy()
        self._distribution_strategy = None
        self.work_dir = Path(work_dir)
        self.cache_dir = Path(cache_dir)
        self.artifacts_dir = self.work_dir / "artifacts"
        self.checkpoint_dir = self.work_dir / "checkpoint"
        # A trained model folder to start from instead of a fresh model (the parent run's, when a
        # run continues another); a checkpoint of this run, when there is one, takes precedence.
        self.initial_model_dir: Path | None = None
        # Seconds between checkpoints (0: after every epoch). Saving a model with its optimizer state
        # costs a fraction of a second: worth it every minute, not after every 4-second epoch.
        self.checkpoint_interval = 0.0
        for folder in (self.artifacts_dir, self.checkpoint_dir, self.cache_dir):
            folder.mkdir(parents=True, exist_ok=True)

    # Reporting -------------------------------------------------------------------------------------

    @abstractmethod
    def log_metrics(self, step: int, **values: float) -> None:
        """Record metric values at `step` (an epoch, an episode, ...). Repeating a step replaces it."""

    @abstractmethod
    def progress(self, done: float, total: float, message: str = "") -> None:
        """Report how far the run is, in the pipeline's own units (epochs, episodes)."""

    @abstractmethod
    def log(self, message: str, level: str = "info") -> None:
        """A line for the run's log."""

    @abstractmethod
    def log_artifact(self, path: Path, *, kind: str, metadata: dict[str, Any] | None = None) -> None:
        """Publish a file written under `artifacts_dir` (a plot, a report, ...)."""

    # Cancellation ----------------------------------------------------------------------------------

    @abstractmethod
    def should_stop(self) -> bool:
        """True once the run was cancelled; check at least once per batch or episode."""

    # Checkpoints -----------------------------------------------------------------------------------

    def save_checkpoint(self, step: int, **state: Any) -> None:
        """Mark what the pipeline wrote into `checkpoint_dir` as the checkpoint after `step`."""
        payload = {"step": step, **state}
        (self.checkpoint_dir / CHECKPOINT_STATE_FILE).write_text(json.dumps(payload))
        self._checkpoint_saved(step)

    def checkpoint_state(self) -> dict[str, Any] | None:
        """The state saved with the latest checkpoint in `checkpoint_dir`, or None to start afresh."""
        state_file = self.checkpoint_dir / CHECKPOINT_STATE_FILE
        if not state_file.exists():
            return None
        return json.loads(state_file.read_text())

    def _checkpoint_saved(self, step: int) -> None:
        """Hook for contexts that copy checkpoints elsewhere (the platform's artifact store)."""

    # Devices ---------------------------------------------------------------------------------------

    def distribution_strategy(self) -> Any:
        """The tf.distribute strategy to build and compile models under (`with strategy.scope():`).

        A run that asks for more than one GPU gets a MirroredStrategy over the first `gpus` GPUs this
        process sees (a worker for such runs is started with all of its host's GPUs visible); any other
        run gets TensorFlow's default strategy, on its one GPU or the CPU. Created once per context.
        """
        if self._distribution_strategy is None:
            import tensorflow as tf  # only when a pipeline trains

            visible = [device.name for device in tf.config.list_logical_devices("GPU")] if self.gpus else []
            devices = visible[: self.gpus]
            if len(devices) < self.gpus:
                where = f"{len(devices)} GPU{'s' if len(devices) > 1 else ''}" if devices else "the CPU"
                self.log(f"the run asks for gpus={self.gpus}; this worker sees {len(visible)}: training on {where}",
                         level="warning")
            if len(devices) > 1:
                self._distribution_strategy = tf.distribute.MirroredStrategy(devices=devices)
            else:
                self._distribution_strategy = tf.distribute.get_strategy()
        return self._distribution_strategy

    # Keras -----------------------------------------------------------------------------------------

    def keras_callbacks(self, *, epochs: int, checkpoint_every: int = 1) -> list[Any]:
        """Keras callbacks that feed metrics, progress, cancellation and checkpoints to this context."""
        from worker.runtime.keras import RunContextCallback  # imports Keras: only when training

        return [RunContextCallback(self, epochs=epochs, checkpoint_every=checkpoint_every)]

    # Lifetime --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush what is pending. Safe to call twice."""

    def clear_work_dir(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
