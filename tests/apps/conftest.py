"""Fixtures of the fast app tests: no task leaves the process, files and websocket groups are private.

Tasks are recorded instead of sent: the Redis these tests use may be shared with a session that runs
a real worker, which would pick a `run_train` for run 1 up against its own database.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def sent_tasks(monkeypatch):
    """Tasks enqueued (after commit) as (name, args, options), in order."""
    from dlsite.celery import app

    sent: list[tuple[str, list, dict]] = []

    def record(name, args=None, **options):
        sent.append((name, list(args or []), options))

    monkeypatch.setattr(app, "send_task", record)
    return sent


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """The artifact store of one test."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def private_channel_layer(settings):
    """Websocket groups of this process only: run ids repeat across test databases on one Redis."""
    layers = {"default": {**settings.CHANNEL_LAYERS["default"]}}
    layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "prefix": f"dlsite-test-{os.getpid()}"}
    settings.CHANNEL_LAYERS = layers


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2 costs about 0.3 s a user; these tests check who may do what, not hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
