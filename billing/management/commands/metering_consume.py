from django.core.management.base import BaseCommand

from billing.metering import consume


class Command(BaseCommand):
    help = "Move usage events from the gateway's Redis stream into PostgreSQL (runs until stopped)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Drain the stream and exit")
        parser.add_argument("--consumer", default=None)

    def handle(self, *args, once, consumer, **options):
        count = consume(consumer=consumer, once=once)
        if once:
            self.stdout.write(f"ingested {count} usage events")
