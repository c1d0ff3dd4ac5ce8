"""The web UI in a real browser: Playwright driving Debian's Chromium against a live uvicorn serving
dlsite.asgi (HTTP and websockets), with the session's real Celery worker training tiny traffic-sign
runs. A user signs in, submits a run from the form, watches its progress bar move and its loss chart
grow without a reload, finds the confusion matrix in the gallery, classifies an image in the model's
try-it panel, runs it again and compares the two runs; another user gets a 404 on the run's page.
Screenshots of the main pages go to var/test-output/screenshots/.

Skipped, with the reason, where Chromium or Playwright is missing (`make test` installs Chromium with
apt-get when it can).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from tests.apps.factories import make_model_version, make_run
from tests.conftest import FIXTURES, REPO_ROOT, database_url_for_tests, wait_for
from tests.e2e.test_embedded_demo import free_port
from tests.integration.test_worker import TINY, sign_png, zip_of

CHROMIUM = os.environ.get("DLSITE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = REPO_ROOT / "var" / "test-output" / "screenshots"
TRAIN_TIMEOUT_MS = 180_000

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("Playwright is not installed (pip install playwright)", allow_module_level=True)
if not Path(CHROMIUM).exists():  # pragma: no cover - depends on the machine
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set DLSITE_CHROMIUM)", allow_module_level=True)

# Assertions wait for what they expect up to this long: a busy test machine predicts and trains slowly.
expect.set_options(timeout=30_000)

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.tf, pytest.mark.django_db(transaction=True)]

# Records, from before the page's own scripts run, every value the run page's progress bar and loss
# chart take, so the test can tell that they changed in place (and that the page never reloaded).
OBSERVER = """
window.observed = {progress: [], lossPoints: []};
document.addEventListener("DOMContentLoaded", () => {
  const progress = document.getElementById("run-progress");
  if (progress) new MutationObserver(() => window.observed.progress.push(Number(progress.getAttribute("aria-valuenow"))))
    .observe(progress, {attributes: true, attributeFilter: ["aria-valuenow"]});
  const charts = document.getElementById("charts");
  if (charts) new MutationObserver(() => {
    const loss = document.getElementById("chart-loss");
    const points = loss ? Number(loss.dataset.points) : 0;
    const seen = window.observed.lossPoints;
    if (points && seen[seen.length - 1] !== points) seen.push(points);
  }).observe(charts, {attributes: true, subtree: true, childList: true, attributeFilter: ["data-points"]});
});
"""


class WebServer:
    """A uvicorn process serving dlsite.asgi on `port`, against the test database and the worker's Redis;
    it can be stopped and started again on the same port (a restart, as the browser sees it)."""

    def __init__(self, database_url: str, port: int, log_path: Path):
        self.port, self.log_path = port, log_path
        self.base = f"http://127.0.0.1:{port}"
        self.env = dict(
            os.environ, DATABASE_URL=database_url, REDIS_URL=settings.REDIS_URL,
            DLSITE_DATA_DIR=str(settings.DATA_DIR), PYTHONUNBUFFERED="1",
        )
        self.process = None

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "dlsite.asgi:application", "--host", "127.0.0.1",
                 "--port", str(self.port), "--lifespan", "off", "--ws", "websockets-sansio",
                 "--ws-per-message-deflate", "false"],
                cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )

        def up():
            assert self.process.poll() is None, f"uvicorn exited:\n{self.log_path.read_text()[-3000:]}"
            try:
                return httpx.get(f"{self.base}/api/v1/health/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, interval=0.2, message="uvicorn to serve")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def database_url(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        return database_url_for_tests()


@pytest.fixture(scope="module")
def web_server(database_url, celery_worker, tmp_path_factory):
    server = WebServer(database_url, free_port(), tmp_path_factory.mktemp("web") / "uvicorn.log")
    server.start()
    yield server.base
    server.stop()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-password")


@pytest.fixture
def chromium():
    """The browser. Tests ask for it last: rows are made before Playwright's event loop runs in this
    thread (Django refuses the ORM in an async context, and a connection opened there would outlive
    the test)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, base: str, *, width: int = 1280, height: int = 900, signed_in_as=None):
    """A page in a new browser context; `signed_in_as`: another page whose session cookie it shares."""
    state = signed_in_as.context.storage_state() if signed_in_as is not None else None
    context = browser.new_context(base_url=base, viewport={"width": width, "height": height}, storage_state=state)
    context.set_default_timeout(30_000)
    context.add_init_script(OBSERVER)
    return context.new_page()


