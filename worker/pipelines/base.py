"""The contract between the platform and a pipeline, and the registry of pipelines.

The platform knows about pipelines only through this module. Importing it, listing pipelines, their
Params schemas and their dataset kinds must stay cheap: no TensorFlow, no Django. A pipeline package
exposes one `pipeline` object; Keras code lives in modules the pipeline imports inside `train` and
`load`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from worker.runtime.context import RunContext

# Names every pipeline uses for the same idea, whatever the book called it (the book's name goes in
# the field description).
CANONICAL_PARAM_NAMES = (
    "epochs",
    "episodes",
    "batch_size",
    "learning_rate",
    "seed",
    "model",
    "mode",
    "preset",
)


class Params(BaseModel):
    """Base of every pipeline's parameters: unknown fields are errors, defaults are the book's."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ParamsError(ValueError):
    """Invalid parameters, with messages per field (the REST error shape's `errors`)."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("Invalid parameters.")
        self.errors = errors


@dataclass(frozen=True)
class DatasetKind:
    """A dataset format a pipeline accepts as an upload.

    `inspect` names a function `"module:function"` taking the extracted upload folder and returning
    JSON-serialisable statistics, or raising ValueError with a message naming the file that is wrong.
    It is a string so that listing kinds imports nothing.
    """

    name: str
    title: str
    description: str
    inspect: str

    def run_inspect(self, folder: Path) -> dict[str, Any]:
        module_name, function_name = self.inspect.split(":")
        return getattr(importlib.import_module(module_name), function_name)(folder)


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset generated offline or read from an installed package, named `builtin:<name>`.

    `build(cache_root, params)` makes (or finds, cached) the dataset under `cache_root` and returns
    its folder and a content hash, so runs record exactly which data they saw. `stats` are what the
    kind's `inspect` would return for it, known without building it, for `Pipeline.check_dataset`.
    """

    name: str
    kind: str
    title: str
    description: str
    build: Callable[[Path, Params], tuple[Path, str]]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetRef:
    """What `train` receives: a local folder in one of the pipeline's dataset kinds."""

    path: Path
    kind: str
    name: str
    sha256: str


@dataclass
class TrainResult:
    """What `train` returns: the book's evaluation metrics and the folder holding the model."""

    metrics: dict[str, float]
    model_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictInput:
    """Inputs of one prediction: uploaded files by field name, and JSON fields."""

    files: dict[str, bytes] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


class Predictor(Protocol):
    def predict(self, inputs: PredictInput) -> dict[str, Any]:
        """JSON-serialisable output; ValueError for input the model cannot take."""


class Pipeline(ABC):
    """One book project. Subclasses set the class attributes and implement train and load."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Params]]
    dataset_kinds: ClassVar[tuple[DatasetKind, ...]] = ()
    builtin_datasets: ClassVar[tuple[BuiltinDataset, ...]] = ()
    default_dataset: ClassVar[str | None] = None
    # "sync": answered within a request (inference queue); "async": long by nature (batch queue,
    # answered 202 and polled).
    predict_mode: ClassVar[Literal["sync", "async"]] = "sync"

    def predict_mode_for(self, inputs: PredictInput) -> Literal["sync", "async"]:
        """The mode of one prediction; pipelines whose inputs differ in cost (a state's action at once,
        a whole rollout on the batch queue) override this. An async predictor may name files it wrote
        in its output's "files" ({name: local path}): the platform stores them and answers their URLs."""
        return self.predict_mode

    def params_schema(self) -> dict[str, Any]:
        return self.Params.model_json_schema()

    def resolve_params(self, raw: dict[str, Any] | None) -> Params:
        """Validate raw params and fill defaults; raises ParamsError with messages per field."""
        if raw is not None and not isinstance(raw, dict):
            raise ParamsError({"params": ["Expected an object of parameter names to values."]})
        try:
            return self.Params.model_validate(raw or {})
        except ValidationError as error:
            raise ParamsError(_errors_by_field(error)) from None

    def check_dataset(self, params: Params, *, kind: str, stats: dict[str, Any]) -> None:
        """Refuse, before anything is queued, params that cannot work on a dataset of `kind`.

        `stats` are what the kind's `inspect` stored at upload (a built-in dataset's `stats`); a check
        judges only what they settle and leaves the rest to `train`. Raises ParamsError with messages
        per field. Runs in the web process: nothing heavy may be imported. By default all is accepted.
        """

    def dataset_kind(self, name: str) -> DatasetKind | None:
        return next((kind for kind in self.dataset_kinds if kind.name == name), None)

    def builtin_dataset(self, name: str) -> BuiltinDataset | None:
        return next((dataset for dataset in self.builtin_datasets if dataset.name == name), None)

    @abstractmethod
    def train(self, ctx: RunContext, dataset: DatasetRef, params: Params) -> TrainResult:
        """Train on `dataset`, reporting through `ctx`; the model goes under `ctx.artifacts_dir`."""

    @abstractmethod
    def load(self, model_dir: Path) -> Predictor:
        """A predictor for a model folder that `train` wrote."""


def _errors_by_field(error: ValidationError) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "params"
        message = "Unknown parameter." if item["type"] == "extra_forbidden" else item["msg"]
        errors.setdefault(location, []).append(message)
    return errors


# name -> module exposing `pipeline`. Modules are imported on first use, each cheap (no TF).
PIPELINE_MODULES: dict[str, str] = {
    "traffic_signs": "worker.pipelines.traffic_signs",
    "recommender": "worker.pipelines.recommender",
    "lunar_lander": "worker.pipelines.lunar_lander",
    "chatbot": "worker.pipelines.chatbot",
    "stock_forecast": "worker.pipelines.stock_forecast",
}


def pipeline_names() -> list[str]:
    return sorted(PIPELINE_MODULES)


def get_pipeline(name: str) -> Pipeline:
    """The registered pipeline called `name`; KeyError if there is none."""
    module_name = PIPELINE_MODULES[name]
    return importlib.import_module(module_name).pipeline


def all_pipelines() -> list[Pipeline]:
    return [get_pipeline(name) for name in pipeline_names()]


def all_builtin_datasets() -> list[BuiltinDataset]:
    """Every built-in dataset of every pipeline, once each."""
    seen: dict[str, BuiltinDataset] = {}
    for pipeline in all_pipelines():
        for dataset in pipeline.builtin_datasets:
            seen.setdefault(dataset.name, dataset)
    return list(seen.values())
