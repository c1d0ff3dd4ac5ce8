"""Params that cannot work on the chosen dataset are refused at submit (Pipeline.check_dataset), over
REST and in the new-run form, before a run row is written or a task sent."""

from __future__ import annotations

import re

import pytest

from apps.datasets.models import Dataset
from apps.experiments.models import Run
from tests.apps.test_api import assert_error_shape

pytestmark = pytest.mark.django_db

# What inspect_online_retail stores for the Online Retail sample of December 2010.
RETAIL_SAMPLE_STATS = {
    "rows_read": 39528,
    "returns_dropped": 680,
    "unknown_customer_rows": 13729,
    "rows": 38848,
    "users": 860,
    "items": 2771,
    "baskets": 1594,
    "first": "2010-12-01 08:26:00",
    "last": "2010-12-20 16:11:00",
    "rows_at_first": 7,
    "users_with_two_or_more": 834,
}
BOOK_DATES_ON_THE_SAMPLE = (
    "split=dates: the validation set would be empty: nothing from 2011-10-09 to 2011-11-09 "
    "(the data spans 2010-12-01 08:26..2010-12-20 16:11)."
)


@pytest.fixture
def retail_sample(user):
    return Dataset.objects.create(
        owner=user, name="retail december", kind="online_retail", status=Dataset.Status.READY, stats=RETAIL_SAMPLE_STATS
    )


def test_an_empty_validation_split_is_a_400_naming_the_split(api, retail_sample, sent_tasks):
    response = api.post(
        "/api/v1/runs/",
        {"pipeline": "recommender", "dataset": retail_sample.pk, "params": {"model": "popularity", "split": "dates"}},
        format="json",
    )

    body = assert_error_shape(response, 400, "params.split", "params.train_end")
    assert body == {
        "message": "Invalid parameters for this dataset.",
        "errors": {"params.split": [BOOK_DATES_ON_THE_SAMPLE], "params.train_end": [BOOK_DATES_ON_THE_SAMPLE]},
    }
    assert not Run.objects.exists()
    assert sent_tasks == []


def test_the_default_split_of_the_same_dataset_is_accepted(
    api, retail_sample, sent_tasks, django_capture_on_commit_callbacks
):
    payload = {"pipeline": "recommender", "dataset": retail_sample.pk, "params": {"model": "popularity"}}
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/runs/", payload, format="json")
    assert response.status_code == 201, response.content
    assert Run.objects.get().params["split"] == "auto"
    assert [name for name, _, _ in sent_tasks] == ["worker.tasks.run_train"]


def test_a_builtin_dataset_is_checked_with_the_statistics_its_pipeline_declares(api, sent_tasks):
    split = {"split": "dates", "train_end": "1990-01-01", "validation_end": "1991-01-01"}
    response = api.post("/api/v1/runs/", {"pipeline": "recommender", "params": split}, format="json")

    body = assert_error_shape(response, 400, "params.split", "params.train_end")
    assert body["errors"]["params.split"] == [
        "split=dates: the train set would be empty: nothing before train_end 1990-01-01 "
        "(the data spans 1995-01-09 11:46..2016-10-16 17:57)."
    ]
    assert not Run.objects.exists()
    assert sent_tasks == []


def test_the_new_run_form_shows_the_split_error_inline(client, user, retail_sample, sent_tasks):
    client.force_login(user)
    response = client.post("/runs/new/?pipeline=recommender", {
        "pipeline": "recommender", "dataset": str(retail_sample.pk), "param-model": "popularity",
        "param-split": "dates", "experiment": "",
    })

    assert response.status_code == 400
    page = response.content.decode()
    assert "Invalid parameters for this dataset." in page
    assert re.search(r'id="param-split-error">split=dates: the validation set would be empty', page)
    assert re.search(r'id="param-train_end-error">split=dates: the validation set would be empty', page)
    assert not Run.objects.exists()
    assert sent_tasks == []
