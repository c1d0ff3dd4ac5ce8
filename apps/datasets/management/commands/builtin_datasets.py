from django.core.management.base import BaseCommand

from apps.datasets.services import builtin_datasets_ensure


class Command(BaseCommand):
    help = "Create (or refresh) the rows of the built-in offline datasets."

    def handle(self, *args, **options):
        for dataset in builtin_datasets_ensure():
            self.stdout.write(f"built-in dataset ready: builtin:{dataset.name} ({dataset.kind})")
