"""Fixtures of the traffic_signs pipeline tests: the tiny GTSRB folder and one trained model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

GTSRB_TINY = Path(__file__).resolve().parents[3] / "fixtures" / "gtsrb_tiny"


@pytest.fixture
def gtsrb_tiny() -> Path:
    """3 classes (0, 14, 33) x 4 small .ppm images; GT csv files for 0 and 14 only. Read-only."""
    return GTSRB_TINY


@pytest.fixture
def gtsrb_copy(tmp_path: Path) -> Path:
    """A writable copy of gtsrb_tiny, for tests that break it."""
    return Path(shutil.copytree(GTSRB_TINY, tmp_path / "upload"))


@pytest.fixture(scope="session")
def synthetic_tiny(tmp_path_factory) -> tuple[Path, str]:
    """The built-in synthetic_signs dataset with 4 images per class (172 images)."""
    from worker.pipelines.traffic_signs.synthetic import build_synthetic_signs

    return build_synthetic_signs(tmp_path_factory.mktemp("cache"), seed=101, images_per_class=4)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synthetic_tiny):
    """One epoch on synthetic_tiny: (context, result), shared by the tests that need a model."""
    from worker.pipelines.base import DatasetRef, get_pipeline
    from worker.runtime.local import LocalRunContext

    pipeline = get_pipeline("traffic_signs")
    params = pipeline.resolve_params({"epochs": 1, "images_per_class": 4})
    folder, sha256 = synthetic_tiny
    ctx = LocalRunContext(seed=params.seed, work_dir=tmp_path_factory.mktemp("run"), show_progress=False)
    result = pipeline.train(ctx, DatasetRef(folder, "gtsrb", "synthetic_signs", sha256), params)
    ctx.close()
    return ctx, result
