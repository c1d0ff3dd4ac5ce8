"""Fixtures of the stock_forecast tests: tiny CSVs in the real formats, the tiny cosine, one trained model."""

from __future__ import annotations

from pathlib import Path

import pytest

# Quandl WIKI layout, newest first as its CSV endpoint serves it; Adj. Close differs from Close.
WIKI_TINY = """\
Date,Open,High,Low,Close,Volume,Ex-Dividend,Split Ratio,Adj. Open,Adj. High,Adj. Low,Adj. Close,Adj. Volume
2017-01-10,62.73,63.07,62.28,62.62,18593004.0,0.0,1.0,62.73,63.07,62.28,60.5,18593004.0
2017-01-09,62.76,63.08,62.54,62.64,20382730.0,0.0,1.0,62.76,63.08,62.54,60.25,20382730.0
2017-01-06,62.3,63.15,62.04,62.84,19922919.0,0.0,1.0,62.3,63.15,62.04,61.0,19922919.0
2017-01-05,62.19,62.66,62.03,62.3,24876968.0,0.0,1.0,62.19,62.66,62.03,60.0,24876968.0
2017-01-04,62.48,62.75,62.12,62.3,21340039.0,0.0,1.0,62.48,62.75,62.12,59.5,21340039.0
2017-01-03,62.79,62.84,62.125,62.58,20694101.0,0.0,1.0,62.79,62.84,62.125,59.75,20694101.0
2016-12-30,62.96,62.99,62.03,62.14,25579908.0,0.0,1.0,62.96,62.99,62.03,59.0,25579908.0
"""


@pytest.fixture
def wiki_tiny(tmp_path: Path) -> Path:
    """A folder holding a 7-day WIKI CSV; ascending Adj. Close 59.0, 59.75, 59.5, 60.0, 61.0, 60.25, 60.5."""
    folder = tmp_path / "wiki"
    folder.mkdir()
    (folder / "WIKI-MSFT.csv").write_text(WIKI_TINY)
    return folder


def csv_folder(tmp_path: Path, content: str, name: str = "prices.csv") -> Path:
    folder = tmp_path / "upload"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(content)
    return folder


TINY_PARAMS = {"epochs": 3, "units": 4, "cosine_points": 80, "train_size": 40, "window": 8}


@pytest.fixture(scope="session")
def cosine_tiny(tmp_path_factory) -> tuple[Path, str]:
    """The built-in cosine with 80 points (the book's generator, seed 101)."""
    from worker.pipelines.base import get_pipeline

    pipeline = get_pipeline("stock_forecast")
    params = pipeline.resolve_params({"preset": "cosine", **TINY_PARAMS})
    return pipeline.builtin_dataset("cosine").build(tmp_path_factory.mktemp("cache"), params)


def train_tiny(work_dir: Path, dataset: tuple[Path, str], context_class=None, **overrides):
    """Train on the tiny cosine: (context, result)."""
    from worker.pipelines.base import DatasetRef, get_pipeline
    from worker.runtime.local import LocalRunContext

    pipeline = get_pipeline("stock_forecast")
    params = pipeline.resolve_params({"preset": "cosine", **TINY_PARAMS, **overrides})
    ctx = (context_class or LocalRunContext)(seed=params.seed, work_dir=work_dir, show_progress=False)
    folder, sha256 = dataset
    result = pipeline.train(ctx, DatasetRef(folder, "price_csv", "builtin:cosine", sha256), params)
    ctx.close()
    return ctx, result


@pytest.fixture(scope="session")
def trained(tmp_path_factory, cosine_tiny):
    """An LSTM of 4 units, 3 epochs on the tiny cosine: (context, result)."""
    return train_tiny(tmp_path_factory.mktemp("run"), cosine_tiny, model="lstm")
