"""Fixtures of the lunar_lander pipeline tests: tiny runs (a few episodes, a small memory)."""

from __future__ import annotations

import pytest

# A few short episodes of the book's agent: learning starts within the first episode.
TINY = {
    "episodes": 3,
    "memory_size": 500,
    "test_episodes": 2,
    "video_every_episodes": 2,
    "max_steps": 120,
    "metrics_every_steps": 20,
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The book's agent for 3 short LunarLander episodes: (context, result), shared by several tests."""
    from worker.pipelines.base import get_pipeline
    from worker.runtime.local import LocalRunContext

    pipeline = get_pipeline("lunar_lander")
    params = pipeline.resolve_params(TINY)
    ctx = LocalRunContext(seed=params.seed, work_dir=tmp_path_factory.mktemp("run"), show_progress=False)
    result = pipeline.train(ctx, None, params)
    ctx.close()
    return ctx, result
