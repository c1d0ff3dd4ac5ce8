"""The Keras callback through which a Keras pipeline reports to its RunContext.

Per batch it only checks the cancel flag (an attribute read) and updates progress in memory; per epoch
it logs the epoch's metrics and saves a checkpoint (the full model, optimizer state included, so a
resumed attempt continues exactly where this one stopped).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:
    from worker.runtime.context import RunContext

CHECKPOINT_MODEL_FILE = "model.keras"


class RunContextCallback(keras.callbacks.Callback):
    def __init__(self, ctx: RunContext, *, epochs: int, checkpoint_every: int = 1):
        super().__init__()
        self.ctx = ctx
        self.epochs = epochs
        self.checkpoint_every = checkpoint_every
        self._epoch = 0
        self._steps_per_epoch = 0
        self._interrupted = False  # stopped part-way through an epoch
        self._last_checkpoint = time.monotonic()

    def on_train_begin(self, logs=None):
        self._steps_per_epoch = int(self.params.get("steps") or 0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.ctx.should_stop():
            self.model.stop_training = True
            self._interrupted = self._interrupted or batch + 1 < self._steps_per_epoch
        if self._steps_per_epoch:
            done = self._epoch + (batch + 1) / self._steps_per_epoch
            self.ctx.progress(done, self.epochs, f"epoch {self._epoch + 1}/{self.epochs}")

    def on_epoch_end(self, epoch, logs=None):
        step = epoch + 1
        if self._interrupted:
            # Keras still validates and reports a cut-short epoch; its numbers are not an epoch's.
            self.ctx.log(f"epoch {step}/{self.epochs} interrupted: not recorded")
            return
        values = {key: float(value) for key, value in (logs or {}).items() if _is_number(value)}
        self.ctx.log_metrics(step, **values)
        self.ctx.progress(step, self.epochs, f"epoch {step}/{self.epochs}")
        summary = ", ".join(f"{key}={value:.4f}" for key, value in values.items())
        self.ctx.log(f"epoch {step}/{self.epochs}: {summary}")
        due = time.monotonic() - self._last_checkpoint >= self.ctx.checkpoint_interval
        if not self.ctx.should_stop() and ((due and step % self.checkpoint_every == 0) or step == self.epochs):
            self.model.save(self.ctx.checkpoint_dir / CHECKPOINT_MODEL_FILE)
            self.ctx.save_checkpoint(step, epoch=step)
            self._last_checkpoint = time.monotonic()


def resume_epoch(ctx: RunContext) -> tuple[keras.Model | None, int]:
    """The checkpointed model and the epoch to continue from, or (None, 0) with no checkpoint."""
    state = ctx.checkpoint_state()
    model_file = ctx.checkpoint_dir / CHECKPOINT_MODEL_FILE
    if not state or not model_file.exists():
        return None, 0
    ctx.log(f"resuming from the checkpoint after epoch {state['epoch']}")
    return keras.models.load_model(model_file), int(state["epoch"])


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
