"""The Billing page (the month so far, its forecast and chart, the plan's prices, the spend
limit, the invoices) and each invoice with its PDF and CSV files. Members read; owners change
the spend limit (billing.spend allows no one else). Another tenant's invoice is a 404."""
from decimal import Decimal

from django.contrib import messages
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from billing.documents import (
    invoice_csv,
    invoice_filename,
    invoice_pdf,
    line_requests_csv,
    line_title,
    price_text,
    quantity_text,
    streamed_for,
    tiers_text,
)
from billing.invoicing import line_request_ids
from billing.models import Component, Invoice, InvoiceStatus, LineKind
from billing.selectors import billing_overview
from billing.spend import spend_limit_set, spend_status
from gateway.contract.errors import NotFound, PlatformError
from portal.forms import SpendLimitForm
from portal.views.access import tenant_page
from tenants.models import Role


def _spend_form(status: dict) -> SpendLimitForm:
    limit = status["limit"]
    return SpendLimitForm(initial={"amount": "" if limit is None else f"{limit:f}",
                                   "enforcement": status["enforcement"]})


# The units as counted ("60 seconds free"), from pricing.UNITS' singular.
UNITS_PLURAL = {"1,000 requests": "× 1,000 requests", "second": "seconds", "GB-hour": "GB-hours"}


def _tiers(tiers: list[dict], unit: str) -> list[dict]:
    """A price's tiers in words, counted beyond the free allowance: "Next 100 seconds",
    then "Beyond that" (or "Each" when there is one tier)."""
    phrases, previous = [], Decimal(0)
    for tier in tiers:
        if tier["up_to"] is None:
            span = "Beyond that" if previous else "Each"
        else:
            span = f"Next {quantity_text(tier['up_to'] - previous)} {UNITS_PLURAL.get(unit, unit)}"
            previous = tier["up_to"]
        phrases.append({"range": span, "unit_price": price_text(tier["unit_price"])})
    return phrases


def _version(version: dict | None, name: str = "") -> dict | None:
    if version is None:
        return None
    return {**version, "name": name, "prices": [{
        "component": p["component"], "label": p["label"], "unit": p["unit"],
        "unit_plural": UNITS_PLURAL.get(p["unit"], p["unit"]),
        "allowance": quantity_text(p["free_allowance"]) if p["free_allowance"] else None,
        "tiers": _tiers(p["tiers"], p["unit"]),
    } for p in version["prices"]]}


def _page(request, *, form: SpendLimitForm | None = None, status: int = 200):
    now = timezone.now()
    overview = billing_overview(tenant=request.tenant, now=now)
    spend = spend_status(tenant=request.tenant, now=now, overview=overview)
    # billing.spend lets owners (not admins) change the limit; the form follows it.
    is_owner = request.membership.role == Role.OWNER or request.user.is_staff
    percent = spend["percent"]
    return render(request, "portal/billing.html", {
        "period": overview["period"],
        "currency": overview["currency"],
        "cost_so_far": overview["cost_so_far"],
        "forecast": overview["forecast"],
        "forecast_note": overview["forecast_note"],
        "draft": {"id": overview["draft"].pk, "rated_at": overview["draft"].rated_at} if overview["draft"] else None,
        "chart": {
            "period_start": overview["period_start"].isoformat(),
            "period_end": overview["period_end"].isoformat(),
            "currency": overview["currency"],
            "daily": [{"day": row["day"].isoformat(), "deployment_name": row["deployment_name"],
                       "amount": str(row["amount"])} for row in overview["daily"]],
        },
        "table": [{**group, "rows": [{**row, "quantity": quantity_text(row["quantity"])} for row in group["rows"]]}
                  for group in overview["table"]],
        "plan": _version(overview["plan"], overview["plan"]["name"] if overview["plan"] else ""),
        "upcoming": _version(overview["upcoming"]),
        "invoices": overview["invoices"],
        "spend": spend,
        "spend_percent_bar": None if percent is None else min(100, round(percent)),
        "spend_state": "ok" if percent is None else "over" if percent >= 100 else "warn" if percent >= 80 else "ok",
        "spend_alerts": spend["alerts"],
        "form": (form or _spend_form(spend)) if is_owner else None,
    }, status=status)


