"""`manage.py submit <pipeline> --set key=value ... --user <name>`: submit a run and follow it."""

import json
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from apps.accounts.errors import ApiError
from apps.experiments import services
from apps.experiments.models import Run

POLL_SECONDS = 0.5


def parse_assignment(text: str) -> tuple[str, object]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise CommandError(f"--set {text!r}: expected key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


class Command(BaseCommand):
    help = "Submit a training run and follow it with a progress bar until it finishes."

    def add_arguments(self, parser):
        parser.add_argument("pipeline")
        parser.add_argument("--user", required=True)
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a parameter (JSON value)")
        parser.add_argument("--dataset", default=None, help="a dataset id or builtin:<name>")
        parser.add_argument("--experiment", default=None)
        parser.add_argument("--queue", default=None, help="one of settings.QUEUES (by default chosen from --gpus)")
        parser.add_argument("--gpus", type=int, default=0, help="GPUs to train on; more than one: a distribution strategy")
        parser.add_argument("--no-follow", action="store_true")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user {options['user']!r}")
        params = dict(parse_assignment(item) for item in options["set"])
        try:
            run = services.run_submit(
                user=user, pipeline=options["pipeline"], params=params, dataset=options["dataset"],
                experiment=options["experiment"], queue=options["queue"], gpus=options["gpus"],
            )
        except ApiError as error:
            raise CommandError(f"{error.message} {json.dumps(error.errors)}") from None
        self.stdout.write(f"run {run.pk} queued ({run.pipeline}, params {json.dumps(run.params)})")
        if options["no_follow"]:
            return
        with tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}] {postfix}") as bar:
            while True:
                run = Run.objects.get(pk=run.pk)
                bar.n = round(run.progress * 100, 1)
                bar.set_description(run.status)
                bar.set_postfix_str(run.progress_message)
                if run.is_finished:
                    break
                time.sleep(POLL_SECONDS)
        self.stdout.write(f"run {run.pk} {run.status}; metrics: {json.dumps(run.latest_metrics)}")
        if run.error:
            self.stdout.write(self.style.ERROR(run.error))
        if run.status != "succeeded":
            raise CommandError(f"run {run.pk} {run.status}")
