"""Lunar lander through the real platform: a tiny DQN run on the session's Celery worker, its metrics,
video and model; an action at once, a rollout video on the batch queue; incremental and test runs that
start from it."""

from __future__ import annotations

import pytest

from apps.experiments.models import Run, RunStatus
from tests.conftest import wait_for
from tests.integration.test_worker import wait_for_status

pytestmark = [pytest.mark.worker, pytest.mark.tf, pytest.mark.django_db(transaction=True)]

TINY = {
    "episodes": 3,
    "memory_size": 500,
    "max_steps": 100,
    "test_episodes": 1,
    "video_every_episodes": 2,
    "metrics_every_steps": 20,
}


def download(api, url: str, **headers) -> tuple[int, bytes]:
    response = api.get(url, **headers)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, content


def assert_playable_mp4(content: bytes) -> None:
    assert content[4:8] == b"ftyp"
    assert content.index(b"moov") < content.index(b"mdat")  # faststart: browsers seek before the end arrives
    assert b"avc1" in content[: content.index(b"mdat")]  # H.264


def test_tiny_run_trains_then_predicts_rolls_out_continues_and_tests(celery_worker, api, other_api):
    response = api.post("/api/v1/runs/", {"pipeline": "lunar_lander", "params": TINY}, format="json")
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    run = wait_for_status(run_id, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=300)
    assert run.status == RunStatus.SUCCEEDED, run.error + run.traceback
    assert run.progress == 1.0 and run.dataset is None
    assert run.params["hidden_layers"] == [32, 32] and run.params["epsilon_start"] == 1.0  # resolved and stored

    metrics = api.get(f"/api/v1/runs/{run_id}/metrics/").json()
    for key in ("score", "score_avg100", "steps", "epsilon", "env_steps_per_second"):
        assert [point["step"] for point in metrics[key]] == [1, 2, 3], key
    assert [point["value"] for point in metrics["epsilon"]] == pytest.approx([1.0, 0.9994, 0.9994**2])
    assert metrics["loss"] and metrics["q_max"] and metrics["q_mean"]
    assert "test_score_mean" in metrics

    artifacts = {a["name"]: a for a in api.get(f"/api/v1/runs/{run_id}/artifacts/").json()}
    assert {"videos/episode-000002.mp4", "videos/final.mp4", "score.png", "loss.png", "q_values.png",
            "epsilon_steps.png", "episodes.csv", "model.zip"} <= set(artifacts)
    assert artifacts["videos/final.mp4"]["kind"] == "video"
    status, video = download(api, artifacts["videos/final.mp4"]["download_url"])
    assert status == 200
    assert_playable_mp4(video)
    status, part = download(api, artifacts["videos/final.mp4"]["download_url"], HTTP_RANGE="bytes=0-99")
    assert (status, part) == (206, video[:100])
    assert run.artifacts.filter(kind="checkpoint").exists()

    detail = api.get(f"/api/v1/runs/{run_id}/").json()
    model_id = detail["model_version"]["id"]
    state = [0.0, 1.4, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0]
    answer = api.post(f"/api/v1/models/{model_id}/predict/", {"state": state}, format="json")
    assert answer.status_code == 200, answer.content
    assert set(answer.json()) == {"action", "q_values"}
    assert answer.json()["action"] in range(4) and len(answer.json()["q_values"]) == 4
    wrong = api.post(f"/api/v1/models/{model_id}/predict/", {"state": [0.0, 1.0]}, format="json")
    assert wrong.status_code == 400
    assert wrong.json()["message"] == "state: expected 8 numbers, got 2"

    # A rollout is slow by nature: 202, then poll; its video is stored and served to its owner only.
    accepted = api.post(f"/api/v1/models/{model_id}/predict/", {"rollout": {"seed": 3}}, format="json")
    assert accepted.status_code == 202, accepted.content

    def finished():
        body = api.get(accepted.json()["url"]).json()
        return body if body["status"] in ("succeeded", "failed") else None

    prediction = wait_for(finished, timeout=120, interval=0.3, message="the rollout")
    assert prediction["status"] == "succeeded", prediction["error"]
    outputs = prediction["outputs"]
    assert outputs["seed"] == 3 and 1 <= outputs["steps"] <= 100
    video_url = outputs["files"]["video"]
    assert video_url == f"/api/v1/predictions/{prediction['id']}/files/video.mp4"
    status, rollout_video = download(api, video_url)
    assert status == 200
    assert_playable_mp4(rollout_video)
    assert download(api, video_url, HTTP_RANGE="bytes=10-19") == (206, rollout_video[10:20])
    assert other_api.get(video_url).status_code == 404
    assert api.get(f"/api/v1/predictions/{prediction['id']}/files/other.mp4").status_code == 404

    # Incremental: the parent's weights, epsilon 0.01, a fresh memory; a new version of the model.
    child = api.post(
        "/api/v1/runs/",
        {"pipeline": "lunar_lander", "params": {**TINY, "mode": "incremental", "episodes": 2}, "parent": run_id},
        format="json",
    )
    assert child.status_code == 201, child.json()
    child_run = wait_for_status(child.json()["id"], {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=240)
    assert child_run.status == RunStatus.SUCCEEDED, child_run.error + child_run.traceback
    assert child_run.log_lines.filter(message="starting from the parent run's weights").exists()
    assert child_run.metrics.get(key="epsilon", step=1).value == pytest.approx(0.01)
    assert api.get(f"/api/v1/runs/{child_run.pk}/").json()["model_version"]["version"] == 2

    # Test: greedy episodes of the parent's network; it learns nothing and registers no model.
    tested = api.post(
        "/api/v1/runs/",
        {"pipeline": "lunar_lander", "params": {"mode": "test", "episodes": 2, "max_steps": 100}, "parent": run_id},
        format="json",
    )
    tested_run = wait_for_status(tested.json()["id"], {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=240)
    assert tested_run.status == RunStatus.SUCCEEDED, tested_run.error + tested_run.traceback
    test_metrics = api.get(f"/api/v1/runs/{tested_run.pk}/metrics/").json()
    scores = [point["value"] for point in test_metrics["score"]]
    assert test_metrics["test_score_mean"][0]["value"] == pytest.approx(sum(scores) / 2)
    assert "loss" not in test_metrics
    assert api.get(f"/api/v1/runs/{tested_run.pk}/").json()["model_version"] is None
    assert api.post(f"/api/v1/models/{model_id}/predict/", {"state": state}, format="json").json() == answer.json()


def test_test_mode_without_a_parent_fails_with_a_clear_reason(celery_worker, api):
    response = api.post("/api/v1/runs/", {"pipeline": "lunar_lander", "params": {"mode": "test"}}, format="json")
    run = wait_for_status(response.json()["id"], {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=120)
    assert run.status == RunStatus.FAILED
    assert "mode: 'test' needs a parent run" in Run.objects.get(pk=run.pk).error


def test_a_run_whose_worker_is_killed_resumes_the_episode_count_on_a_new_worker(tmp_path, settings, monkeypatch, user):
    from apps.experiments import services
    from tests.integration.test_recovery import platform
    from tests.integration.test_recovery import wait_for_status as wait_on_platform

    # CartPole's short episodes; a checkpoint after each (the private platform's interval is 0).
    params = {"env_id": "CartPole-v1", "episodes": 100, "memory_size": 300, "max_steps": 40, "test_episodes": 1,
              "video_every_episodes": 0}
    with platform(tmp_path, settings, monkeypatch) as owned:
        first = owned.start_worker("worker-a")
        owned.start_beat()
        run = services.run_submit(user=user, pipeline="lunar_lander", params=params)
        wait_for(
            lambda: run.artifacts.filter(kind="checkpoint", metadata__step__gte=3).exists(),
            timeout=180, interval=0.2, message="a checkpoint after episode 3",
        )
        owned.kill(first)
        owned.start_worker("worker-b")
        finished = wait_on_platform(run.pk, {RunStatus.SUCCEEDED, RunStatus.FAILED}, timeout=300, platform=owned)

    assert finished.status == RunStatus.SUCCEEDED, finished.error
    assert finished.attempt == 2 and finished.resumed_from_step >= 3
    # The checkpoint is zipped a moment after it is marked, so it may hold a later episode than its label.
    resumed = finished.log_lines.get(attempt=2, message__startswith="resuming after episode")
    resumed_episode = int(resumed.message.split()[3])
    assert resumed_episode >= finished.resumed_from_step
    # The second attempt played only the episodes after its checkpoint; each episode is recorded once.
    second_attempt_episodes = finished.log_lines.filter(attempt=2, message__startswith="episode: ").count()
    assert second_attempt_episodes == 100 - resumed_episode
    steps = sorted(finished.metrics.filter(key="score").values_list("step", flat=True))
    assert steps == list(range(1, 101))
