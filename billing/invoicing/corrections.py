"""Credit notes, billing accounts, and the requests behind an invoice line."""
from decimal import Decimal, InvalidOperation

from django.db import connection, transaction
from django.db.models import Max, Q, Sum

from billing.invoicing.drafts import period_bounds
from billing.invoicing.rating import month_start
from billing.models import (
    BillingAccount,
    Component,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    UsageEvent,
)
from billing.pricing import ZERO
from gateway.contract.errors import Conflict, PlatformError
from tenants.audit import audit_record
from tenants.models import Tenant


def billing_account_for(*, tenant: Tenant) -> BillingAccount:
    """The tenant's billing account, created with the defaults when it has none."""
    account, _ = BillingAccount.objects.get_or_create(tenant=tenant)
    return account


def _amount_clean(amount) -> Decimal:
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    except (InvalidOperation, ValueError, TypeError):
        raise PlatformError("amount must be a decimal number, like \"12.50\".", code="invalid_credit_note") from None
    if not value.is_finite() or value <= 0:
        raise PlatformError("amount must be more than 0.", code="invalid_credit_note")
    if value.as_tuple().exponent < -2:
        raise PlatformError("amount has at most 2 decimals (cents).", code="invalid_credit_note")
    return value


def credit_note_create(*, invoice: Invoice, amount: Decimal, reason: str, actor=None) -> CreditNote:
    """Give money back on a finalized invoice: at most what its total less its earlier
    credit notes leaves; numbered from the credit-note sequence."""
    amount = _amount_clean(amount)
    reason = (reason or "").strip()
    if not reason:
        raise PlatformError("Give a reason for the credit note (it is shown on it).", code="invalid_credit_note")
    if len(reason) > 300:
        raise PlatformError("The reason has at most 300 characters.", code="invalid_credit_note")
    with transaction.atomic():
        locked = Invoice.unscoped.select_for_update().get(pk=invoice.pk)
        if locked.status != InvoiceStatus.FINALIZED:
            raise Conflict("Credit notes correct finalized invoices; this one is still a draft: re-rate it instead.")
        credited = CreditNote.unscoped.filter(invoice=locked).aggregate(total=Sum("amount"))["total"] or ZERO
        room = locked.total - credited
        if amount > room:
            raise PlatformError(f"At most {room} {locked.currency.upper()} can still be credited on {locked.number} "
                                f"(total {locked.total}, credited {credited}).", code="invalid_credit_note")
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval('billing_credit_note_number')")
            number = cursor.fetchone()[0]
        user = actor if getattr(actor, "is_authenticated", False) else None
        note = CreditNote.unscoped.create(tenant_id=locked.tenant_id, invoice=locked, number=f"CN-{number:06d}",
                                          amount=amount, reason=reason, created_by=user)
        audit_record(event_type="credit_note.created", target=note,
                     new={"invoice": locked.number, "amount": str(amount), "reason": reason})
    return note


def line_request_ids(*, line: InvoiceLine):
    """The billable events (status 200, endpoint infer) behind a usage or adjustment line,
    ordered by occurred_at, request_id: its tenant's, of its deployment and service window;
    for an adjustment, those ingested after the month was last billed (and, once its
    invoice is finalized, by then). Base fees and reserved memory have none."""
    invoice = line.invoice
    events = UsageEvent.objects.for_tenant(Tenant(pk=invoice.tenant_id))
    if line.kind == LineKind.BASE_FEE or line.component in ("", Component.RESERVED_MEMORY):
        return events.none()
    events = events.filter(status=200, endpoint="infer", occurred_at__gte=line.service_start,
                           occurred_at__lt=line.service_end)
    if line.deployment_id is None:
        events = events.filter(deployment__isnull=True)
    else:
        events = events.filter(deployment_id=line.deployment_id)
    if line.kind == LineKind.ADJUSTMENT:
        month = month_start(line.service_start)
        start, end = period_bounds(month)
        billed_before = (Invoice.unscoped.filter(tenant_id=invoice.tenant_id, status=InvoiceStatus.FINALIZED,
                                                 period_start__lt=invoice.period_start)
                         .filter(Q(period_start=month) | Q(lines__kind=LineKind.ADJUSTMENT,
                                                           lines__service_start__gte=start,
                                                           lines__service_start__lt=end))
                         .aggregate(last=Max("finalized_at"))["last"])
        if billed_before is not None:
            events = events.filter(ingested_at__gt=billed_before)
    if invoice.status == InvoiceStatus.FINALIZED and invoice.finalized_at is not None:
        events = events.filter(ingested_at__lte=invoice.finalized_at)
    return events.order_by("occurred_at", "request_id")
