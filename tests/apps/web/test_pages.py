"""The HTML pages through Django's test client: who sees what (another user's run, dataset or model is
a 404, as over REST), the forms (new run with inline errors, cancel, promote, share, sign-up) and the
static files the pages need (plotly.js from the installed wheel)."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from apps.datasets.models import Dataset
from apps.experiments.models import Artifact, LogLine, Metric, Run, RunStatus
from apps.registry.models import ModelAlias
from tests.apps.factories import make_artifact, make_model_version, make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def other_browser(client, other_user):
    from django.test import Client

    other = Client()
    other.force_login(other_user)
    return other


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# Signing in -----------------------------------------------------------------------------------------


def test_pages_ask_anonymous_visitors_to_sign_in(client):
    for path in ["/", "/datasets/", "/runs/new/", "/runs/1/", "/compare/?runs=1,2", "/models/", "/chat/1/"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/login/?next="), path


def test_login_page_signs_in_with_username_and_password(client, user):
    page = client.get("/login/")
    assert page.status_code == 200
    assert 'name="username"' in page.content.decode() and 'name="password"' in page.content.decode()
    wrong = client.post("/login/", {"username": "alice", "password": "nope"})
    assert wrong.status_code == 200 and "Please enter a correct username and password" in text_of(wrong)
    signed_in = client.post("/login/", {"username": "alice", "password": "alice-password"})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/"
    assert client.get("/").status_code == 200
    signed_out = client.post("/logout/")
    assert signed_out.status_code == 302 and signed_out["Location"] == "/login/"
    assert client.get("/").status_code == 302


def test_sign_up_is_off_by_default(client, settings):
    settings.SIGNUP_ENABLED = False
    assert client.get("/signup/").status_code == 404
    assert "Sign up" not in client.get("/login/").content.decode()


def test_sign_up_when_enabled(client, settings, django_user_model):
    settings.SIGNUP_ENABLED = True
    assert "/signup/" in client.get("/login/").content.decode()
    mismatch = client.post("/signup/", {"username": "carol", "password1": "a-long-passphrase-1", "password2": "other"})
    assert mismatch.status_code == 200 and "didn’t match" in mismatch.content.decode()
    created = client.post("/signup/", {"username": "carol", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"})
    assert created.status_code == 302 and created["Location"] == "/"
    assert django_user_model.objects.filter(username="carol").exists()
    assert client.get("/").status_code == 200  # signed in at once


# Dashboard ------------------------------------------------------------------------------------------


def test_dashboard_lists_my_runs_only_and_follows_unfinished_ones(browser, user, other_user):
    running = make_run(user, status=RunStatus.RUNNING, progress=0.25)
    done = make_run(user, status=RunStatus.SUCCEEDED, progress=1.0)
    theirs = make_run(other_user, experiment="secret-experiment")
    page = text_of(browser.get("/"))
    assert f'href="/runs/{running.pk}/"' in page and f'href="/runs/{done.pk}/"' in page
    assert f'href="/runs/{theirs.pk}/"' not in page and "secret-experiment" not in page
    assert f'data-live-run="{running.pk}"' in page and f'data-live-run="{done.pk}"' not in page
    assert 'aria-valuenow="25"' in page
    assert "No worker has reported" in page  # no heartbeat in this test


def test_dashboard_empty_state(browser):
    page = text_of(browser.get("/"))
    assert "No runs yet." in page and "No experiments yet" in page


def test_dashboard_shows_each_queues_waiting_messages_and_workers(browser, settings):
    import redis

    queue = "web-test-queue"  # consumed by no worker, not even the tests' own
    settings.QUEUES = ["training", queue]
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(queue)
    client.rpush(queue, "first", "second")
    try:
        page = text_of(browser.get("/"))
    finally:
        client.delete(queue)

    assert re.search(rf'<tr id="queue-{queue}"> <td>{queue}</td> <td>2</td> <td><span class="error">none: its jobs wait', page)


def test_dashboard_says_when_redis_does_not_answer(browser, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    page = text_of(browser.get("/"))

    assert '<tr id="queue-training"> <td>training</td> <td><span class="error">Redis does not answer</span>' in page


# Datasets -------------------------------------------------------------------------------------------


def gtsrb_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for class_id, colour in ((0, "red"), (14, "blue")):
            image = io.BytesIO()
            Image.new("RGB", (40, 30), colour).save(image, format="PNG")
            archive.writestr(f"{class_id:05d}/00000_00000.png", image.getvalue())
            archive.writestr(f"{class_id:05d}/GT-{class_id:05d}.csv", "Filename;Width;Height;ClassId\n00000_00000.png;40;30;0\n")
    return buffer.getvalue()


def make_uploaded_dataset(owner) -> Dataset:
    dataset = Dataset.objects.create(owner=owner, name="my signs", kind="gtsrb", status=Dataset.Status.READY,
                                     stats={"images": 2, "classes": 2})
    dataset.storage_path = default_storage.save(f"datasets/{dataset.pk}/upload.zip", ContentFile(gtsrb_zip()))
    dataset.save()
    return dataset


def test_dataset_pages_show_samples_and_respect_ownership(browser, other_browser, user):
    dataset = make_uploaded_dataset(user)
    listing = text_of(browser.get("/datasets/"))
    assert f'href="/datasets/{dataset.pk}/"' in listing and 'id="upload-form"' in listing
    page = text_of(browser.get(f"/datasets/{dataset.pk}/"))
    assert "00000/00000_00000.png" in page and "00014/00000_00000.png" in page
    assert "Filename" in page  # the GT csv's first rows
    thumbnail = browser.get(f"/datasets/{dataset.pk}/samples/1.png")
    assert thumbnail.status_code == 200 and thumbnail["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(thumbnail.content)).getpixel((0, 0)) == (0, 0, 255)  # 00014 is blue
    assert browser.get(f"/datasets/{dataset.pk}/samples/2.png").status_code == 404
    assert other_browser.get(f"/datasets/{dataset.pk}/").status_code == 404
    assert other_browser.get(f"/datasets/{dataset.pk}/samples/0.png").status_code == 404
    assert other_browser.post(f"/datasets/{dataset.pk}/delete/").status_code == 404
    assert browser.post(f"/datasets/{dataset.pk}/delete/").status_code == 302
    assert not Dataset.objects.filter(pk=dataset.pk).exists()


# New run --------------------------------------------------------------------------------------------


def test_new_run_form_is_generated_from_the_params_schema(browser):
    page = browser.get("/runs/new/?pipeline=traffic_signs").content.decode()
    epochs = re.search(r'<input type="number" id="param-epochs"[^>]*>', page).group(0)
    assert 'value="10"' in epochs and 'min="1"' in epochs and 'max="1000"' in epochs and 'step="1"' in epochs
    rate = re.search(r'<input type="number" id="param-learning_rate"[^>]*>', page).group(0)
    assert 'value="0.001"' in rate and 'step="any"' in rate
    assert '<option value="yuv_y">' in page and '<option value="lab_l" selected>' in page
    assert 'type="checkbox" id="param-roi_crop"' in page
    assert "book: max_epochs" in page  # the help text names the book's setting


def test_new_run_form_opens_on_traffic_signs(browser):
    page = browser.get("/runs/new/").content.decode()
    assert '<option value="traffic_signs" selected>' in page
    assert 'id="param-color_mode"' in page


def test_new_run_shows_field_errors_inline_and_queues_nothing(browser, sent_tasks):
    response = browser.post("/runs/new/", {
        "pipeline": "traffic_signs", "param-epochs": "0", "param-batch_size": "many", "experiment": "",
    })
    assert response.status_code == 400
    page = text_of(response)
    assert "Invalid parameters." in page
    assert re.search(r'id="param-epochs-error">Input should be greater than 0<', page)
    assert re.search(r'id="param-batch_size-error">Input should be a valid integer', page)
    assert re.search(r'id="param-batch_size"[^>]*value="many"', page)  # what was typed stays
    assert Run.objects.count() == 0 and sent_tasks == []


def test_new_run_submits_and_redirects_to_its_page(browser, user, sent_tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post("/runs/new/", {
            "pipeline": "traffic_signs", "param-epochs": "2", "param-images_per_class": "5", "param-roi_crop": "on",
            "param-learning_rate": "", "experiment": "tiny signs", "dataset": "builtin:synthetic_signs",
        })
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.owner == user and run.experiment.name == "tiny signs" and run.dataset.slug == "builtin:synthetic_signs"
    assert run.params["epochs"] == 2 and run.params["images_per_class"] == 5 and run.params["roi_crop"] is True
    assert run.params["learning_rate"] == 0.001 and run.params["color_mode"] == "lab_l"  # empty: the default
    assert [name for name, _, _ in sent_tasks] == ["worker.tasks.run_train"]


def test_run_again_prefills_the_form(browser, user, other_browser):
    run = make_run(user, status=RunStatus.SUCCEEDED, params={"epochs": 3, "color_mode": "yuv_y", "roi_crop": True},
                   experiment="mine")
    page = browser.get(f"/runs/new/?from={run.pk}").content.decode()
    assert re.search(r'id="param-epochs"[^>]*value="3"', page)
    assert '<option value="yuv_y" selected>' in page and re.search(r'id="param-roi_crop"[^>]*checked', page)
    assert 'name="experiment" value="mine"' in page
    assert other_browser.get(f"/runs/new/?from={run.pk}").status_code == 404


def test_experiment_of_another_pipeline_is_an_inline_error(browser, user):
    make_run(user, experiment="taken", pipeline="external")
    response = browser.post("/runs/new/", {"pipeline": "traffic_signs", "experiment": "taken"})
    assert response.status_code == 400
    assert "Experiment &#x27;taken&#x27; holds external runs." in text_of(response)


# Run page -------------------------------------------------------------------------------------------


def test_run_page_shows_everything_and_is_the_owners_only(browser, other_browser, user):
    run = make_run(user, status=RunStatus.SUCCEEDED, progress=1.0, params={"epochs": 1}, seed=101,
                   code_version="abc123", dataset_hash="f" * 64, package_versions={"tensorflow-cpu": "2.21.0"})
    make_artifact(run, name="confusion_matrix.png", content=b"\x89PNG...", kind=Artifact.Kind.PLOT)
    LogLine.objects.create(run=run, attempt=1, time=run.created_at, message="epoch 1/1: loss=1.0")
    model = make_model_version(user, name="traffic_signs", run=run)
    page = text_of(browser.get(f"/runs/{run.pk}/"))
    assert 'id="run-status" class="status status-succeeded"' in page and ">succeeded<" in page
    assert "abc123" in page and "f" * 64 in page and "tensorflow-cpu==2.21.0" in page
    assert "confusion_matrix.png" in page and "epoch 1/1: loss=1.0" in page
    assert f'href="/models/#model-{model.pk}"' in page and f'href="/runs/new/?from={run.pk}"' in page
    assert "/static/vendor/plotly.min.js" in page
    assert 'id="cancel-form"' not in page  # finished
    not_theirs = other_browser.get(f"/runs/{run.pk}/")
    assert not_theirs.status_code == 404 and "belongs to someone else" in text_of(not_theirs)
    assert other_browser.post(f"/runs/{run.pk}/cancel/").status_code == 404


def test_cancel_from_the_run_page(browser, user):
    run = make_run(user, status=RunStatus.QUEUED)
    assert 'id="cancel-form"' in browser.get(f"/runs/{run.pk}/").content.decode()
    response = browser.post(f"/runs/{run.pk}/cancel/", follow=True)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert f"Cancel requested for run #{run.pk}." in text_of(response)
    again = browser.post(f"/runs/{run.pk}/cancel/", follow=True)
    assert f"Run {run.pk} already cancelled." in text_of(again)


# Compare --------------------------------------------------------------------------------------------


def test_compare_highlights_differences_and_overlays_metrics(browser, user, other_user, other_browser):
    first = make_run(user, status=RunStatus.SUCCEEDED, params={"epochs": 1, "seed": 101}, latest_metrics={"test_accuracy": 0.5})
    second = make_run(user, status=RunStatus.SUCCEEDED, params={"epochs": 2, "seed": 101}, latest_metrics={"test_accuracy": 0.75})
    for run, values in ((first, [1.0]), (second, [1.0, 0.5])):
        for step, value in enumerate(values, start=1):
            Metric.objects.create(run=run, key="loss", step=step, value=value, time=run.created_at)
    response = browser.get(f"/compare/?runs={first.pk},{second.pk}")
    assert response.status_code == 200
    page = text_of(response)
    differing = re.findall(r'<tr class="differs" data-differs="true"><th scope="row">(\w+)', page)
    assert differing == ["epochs"]
    assert "0.5000" in page and "0.7500" in page
    assert response.context["histories"] == {
        str(first.pk): {"loss": [{"step": 1, "value": 1.0}]},
        str(second.pk): {"loss": [{"step": 1, "value": 1.0}, {"step": 2, "value": 0.5}]},
    }
    theirs = make_run(other_user)
    assert browser.get(f"/compare/?runs={first.pk},{theirs.pk}").status_code == 404
    assert other_browser.get(f"/compare/?runs={first.pk},{second.pk}").status_code == 404


def test_compare_needs_two_runs_of_one_pipeline(browser, user):
    run = make_run(user)
    external = make_run(user, experiment="elsewhere", pipeline="external")
    pick = browser.get(f"/compare/?runs={run.pk}")
    assert pick.status_code == 200 and f'id="pick-{run.pk}" checked' in pick.content.decode()
    mixed = browser.get(f"/compare/?runs={run.pk},{external.pk}")
    assert mixed.status_code == 400
    assert "different pipelines (external, traffic_signs)" in text_of(mixed)


# Models ---------------------------------------------------------------------------------------------


def test_models_page_promotes_shares_and_includes_the_pipeline_panel(browser, other_browser, user, other_user):
    model = make_model_version(user, name="signs")
    page = text_of(browser.get("/models/"))
    assert f'id="model-{model.pk}"' in page and f'id="try-{model.pk}-file"' in page  # traffic_signs.html
    assert f'"/api/v1/models/{model.pk}/predict/"' in page
    assert "<script src=\"/static/vendor/plotly.min.js\"></script>" in page
    assert other_browser.get("/models/").content.decode().count(f'id="model-{model.pk}"') == 0

    promoted = browser.post(f"/models/{model.pk}/update/", {"promote": "production"})
    assert promoted.status_code == 302 and promoted["Location"] == f"/models/#model-{model.pk}"
    assert list(ModelAlias.objects.filter(model_version=model).values_list("alias", flat=True)) == ["production"]
    assert other_browser.post(f"/models/{model.pk}/update/", {"promote": "x"}).status_code == 404

    unknown = browser.post(f"/models/{model.pk}/update/", {"visibility": "shared", "shared_with": "nobody"}, follow=True)
    assert "Unknown users: nobody." in text_of(unknown)
    browser.post(f"/models/{model.pk}/update/", {"visibility": "shared", "shared_with": "bob"})
    model.refresh_from_db()
    assert model.visibility == "shared" and [u.username for u in model.shared_with.all()] == ["bob"]
    shared = text_of(other_browser.get("/models/"))
    assert f'id="model-{model.pk}"' in shared and "by alice" in shared
    assert f'id="promote-{model.pk}"' not in shared  # only the owner changes it


def test_a_pipeline_without_its_own_panel_gets_the_generic_one(browser, user):
    model = make_model_version(user, name="other", pipeline="no_such_pipeline_panel")
    page = browser.get("/models/").content.decode()
    assert f'id="try-{model.pk}-input"' in page and f'id="try-{model.pk}-file"' in page


PANELS = sorted(path.stem for path in (Path(__file__).resolve().parents[3] / "templates/web/try").glob("[!_]*.html"))


@pytest.mark.parametrize("pipeline", PANELS)
def test_each_pipelines_own_panel_is_on_the_models_page(browser, user, pipeline):
    template = (Path(__file__).resolve().parents[3] / f"templates/web/try/{pipeline}.html").read_text()
    element_ids = re.findall(r'id="try-\{\{ model\.(?:pk|id) \}\}-([\w-]+)"', template)
    model = make_model_version(user, name=f"{pipeline}-model", pipeline=pipeline)

    page = browser.get("/models/").content.decode()

    assert element_ids, f"templates/web/try/{pipeline}.html names no try-<id>- element"
    for element_id in element_ids:
        assert f'id="try-{model.pk}-{element_id}"' in page


def test_models_empty_state(browser):
    assert "No models yet." in text_of(browser.get("/models/"))


# Chat -----------------------------------------------------------------------------------------------


def test_chat_page(browser, other_browser, user):
    chatbot = make_model_version(user, name="bot", pipeline="chatbot")
    signs = make_model_version(user, name="signs", pipeline="traffic_signs")
    page = browser.get(f"/chat/{chatbot.pk}/").content.decode()
    assert 'id="chat-form"' in page and f'data-model="{chatbot.pk}"' in page
    refused = text_of(browser.get(f"/chat/{signs.pk}/"))
    assert "is not a chatbot" in refused and 'id="chat-form"' not in refused
    assert other_browser.get(f"/chat/{chatbot.pk}/").status_code == 404


# Static files ---------------------------------------------------------------------------------------


def test_plotly_is_served_from_the_installed_wheel(client):
    found = finders.find("vendor/plotly.min.js")
    assert found is not None and found.endswith("plotly/package_data/plotly.min.js")
    assert finders.find("vendor/widgetbundle.js") is None  # only the named files of the package
    assert [path for path, _ in finders.get_finder("apps.web.staticfiles.PackagedFilesFinder").list([])] == ["plotly.min.js"]


def test_no_page_loads_anything_from_another_site(browser, user):
    run = make_run(user)
    model = make_model_version(user)
    for path in ["/", "/datasets/", "/runs/new/", f"/runs/{run.pk}/", "/compare/", "/models/", f"/chat/{model.pk}/", "/login/"]:
        page = browser.get(path).content.decode()
        assert not re.search(r'(src|href)="(https?:)?//', page), path
