"""Pages of GET /api/v1/runs/: keyset cursors in `next` and `previous` links, no total count; `offset`
still works for clients that use it."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.experiments.models import Run, RunStatus
from tests.apps.factories import make_run
from tests.apps.test_api import assert_error_shape

pytestmark = pytest.mark.django_db


def get_page(api, url: str) -> dict:
    response = api.get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    return body


def ids(body: dict) -> list[int]:
    return [run["id"] for run in body["results"]]


def walk(api, url: str, link: str = "next") -> list[list[int]]:
    """The ids of every page from `url` on, following `link`."""
    pages = []
    while url:
        body = get_page(api, url)
        pages.append(ids(body))
        url = body[link]
    return pages


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlparse(url).query)


@pytest.fixture
def seven_runs(user, other_user) -> list[Run]:
    """Seven runs of the user, oldest first, a minute apart; and one of another user."""
    start = timezone.now() - timedelta(hours=1)
    runs = []
    for index in range(7):
        run = make_run(user, experiment="a" if index % 2 else "b", status=RunStatus.SUCCEEDED if index % 3 else RunStatus.FAILED)
        Run.objects.filter(pk=run.pk).update(created_at=start + timedelta(minutes=index))
        runs.append(run)
    make_run(other_user)
    return runs


def test_pages_forward_and_back(api, seven_runs):
    newest_first = [run.pk for run in reversed(seven_runs)]

    first = get_page(api, "/api/v1/runs/?limit=3")
    assert ids(first) == newest_first[:3]
    assert first["previous"] is None
    assert first["next"].startswith("http://testserver/api/v1/runs/?")
    assert query_of(first["next"])["limit"] == ["3"]

    second = get_page(api, first["next"])
    assert ids(second) == newest_first[3:6]
    third = get_page(api, second["next"])
    assert ids(third) == newest_first[6:]
    assert third["next"] is None

    back = get_page(api, third["previous"])
    assert ids(back) == newest_first[3:6]
    assert ids(get_page(api, back["next"])) == newest_first[6:]
    front = get_page(api, back["previous"])
    assert ids(front) == newest_first[:3]
    assert front["previous"] is None
    assert ids(get_page(api, front["next"])) == newest_first[3:6]


def test_an_exact_last_page_has_no_next(api, seven_runs):
    assert walk(api, "/api/v1/runs/?limit=7") == [[run.pk for run in reversed(seven_runs)]]
    assert [len(page) for page in walk(api, "/api/v1/runs/?limit=1")] == [1] * 7


def test_oldest_first_and_filters_carry_over(api, seven_runs):
    failed_a_or_b = [run.pk for run in seven_runs if run.status == RunStatus.FAILED]
    assert walk(api, "/api/v1/runs/?order_by=created&status=failed&limit=2") == [failed_a_or_b[:2], failed_a_or_b[2:]]
    in_a = [run.pk for run in reversed(seven_runs) if run.experiment.name == "a"]
    assert walk(api, "/api/v1/runs/?experiment=a&limit=2") == [in_a[:2], in_a[2:]]
    oldest_first = [run.pk for run in seven_runs]
    pages = walk(api, "/api/v1/runs/?order_by=created&limit=3")
    assert pages == [oldest_first[:3], oldest_first[3:6], oldest_first[6:]]
    last = get_page(api, "/api/v1/runs/?order_by=created&limit=3")
    last = get_page(api, get_page(api, last["next"])["next"])
    assert walk(api, last["previous"], link="previous") == [oldest_first[3:6], oldest_first[:3]]


def test_runs_created_in_the_same_microsecond_page_by_id(api, user):
    runs = [make_run(user) for _ in range(5)]
    Run.objects.update(created_at=timezone.now())
    by_id = sorted((run.pk for run in runs), reverse=True)
    assert walk(api, "/api/v1/runs/?limit=2") == [by_id[:2], by_id[2:4], by_id[4:]]
    assert walk(api, "/api/v1/runs/?limit=2&order_by=created") == [by_id[::-1][:2], by_id[::-1][2:4], by_id[::-1][4:]]


def test_a_new_run_does_not_shift_the_next_page(api, seven_runs, user):
    first = get_page(api, "/api/v1/runs/?limit=3")
    make_run(user)
    assert ids(get_page(api, first["next"])) == [run.pk for run in reversed(seven_runs)][3:6]


@pytest.mark.parametrize("order_by", ["-metric:val_accuracy", "metric:val_accuracy"])
@pytest.mark.parametrize("limit", [1, 2, 3, 10])
def test_metric_orders_page_with_runs_without_the_metric_last(api, user, order_by, limit):
    values = [0.5, 0.9, None, 0.7, None, 0.9, 0.1]
    runs = [make_run(user, latest_metrics={} if value is None else {"val_accuracy": value}) for value in values]
    expected = [run.pk for run in sorted(runs, key=lambda run: -run.pk)]  # ties by id, newest first
    with_metric = [pk for pk in expected if Run.objects.get(pk=pk).latest_metrics]
    with_metric.sort(key=lambda pk: Run.objects.get(pk=pk).latest_metrics["val_accuracy"], reverse=order_by.startswith("-"))
    expected = with_metric + [pk for pk in expected if pk not in with_metric]

    pages = walk(api, f"/api/v1/runs/?order_by={order_by}&limit={limit}")
    assert [pk for page in pages for pk in page] == expected
    assert all(len(page) == limit for page in pages[:-1])

    url, last = f"/api/v1/runs/?order_by={order_by}&limit={limit}", None
    while url:
        last = get_page(api, url)
        url = last["next"]
    backwards = walk(api, last["previous"], link="previous") if last["previous"] else []
    assert [pk for page in reversed(backwards) for pk in page] + ids(last) == expected


def test_offset_still_works(api, seven_runs):
    newest_first = [run.pk for run in reversed(seven_runs)]
    body = get_page(api, "/api/v1/runs/?limit=2&offset=1")
    assert ids(body) == newest_first[1:3]
    assert query_of(body["next"])["offset"] == ["3"]
    assert query_of(body["previous"])["offset"] == ["0"]
    assert walk(api, "/api/v1/runs/?limit=3&offset=0") == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    assert get_page(api, "/api/v1/runs/?offset=50")["results"] == []


def test_a_page_is_one_query_and_never_a_count(api, seven_runs):
    first = get_page(api, "/api/v1/runs/?limit=3")
    cases = [
        ("/api/v1/runs/?limit=3", 2), (first["next"], 2), ("/api/v1/runs/?status=failed", 2),
        ("/api/v1/runs/?order_by=-metric:loss", 3),  # the runs sorted alone, then the page's rows joined
    ]
    for url, count in cases:
        with CaptureQueriesContext(connection) as queries:
            get_page(api, url)
        assert len(queries) == count, [query["sql"] for query in queries]  # the token first
        assert not any("COUNT(" in query["sql"].upper() for query in queries)


@pytest.mark.parametrize(
    "query, field",
    [
        ("?cursor=not-a-cursor", "cursor"),
        ("?cursor=WyJjcmVhdGVkIiwxLDIsZmFsc2Vd", "cursor"),  # ["created",1,2,false]: no time
        ("?limit=0", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=1001", "limit"),
        ("?offset=-1", "offset"),
        ("?offset=1&cursor=abc", "offset"),
    ],
)
def test_bad_page_queries(api, seven_runs, query, field):
    assert_error_shape(api.get(f"/api/v1/runs/{query}"), 400, field)


def test_a_cursor_belongs_to_its_order(api, seven_runs):
    cursor = query_of(get_page(api, "/api/v1/runs/?limit=2")["next"])["cursor"][0]
    response = api.get(f"/api/v1/runs/?cursor={cursor}&order_by=created")
    assert assert_error_shape(response, 400, "cursor")["errors"] == {
        "cursor": ["Use the cursor of a next or previous link, with the same order_by."]
    }
