import json

from django.core.management.base import BaseCommand, CommandError

from billing.reconcile import usage_reconcile
from tenants.models import Tenant


class Command(BaseCommand):
    help = ("Compare each ready deployment's metered successful inferences with the count Triton reports "
            "since the model was loaded; exits 1 when any differ.")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Only this tenant (slug)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON document instead of a table")

    def handle(self, *args, tenant, as_json: bool, **options):
        scope = None
        if tenant:
            scope = Tenant.objects.filter(slug=tenant).first()
            if scope is None:
                raise CommandError(f"No tenant with slug {tenant!r}.")
        lines = usage_reconcile(tenant=scope)
        if as_json:
            self.stdout.write(json.dumps(lines))
        else:
            self.stdout.write(f"{'tenant':>6}  {'deployment':<24} {'triton':>8} {'metered':>8}  result")
            for line in lines:
                if line["error"]:
                    result = line["error"]
                else:
                    result = "ok" if line["agree"] else f"differ by {line['metered'] - line['triton']:+d}"
                triton, metered = (str(line[k]) if line[k] is not None else "-" for k in ("triton", "metered"))
                self.stdout.write(f"{line['tenant']:>6}  {line['deployment']:<24} {triton:>8} {metered:>8}  {result}")
        if not all(line["agree"] for line in lines):
            raise SystemExit(1)
