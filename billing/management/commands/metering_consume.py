from django.core.management.base import BaseCommand

from billing.metering import consume


class Command(BaseCommand):
    help = "Move usage events from the gateway's Redis stream into PostgreSQL (runs until stopped)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Drain the stream and exit")
        parser.add_argument("--consumer", default=None, help="Consumer name (default: host and pid)")
        parser.add_argument("--claim-idle-ms", type=int, default=30_000,
                            help="Take over entries another consumer left unacknowledged this long")

    def handle(self, *args, once, consumer, claim_idle_ms, **options):
        count = consume(consumer=consumer, once=once, claim_idle_ms=claim_idle_ms)
        if once:
            self.stdout.write(f"ingested {count} usage events")