@tenant_page
def billing(request):
    return _page(request)


@tenant_page
@require_POST
def spend_limit(request):
    form = SpendLimitForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            spend_limit_set(tenant=request.tenant, amount=form.cleaned_data["amount"],
                            enforcement=form.cleaned_data["enforcement"], actor=request.user)
        except PlatformError as exc:
            if exc.status == 403:  # an admin who is not an owner: no form to show it on
                messages.error(request, exc.message)
            else:
                form.add_error("amount", exc.message)
            status = exc.status
        else:
            amount = form.cleaned_data["amount"]
            messages.success(request, "Removed the spend limit." if amount is None else (
                f"Set the monthly spend limit to {amount:,.2f} ({form.cleaned_data['enforcement']}): "
                f"the gateway applies it from the next request."))
            return redirect("billing")
    return _page(request, form=form, status=status)


def _invoice(request, invoice_id: int) -> Invoice:
    invoice = Invoice.objects.for_tenant(request.tenant).filter(pk=invoice_id).select_related("tenant").first()
    if invoice is None:
        raise NotFound("No such invoice in this tenant.")
    return invoice


def _line_row(line) -> dict:
    return {
        "id": line.pk,
        "kind": line.kind,
        "title": line_title(line),
        "adjustment": line.kind == LineKind.ADJUSTMENT,
        "quantity": quantity_text(line.quantity),
        "unit": line.unit,
        "unit_price": None if line.unit_price is None else price_text(line.unit_price),
        "tiers": tiers_text(line.tiers) if line.unit_price is None else [],
        "amount": line.amount,
        # Reserved memory is held, not requested: no requests behind it.
        "has_requests": (line.kind in (LineKind.USAGE, LineKind.ADJUSTMENT)
                         and line.component != Component.RESERVED_MEMORY),
    }


@tenant_page
def invoice_detail(request, invoice_id: int):
    invoice = _invoice(request, invoice_id)
    credit_notes = list(invoice.credit_notes.order_by("created_at", "pk"))
    credited = sum((note.amount for note in credit_notes), Decimal(0))
    return render(request, "portal/invoice_detail.html", {
        "invoice": invoice,
        "draft": invoice.status == InvoiceStatus.DRAFT,
        "lines": [_line_row(line) for line in invoice.lines.order_by("position", "pk")],
        "credit_notes": credit_notes,
        "balance": invoice.total - credited,
    })


def _attachment(response, filename: str):
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@tenant_page
def invoice_pdf_download(request, invoice_id: int):
    invoice = _invoice(request, invoice_id)
    return _attachment(HttpResponse(invoice_pdf(invoice=invoice), content_type="application/pdf"),
                       invoice_filename(invoice, "pdf"))


@tenant_page
def invoice_csv_download(request, invoice_id: int):
    invoice = _invoice(request, invoice_id)
    return _attachment(HttpResponse(invoice_csv(invoice=invoice), content_type="text/csv; charset=utf-8"),
                       invoice_filename(invoice, "csv"))


@tenant_page
def line_requests_download(request, invoice_id: int, line_id: int):
    invoice = _invoice(request, invoice_id)
    line = invoice.lines.filter(pk=line_id).first()
    if line is None:
        raise NotFound("No such line on this invoice.")
    stem = invoice_filename(invoice, "csv").removesuffix(".csv")
    chunks = streamed_for(request, line_requests_csv(events=line_request_ids(line=line)))
    return _attachment(StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8"),
                       f"{stem}-line-{line.position + 1}-requests.csv")
