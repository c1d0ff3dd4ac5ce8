"""The runner hands a run's GPU count to the RunContext its pipeline trains with."""

from __future__ import annotations

import pytest

from apps.experiments.models import RunStatus
from tests.apps.factories import make_run
from worker.runtime import runner

pytestmark = pytest.mark.django_db


class ContextMade(Exception):
    pass


def test_the_context_gets_the_runs_gpus(user, monkeypatch):
    run = make_run(user, status=RunStatus.QUEUED, gpus=2, queue="training-multi")
    made = []

    def record(**options):
        made.append(options)
        raise ContextMade

    monkeypatch.setattr(runner, "PlatformRunContext", record)
    with pytest.raises(ContextMade):
        runner.run_execute(run_id=run.pk, attempt=1)

    assert [options["gpus"] for options in made] == [2]
