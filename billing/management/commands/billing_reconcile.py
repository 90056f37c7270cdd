from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.reconciliation import plain, reconciliation_run


def _month(text: str) -> date:
    try:
        year, month = (int(part) for part in text.split("-"))
        return date(year, month, 1)
    except ValueError:
        raise CommandError(f"--period takes a month as YYYY-MM, like 2026-11; got {text!r}.") from None


def _cell(value) -> str:
    return "-" if value is None else plain(value)


def _money(value) -> str:
    return f"{value:.2f}"


class Command(BaseCommand):
    help = ("Reconcile a month's billing three ways: usage events and rollups, rollups and invoice lines (and a "
            "fresh rating), rollups and Stripe's meter summaries (when Stripe is on). Prints a table and every "
            "difference; exits 1 on any.")

    def add_arguments(self, parser):
        parser.add_argument("--period", help="The month, YYYY-MM (UTC); default: the current month")

    def handle(self, *args, period: str | None, **options):
        period_start = _month(period) if period else timezone.now().date().replace(day=1)
        result = reconciliation_run(period_start=period_start)
        header = (f"{'tenant':<16} {'component':<16} {'rollups':>16} {'invoiced':>16} {'rated':>16} "
                  f"{'invoiced $':>11} {'rated $':>11} {'owed Stripe':>16} {'Stripe':>16}")
        self.stdout.write(f"Billing reconciliation of {period_start:%Y-%m} (UTC)")
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for r in result.rows:
            rollups = "-" if r.component == "base_fee" else _cell(r.rollups)
            self.stdout.write(
                f"{r.tenant:<16} {r.component:<16} {rollups:>16} {_cell(r.billed):>16} {_cell(r.rated):>16} "
                f"{_money(r.billed_amount):>11} {_money(r.rated_amount):>11} {_cell(r.stripe_want):>16} "
                f"{_cell(r.stripe):>16}")
        if not result.rows:
            self.stdout.write("(no usage, invoices or adjustments this month)")
        if result.differences:
            self.stdout.write(f"\n{len(result.differences)} difference(s):")
            for sentence in result.differences:
                self.stdout.write(f"- {sentence}")
            raise CommandError(f"{len(result.differences)} difference(s) in {period_start:%Y-%m}.", returncode=1)
        self.stdout.write("\nNo differences: events, rollups, invoices" + (" and Stripe" if any(
            r.stripe is not None for r in result.rows) else "") + " agree.")
