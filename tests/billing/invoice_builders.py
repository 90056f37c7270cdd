"""An invoice built row by row, for the tests of what shows an invoice (documents, API,
admin) independently of rating."""
from datetime import UTC, date, datetime
from decimal import Decimal

from billing.models import Invoice, InvoiceLine, InvoiceStatus

NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)


def invoice_create(tenant, *, status=InvoiceStatus.FINALIZED, number="INV-202611-000042", total="46.77",
                   lines=True, deployment_name="digits") -> Invoice:
    """An invoice of November 2026 with a base fee, a line through two tiers, a line holding
    tenant-chosen markup and a late adjustment; written as a draft, then finalized (a
    finalized invoice refuses new lines)."""
    invoice = Invoice.unscoped.create(tenant=tenant, period_start=date(2026, 11, 1), period_end=date(2026, 12, 1),
                                      currency="eur", total=Decimal(total))
    rows = [
        {"kind": "base_fee", "description": "Monthly base fee", "quantity": "1", "unit": "month",
         "unit_price": "10.00", "amount": "10.00"},
        {"kind": "usage", "component": "requests", "deployment_name": deployment_name, "hardware": "cpu",
         "description": "Inference requests — digits", "quantity": "1500", "unit": "1,000 requests",
         "unit_price": None, "amount": "0.20",
         "tiers": [{"from": "0", "to": "1000", "quantity": "1000", "unit_price": "0", "amount": "0"},
                   {"from": "1000", "to": "1500", "quantity": "500", "unit_price": "0.0004", "amount": "0.2"}]},
        {"kind": "usage", "component": "compute_gpu", "deployment_name": "r-and-d", "hardware": "gpu",
         "description": "Compute on GPU — <b>R&D</b> model", "quantity": "12345.678", "unit": "second",
         "unit_price": "0.003", "amount": "37.04"},
        {"kind": "adjustment", "component": "compute_cpu", "deployment_name": "digits", "hardware": "cpu",
         "description": "Compute on CPU — digits", "quantity": "-3.5", "unit": "second", "unit_price": "0.15",
         "amount": "-0.47", "service_start": datetime(2026, 10, 31, 23, tzinfo=UTC),
         "service_end": datetime(2026, 11, 1, tzinfo=UTC)},
    ] if lines else []
    for position, values in enumerate(rows):
        values = {"service_start": NOV_1, "service_end": DEC_1, **values}
        InvoiceLine.objects.create(invoice=invoice, position=position, **{
            k: Decimal(v) if k in ("quantity", "unit_price", "amount") and v is not None else v
            for k, v in values.items()})
    if status == InvoiceStatus.FINALIZED:
        Invoice.unscoped.filter(pk=invoice.pk).update(status=status, number=number,
                                                      finalized_at=datetime(2026, 12, 1, 1, tzinfo=UTC))
        invoice.refresh_from_db()
    return invoice