def sign_in(page, username: str, password: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/$"))


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def wait_for_status(page, status: str) -> None:
    page.wait_for_function(
        "status => document.getElementById('run-status').textContent === status", arg=status, timeout=TRAIN_TIMEOUT_MS
    )


def test_train_watch_classify_and_compare_in_the_browser(web_server, alice, chromium):
    page = new_page(chromium, web_server)
    sign_in(page, "alice", "alice-password")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    shot(page, "dashboard-empty")

    # A tiny run from the form; the page it lands on follows it live.
    page.get_by_role("link", name="New run", exact=True).first.click()
    with page.expect_navigation():
        page.select_option("#pick-pipeline", "traffic_signs")  # the form of the chosen pipeline
    expect(page.locator("#pipeline-picker + p")).to_contain_text("traffic signs")
    page.fill("#param-epochs", "3")
    for name, value in TINY.items():
        if name != "epochs":
            page.fill(f"#param-{name}", str(value))
    page.fill("#run-experiment", "browser signs")
    shot(page, "run-new")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    first_run = int(re.search(r"/runs/(\d+)/$", page.url).group(1))
    page.evaluate("window.notReloaded = true")

    wait_for_status(page, "succeeded")
    observed = page.evaluate("window.observed")
    assert page.evaluate("window.notReloaded") is True
    assert any(0 < value < 100 for value in observed["progress"]), observed
    assert observed["progress"][-1] == 100, observed
    points = observed["lossPoints"]
    assert points == sorted(points) and len(points) >= 2 and points[-1] == 3, observed  # grew, in place
    expect(page.locator("#chart-val_accuracy")).to_have_attribute("data-points", "3")
    expect(page.locator("#run-progress")).to_have_attribute("aria-valuenow", "100")

    confusion = page.locator('#gallery img[alt="confusion_matrix.png"]')
    expect(confusion).to_be_visible()
    page.wait_for_function("image => image.complete && image.naturalWidth > 100", arg=confusion.element_handle())
    expect(page.locator('#gallery [data-name="model.zip"] a[download]')).to_be_visible()
    expect(page.locator("#log")).to_contain_text("epoch 3/3")
    shot(page, "run-succeeded")

    # The model it made: classify an image in the try-it panel.
    page.locator("#model-link").click()
    expect(page).to_have_url(re.compile(r"/models/#model-\d+$"))
    model_id = int(page.url.rsplit("-", 1)[1])
    page.set_input_files(f"#try-{model_id}-file", files=[{"name": "sign.png", "mimeType": "image/png", "buffer": sign_png()}])
    expect(page.locator(f"#try-{model_id}-top li")).to_have_count(5)
    expect(page.locator(f"#try-{model_id}-status")).to_contain_text("Most likely:")
    expect(page.locator(f"#try-{model_id}-chart .bars .point")).to_have_count(5)
    page.locator(f"#promote-{model_id}").click()
    expect(page.locator(f"#model-{model_id} .alias")).to_have_text("@production")
    shot(page, "models")

    # Run it again with one change, then compare the two.
    page.goto(f"/runs/{first_run}/")
    page.locator("#run-again").click()
    expect(page.locator("#param-epochs")).to_have_value("3")
    expect(page.locator("#run-experiment")).to_have_value("browser signs")
    page.fill("#param-epochs", "1")
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    second_run = int(re.search(r"/runs/(\d+)/$", page.url).group(1))

    # The dashboard follows it: its badge and bar change in place until it succeeds.
    page.goto("/")
    row = page.locator(f"#run-row-{second_run}")
    expect(row).to_have_attribute("data-live-run", str(second_run))  # unfinished when the page loaded
    page.evaluate("window.notReloaded = true")
    expect(row.locator(".status")).to_have_text("succeeded", timeout=TRAIN_TIMEOUT_MS)
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator('[data-count="succeeded"]')).to_have_text("2")
    expect(page.locator('[data-count="running"]')).to_have_text("0")
    expect(page.locator('[data-count="queued"]')).to_have_text("0")
    assert page.evaluate("window.notReloaded") is True
    shot(page, "dashboard")

    page.check(f"#pick-{first_run}")
    page.check(f"#pick-{second_run}")
    page.get_by_role("button", name="Compare selected runs").click()
    expect(page).to_have_url(re.compile(rf"/compare/\?runs=({second_run},{first_run}|{first_run},{second_run})$"))
    expect(page.locator("#compare-params tr.differs th")).to_contain_text(["epochs"])
    expect(page.locator("#compare-chart-loss")).to_have_attribute("data-traces", "2")
    expect(page.locator("#compare-chart-loss .scatterlayer .trace")).to_have_count(2)
    shot(page, "compare")

    # Upload a dataset: a progress bar, then the worker's validation, then its samples.
    page.goto("/datasets/")
    expect(page.get_by_role("link", name="synthetic_signs")).to_be_visible()
    page.fill("#upload-name", "tiny gtsrb")
    page.select_option("#upload-kind", "gtsrb")
    page.set_input_files("#upload-file", files=[
        {"name": "tiny.zip", "mimeType": "application/zip", "buffer": zip_of(FIXTURES / "gtsrb_tiny")}
    ])
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-progress [role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#upload-result")).to_contain_text("tiny gtsrb is ready.", timeout=60_000)
    shot(page, "datasets")
    page.locator("#upload-result a").click()
    expect(page.locator(".thumbnails img")).to_have_count(12)
    page.wait_for_function("() => [...document.querySelectorAll('.thumbnails img')].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, "dataset")

    # A phone's width: nothing wider than the screen but the tables' own scrolling boxes.
    phone = new_page(chromium, web_server, width=390, height=844, signed_in_as=page)
    phone.goto(f"/runs/{first_run}/")
    wait_for_status(phone, "succeeded")
    expect(phone.locator("#chart-loss")).to_have_attribute("data-points", "3")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone, "run-phone")


@pytest.fixture
def alices_things(alice, django_user_model):
    """A finished run of alice's, and two model versions: a chatbot and a traffic-sign classifier."""
    django_user_model.objects.create_user(username="bob", password="bob-password")
    run = make_run(alice, status="succeeded", progress=1.0)
    return run, make_model_version(alice, name="bot", pipeline="chatbot"), make_model_version(alice, name="signs")


def test_another_users_run_page_is_a_404(web_server, alices_things, chromium):
    run, chatbot, signs = alices_things
    page = new_page(chromium, web_server)
    sign_in(page, "bob", "bob-password")
    response = page.goto(f"/runs/{run.pk}/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    shot(page, "not-found")
    assert page.goto(f"/compare/?runs={run.pk},{run.pk + 1}").status == 404
    assert page.goto(f"/chat/{chatbot.pk}/").status == 404

    owner = new_page(chromium, web_server)
    sign_in(owner, "alice", "alice-password")
    assert owner.goto(f"/runs/{run.pk}/").status == 200
    expect(owner.locator("#run-status")).to_have_text("succeeded")
    # The chat page opens its websocket (the chat consumer, for the owner) and asks for the history.
    owner.goto(f"/chat/{chatbot.pk}/")
    expect(owner.locator("#chat-connection")).to_have_text("Connected.")
    expect(owner.locator("#chat-input")).to_be_enabled()
    shot(owner, "chat")
    owner.goto(f"/chat/{signs.pk}/")
    expect(owner.locator("#chat-unavailable")).to_contain_text("is not a chatbot")


@pytest.fixture
def alice_token(alice) -> str:
    return Token.objects.create(user=alice).key


def test_the_run_page_reconnects_and_fills_in_what_it_missed(web_server, database_url, alice_token, tmp_path, chromium):
    """The page's server goes away while the run logs more points through another server; when it is
    back, the page reconnects by itself and its chart holds every point, with no reload."""
    token = alice_token
    api = httpx.Client(base_url=f"{web_server}/api/v1", headers={"Authorization": f"Token {token}"}, timeout=10)
    run = api.post("/runs/", json={"external": True, "pipeline": "script", "experiment": "reconnect"})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]

    def log_losses(steps):
        points = [{"key": "loss", "value": 1.0 / step, "step": step} for step in steps]
        assert api.post(f"/runs/{run_id}/metrics/", json={"metrics": points}).status_code == 200

    log_losses([1, 2, 3])
    page_server = WebServer(database_url, free_port(), tmp_path / "uvicorn.log")
    page_server.start()
    try:
        page = new_page(chromium, page_server.base)
        sign_in(page, "alice", "alice-password")
        page.goto(f"/runs/{run_id}/")
        expect(page.locator("#chart-loss")).to_have_attribute("data-points", "3")
        expect(page.locator("#connection")).to_have_text("live")
        page.evaluate("window.notReloaded = true")

        page_server.stop()
        expect(page.locator("#connection")).to_have_text("reconnecting…")
        log_losses([4, 5, 6])  # their events reach no one on the page's side
        page_server.start()

        expect(page.locator("#chart-loss")).to_have_attribute("data-points", "6", timeout=60_000)
        expect(page.locator("#connection")).to_have_text("live")
        assert page.evaluate("window.notReloaded") is True
        assert page.evaluate("window.observed.lossPoints") == [3, 6]
        log_losses([7])  # and it follows live again
        expect(page.locator("#chart-loss")).to_have_attribute("data-points", "7")
    finally:
        page_server.stop()
        api.close()


# Records that the bot's typing bubble appeared, however briefly (a tiny model replies in milliseconds).
TYPING_OBSERVER = """
window.sawTyping = false;
document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("chat-log");
  if (log) new MutationObserver(() => { if (log.querySelector(".chat-typing")) window.sawTyping = true; })
    .observe(log, {childList: true, subtree: true, attributes: true, attributeFilter: ["class"]});
});
"""


def test_chat_with_a_trained_bot_streams_its_reply_and_keeps_the_conversation(web_server, alice_token, chromium):
    api = httpx.Client(base_url=f"{web_server}/api/v1", headers={"Authorization": f"Token {alice_token}"}, timeout=30)
    params = {"epochs": 1, "units": 16, "layers": 1, "max_pairs": 200, "batch_size": 32, "optimizer": "adam"}
    run = api.post("/runs/", json={"pipeline": "chatbot", "params": params})
    assert run.status_code == 201, run.text
    finished = wait_for(
        lambda: (body := api.get(f"/runs/{run.json()['id']}/").json())["status"] in ("succeeded", "failed") and body,
        timeout=TRAIN_TIMEOUT_MS / 1000, message="the chatbot run",
    )
    assert finished["status"] == "succeeded", finished["error"]
    model_id = finished["model_version"]["id"]
    expected = api.post(f"/models/{model_id}/predict/", json={"sentence": "hello"}).json()["out"]  # greedy: the same

    page = new_page(chromium, web_server)
    page.context.add_init_script(TYPING_OBSERVER)
    sign_in(page, "alice", "alice-password")
    page.goto(f"/chat/{model_id}/")
    expect(page.locator("#chat-input")).to_be_enabled()
    page.fill("#chat-input", "hello")
    page.get_by_role("button", name="Send").click()
    bot = page.locator(".chat-bot")
    expect(bot).to_have_count(1)
    expect(bot).not_to_have_class(re.compile("chat-typing"))
    expect(bot).to_have_text(expected)
    assert page.evaluate("window.sawTyping")
    expect(page.locator("#chat-input")).to_be_enabled()  # ready for the next message
    shot(page, "chat-conversation")

    page.reload()  # the conversation comes back from the server
    expect(page.locator(".chat-message")).to_have_text(["hello", expected])
