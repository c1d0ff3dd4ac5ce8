"""docker/compose.yaml and docker/Dockerfile, checked against the code (no Docker engine runs here).

Every command starts something that exists (the ASGI app, the Celery app, management commands), every
built image names a Dockerfile target, every worker consumes configured queues, and every configured
queue has a worker.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def load_compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def dockerfile_text() -> str:
    return (DOCKER / "Dockerfile").read_text()


def dockerfile_targets() -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", dockerfile_text(), flags=re.MULTILINE | re.IGNORECASE))


def dockerfile_commands() -> dict[str, list[str]]:
    """The CMD of each target, as an argument list."""
    commands, target = {}, None
    for line in dockerfile_text().splitlines():
        if match := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, flags=re.IGNORECASE):
            target = match.group(1)
        elif line.startswith("CMD "):
            commands[target] = json.loads(line.removeprefix("CMD "))
    return commands


def compose_commands() -> dict[str, list[str]]:
    """The command of each compose service that has one, as argument lists."""
    return {name: service["command"] for name, service in load_compose()["services"].items() if "command" in service}


def all_commands() -> dict[str, list[str]]:
    return {
        **{f"compose service {name}": command for name, command in compose_commands().items()},
        **{f"Dockerfile target {target}": command for target, command in dockerfile_commands().items()},
    }


def split_commands(command: list[str]) -> list[list[str]]:
    """`sh -c "a && b"` is two commands; anything else is itself."""
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


def option(arguments: list[str], name: str) -> str | None:
    return arguments[arguments.index(name) + 1] if name in arguments else None


def worker_queues() -> dict[str, list[str]]:
    """Queues of each Celery worker, in compose and as the images' default commands."""
    queues = {}
    for where, command in all_commands().items():
        if command[:1] == ["celery"] and "worker" in command:
            queues[where] = option(command, "-Q").split(",")
    return queues


def test_the_files_parse_and_name_the_roles():
    services = load_compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "beat"} <= set(services)
    assert dockerfile_targets() == {"base", "cpu", "web", "worker-cpu", "worker-gpu", "beat"}
    assert set(dockerfile_commands()) == {"web", "worker-cpu", "worker-gpu", "beat"}


def test_every_built_image_is_a_dockerfile_target():
    targets = dockerfile_targets()
    built = {name: service["build"] for name, service in load_compose()["services"].items() if "build" in service}
    assert built, "compose builds no image"
    for name, build in built.items():
        assert build["dockerfile"] == "docker/Dockerfile", name
        assert (DOCKER / build["context"]).resolve() == DOCKER.parent, name  # relative to compose.yaml
        assert build["target"] in targets, f"{name}: no `FROM ... AS {build['target']}` in docker/Dockerfile"


def test_services_without_a_build_use_an_image():
    for name, service in load_compose()["services"].items():
        assert ("build" in service) != ("image" in service), name


@pytest.mark.parametrize("where, command", sorted(all_commands().items()))
def test_every_command_starts_something_that_exists(where, command):
    for arguments in split_commands(command):
        program = arguments[0]
        if program == "uvicorn":
            module_name, _, attribute = arguments[1].partition(":")
            module = importlib.import_module(module_name)
            assert callable(getattr(module, attribute)), f"{where}: {arguments[1]} is not an ASGI app"
        elif program == "celery":
            assert option(arguments, "-A") == "dlsite", where
            from celery import Celery

            assert isinstance(importlib.import_module("dlsite.celery").app, Celery)
            assert arguments[3] in ("worker", "beat"), where
        elif program == "python":
            assert arguments[1] == "manage.py", where
            assert arguments[2] in get_commands(), f"{where}: no management command {arguments[2]!r}"
        else:
            pytest.fail(f"{where}: unexpected program {program!r}")


def test_worker_queues_are_configured_and_every_queue_has_a_worker():
    queues = worker_queues()
    compose_workers = {where: names for where, names in queues.items() if where.startswith("compose")}
    assert sorted(compose_workers) == [
        "compose service worker-batch", "compose service worker-inference", "compose service worker-training",
        "compose service worker-training-multi",
    ]
    for where, names in queues.items():
        assert set(names) <= set(settings.QUEUES), f"{where} consumes {names}"
    consumed = {name for names in compose_workers.values() for name in names}
    assert consumed == set(settings.QUEUES) == {"training", "training-multi", "inference", "batch", "default"}


def test_workers_have_distinct_names_and_one_process_each():
    names = []
    for where, command in compose_commands().items():
        if command[:1] == ["celery"] and "worker" in command:
            assert option(command, "-c") == "1", where  # prefetch 1, one task at a time
            names.append(option(command, "-n"))
    assert len(names) == len(set(names))


def test_training_workers_reserve_gpus_on_the_gpu_image():
    services = load_compose()["services"]
    for name, count in (("worker-training", 1), ("worker-training-multi", "all")):
        service = services[name]
        assert service["build"]["target"] == "worker-gpu"
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert (device["driver"], device["count"], device["capabilities"]) == ("nvidia", count, ["gpu"])


def test_app_services_share_the_environment_and_the_artifact_store():
    services = load_compose()["services"]
    for name in ("migrate", "web", "worker-training", "worker-training-multi", "worker-inference", "worker-batch", "beat"):
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://"), name
        assert environment["REDIS_URL"] == "redis://redis:6379/0", name
        assert environment["DLSITE_DATA_DIR"] == "/data", name
        assert services[name]["volumes"] == ["artifacts:/data"], name
