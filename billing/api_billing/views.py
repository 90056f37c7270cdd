"""The billing API's views (billing/api_billing/__init__.py says what they serve)."""

from django.db.models import Prefetch
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, renderers
from rest_framework.response import Response

from billing.api_billing.serializers import (
    CurrentBillingSerializer,
    InvoiceDetailSerializer,
    InvoiceSerializer,
    LineRequestSerializer,
    LineRequestsQuerySerializer,
    PricesSerializer,
    SpendLimitSerializer,
    SpendStatusSerializer,
)
from billing.documents import invoice_csv, invoice_filename, invoice_pdf, line_requests_csv, streamed_for
from billing.invoicing import billing_account_for, line_request_ids
from billing.models import Component, CreditNote, Invoice, InvoiceLine, PriceVersion
from billing.pricing import UNITS
from billing.selectors import billing_overview
from billing.spend import spend_limit_set, spend_status
from gateway.contract.errors import NotFound
from portal.api_base import (
    ERROR_DESCRIPTIONS,
    ErrorSerializer,
    LimitOffsetPagination,
    TenantAPIView,
    query_data,
    with_errors,
)
from tenants.models import ApiKey, Role
from tenants.permissions import IsTenantMember
from tenants.quotas import tenant_plan

# ---- reads --------------------------------------------------------------------------------

def _invoice_get(tenant, invoice_id: int) -> Invoice:
    invoice = Invoice.objects.for_tenant(tenant).select_related("tenant").filter(pk=invoice_id).first()
    if invoice is None:
        raise NotFound("No such invoice in this tenant.")
    return invoice


def _invoices_detailed(tenant):
    return Invoice.objects.for_tenant(tenant).prefetch_related(
        Prefetch("lines", InvoiceLine.objects.order_by("position", "pk")),
        Prefetch("credit_notes", CreditNote.unscoped.order_by("created_at", "pk")))


def _invoice_detail(tenant, invoice_id: int) -> Invoice:
    invoice = _invoices_detailed(tenant).filter(pk=invoice_id).first()
    if invoice is None:
        raise NotFound("No such invoice in this tenant.")
    return invoice


def _line_get(tenant, invoice_id: int, line_id: int) -> InvoiceLine:
    invoice = _invoice_get(tenant, invoice_id)
    line = InvoiceLine.objects.filter(invoice=invoice, pk=line_id).select_related("invoice__tenant").first()
    if line is None:
        raise NotFound("No such line on this invoice.")
    return line


def _version_data(version: PriceVersion) -> dict:
    prices = {price.component: price for price in version.prices.all()}
    return {
        "id": version.pk, "effective_from": version.effective_from, "currency": version.currency,
        "base_fee": version.base_fee, "note": version.note,
        "prices": [{"component": component.value, "label": component.label, "unit": UNITS[component.value],
                        "free_allowance": prices[component.value].free_allowance,
                        "tiers": prices[component.value].tiers}
                       for component in Component if component.value in prices],
    }


def _prices(tenant, now) -> dict:
    plan = tenant_plan(tenant)
    if plan is None:
        return {"plan": None, "currency": None, "in_force": None, "upcoming": []}
    versions = list(PriceVersion.objects.filter(plan=plan).prefetch_related("prices").order_by("effective_from"))
    started = [v for v in versions if v.effective_from <= now]
    in_force = _version_data(started[-1]) if started else None
    return {"plan": {"id": plan.pk, "name": plan.name, "slug": plan.slug},
            "currency": in_force["currency"] if in_force else None, "in_force": in_force,
            "upcoming": [_version_data(v) for v in versions if v.effective_from > now]}


# ---- views --------------------------------------------------------------------------------

def _json_errors(ok: dict, *statuses: int) -> dict:
    """`with_errors` for an operation whose success is a file: its errors are JSON all the same."""
    errors = {(status, "application/json"): OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
              for status in (401, 403, *statuses)}
    return {**ok, **errors}


class CSVRenderer(renderers.BaseRenderer):
    """Chosen by ?format=csv or Accept: text/csv; the view streams the CSV itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else str(data or "").encode()


class JSONErrorsMixin:
    """Errors are JSON, whichever format the request asked for."""

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and response.status_code >= 400:
            request.accepted_renderer = renderers.JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


EXAMPLE_LINE = {"id": 41, "position": 1, "kind": "usage", "component": "requests", "deployment_id": 7,
                "deployment_name": "digits", "hardware": "cpu", "price_version": 3,
                "service_start": "2026-12-01T00:00:00Z", "service_end": "2027-01-01T00:00:00Z",
                "description": "Inference requests · digits", "quantity": "1500", "unit": "1,000 requests",
                "unit_price": None,
                "tiers": [{"from": "0", "to": "1000", "quantity": "1000", "unit_price": "0", "amount": "0"},
                          {"from": "1000", "to": "1500", "quantity": "500", "unit_price": "0.40", "amount": "200"}],
                "amount": "200.00"}
EXAMPLE_INVOICE = {"id": 12, "number": None, "status": "draft", "period_start": "2026-12-01",
                   "period_end": "2027-01-01", "currency": "usd", "total": "229.00",
                   "rated_at": "2026-12-14T10:31:00Z", "finalized_at": None,
                   "rolled_through": "2026-12-14T10:31:00Z",
                   "lines": [{**EXAMPLE_LINE, "id": 40, "position": 0, "kind": "base_fee", "component": "",
                              "deployment_id": None, "deployment_name": "", "hardware": "", "price_version": 3,
                              "description": "Monthly base fee", "quantity": "1", "unit": "month",
                              "unit_price": "29.00", "tiers": [], "amount": "29.00"}, EXAMPLE_LINE],
                   "credit_notes": []}


def _example(name: str, value, *, request: bool = False) -> OpenApiExample:
    if request:
        return OpenApiExample(name, value=value, request_only=True)
    return OpenApiExample(name, value=value, response_only=True, status_codes=["200"])


class BillingCurrentView(TenantAPIView):
    @extend_schema(
        responses=with_errors({200: CurrentBillingSerializer}),
        summary="The month so far: its live draft invoice, forecast, daily cost and spend limit",
        description="The draft is rated from the hourly usage rollups, at most a minute behind the requests. "
                    "Amounts are decimal strings in the plan's currency.",
        examples=[_example("A draft with a base fee and one deployment", {
            "invoice": EXAMPLE_INVOICE, "period_start": "2026-12-01", "period_end": "2027-01-01",
            "cost_so_far": "229.00", "forecast": "490.50", "currency": "usd",
            "daily": [{"day": "2026-12-14", "deployment_name": "digits", "amount": "14.20"}],
            "spend": {"currency": "usd", "limit": "500.00", "enforcement": "hard", "limit_max": None,
                      "spent": "229.00", "estimate": "229.4", "percent": "45.8", "alerts": [], "past_due": False,
                      "past_due_since": None, "blocked_from": None, "blocked": False}})],
    )
    def get(self, request):
        now = timezone.now()
        overview = billing_overview(tenant=self.tenant, now=now)
        # The month's invoice as stored (its lines with their ids, for their requests); a month
        # closed early by an admin shows its finalized invoice.
        invoice = _invoices_detailed(self.tenant).filter(period_start=overview["period_start"]).first()
        body = {"invoice": invoice, "period_start": overview["period_start"], "period_end": overview["period_end"],
                "cost_so_far": overview["cost_so_far"], "forecast": overview["forecast"],
                "currency": overview["currency"], "daily": overview["daily"],
                "spend": spend_status(tenant=self.tenant, now=now, overview=overview)}
        return Response(CurrentBillingSerializer(body).data)


class InvoiceListView(TenantAPIView, generics.ListAPIView):
    serializer_class = InvoiceSerializer
    pagination_class = LimitOffsetPagination

    def get_queryset(self):
        return Invoice.objects.for_tenant(self.tenant).order_by("-period_start", "-pk")

    @extend_schema(responses=with_errors({200: InvoiceSerializer(many=True)}, 400),
                   summary="The tenant's invoices, newest month first (paginated with limit and offset)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class InvoiceDetailView(TenantAPIView):
    @extend_schema(responses=with_errors({200: InvoiceDetailSerializer}, 404),
                   summary="An invoice with its lines and credit notes",
                   examples=[_example("A draft", EXAMPLE_INVOICE)])
    def get(self, request, invoice_id: int):
        return Response(InvoiceDetailSerializer(_invoice_detail(self.tenant, invoice_id)).data)


def _download(content, *, content_type: str, filename: str):
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class InvoicePdfView(JSONErrorsMixin, TenantAPIView):
    renderer_classes = [renderers.JSONRenderer]

    @extend_schema(responses=_json_errors({(200, "application/pdf"): OpenApiTypes.BINARY}, 404),
                   summary="An invoice as a PDF (a download named after its number)")
    def get(self, request, invoice_id: int):
        invoice = _invoice_get(self.tenant, invoice_id)
        return _download(invoice_pdf(invoice=invoice), content_type="application/pdf",
                         filename=invoice_filename(invoice, "pdf"))


class InvoiceCsvView(JSONErrorsMixin, TenantAPIView):
    renderer_classes = [renderers.JSONRenderer]

    @extend_schema(responses=_json_errors({(200, "text/csv"): OpenApiTypes.STR}, 404),
                   summary="An invoice's lines (and credit notes, as negative amounts) as CSV")
    def get(self, request, invoice_id: int):
        invoice = _invoice_get(self.tenant, invoice_id)
        return _download(invoice_csv(invoice=invoice), content_type="text/csv; charset=utf-8",
                         filename=invoice_filename(invoice, "csv"))


class LineRequestsView(JSONErrorsMixin, TenantAPIView, generics.ListAPIView):
    serializer_class = LineRequestSerializer
    pagination_class = LimitOffsetPagination
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]

    def perform_content_negotiation(self, request, force=False):
        # A format other than json or csv is a 400 that says so, not DRF's bare 404.
        query = LineRequestsQuerySerializer(data={k: v for k, v in query_data(request).items() if k == "format"})
        query.is_valid(raise_exception=True)
        return super().perform_content_negotiation(request, force)

    def get_queryset(self):
        line = _line_get(self.tenant, self.kwargs["invoice_id"], self.kwargs["line_id"])
        self.line = line
        return line_request_ids(line=line)

    @extend_schema(
        parameters=[LineRequestsQuerySerializer],
        responses=_json_errors({(200, "application/json"): LineRequestSerializer(many=True),
                                (200, "text/csv"): OpenApiTypes.STR}, 400, 404),
        summary="The requests an invoice line charges, oldest first (paginated; or every one as CSV)",
        description="The billable requests (status 200, endpoint infer) behind a usage or adjustment line; the "
                    "base fee and reserved memory have none. With ?format=csv or Accept: text/csv, every one of "
                    "them as a CSV download, streamed.")
    def get(self, request, *args, **kwargs):
        if request.accepted_renderer.format != "csv":
            return super().get(request, *args, **kwargs)
        events = self.get_queryset()
        filename = invoice_filename(self.line.invoice, "csv").replace(
            ".csv", f"-line-{self.line.position + 1}-requests.csv")
        response = StreamingHttpResponse(streamed_for(request, line_requests_csv(events=events)),
                                         content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class PricesView(TenantAPIView):
    @extend_schema(responses=with_errors({200: PricesSerializer}), summary="The tenant's plan and its prices",
                   description="The price version in force and those to come. Each component's first "
                               "free_allowance units of a month are free; the units beyond go through its tiers.")
    def get(self, request):
        return Response(PricesSerializer(_prices(self.tenant, timezone.now())).data)


class CanSetSpendLimit(IsTenantMember):
    """The spend limit is set by an owner, signed in: not by admins, and not by API keys,
    which owners and admins alike can make."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if isinstance(request.auth, ApiKey):
            self.message = ("Only an owner, signed in, may set the spend limit: API keys cannot, whoever made "
                            "them.")
            return False
        if request._request.membership.role != Role.OWNER:
            self.message = "Only owners may set the spend limit; ask an owner of this tenant."
            return False
        return True


class SpendLimitView(TenantAPIView):
    permission_classes = [CanSetSpendLimit]

    @extend_schema(
        request=SpendLimitSerializer,
        responses={**with_errors({200: SpendStatusSerializer}, 400),
                   403: OpenApiResponse(ErrorSerializer, description="Not an owner signed in (members, admins and "
                                                                     "API keys cannot set the spend limit)")},
        summary="Set the monthly spend limit (owners)",
        description="The fields given change. A hard limit refuses requests with 429 insufficient_quota once the "
                    "month's spend reaches it; a soft one only alerts (at 50, 80 and 100%). An amount above the "
                    "maximum platform staff allow is a 400.",
        examples=[_example("A hard limit of 100", {"amount": "100.00", "enforcement": "hard"}, request=True),
                  _example("No limit", {"amount": None}, request=True)],
    )
    def patch(self, request):
        payload = SpendLimitSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        account = billing_account_for(tenant=self.tenant)
        data = payload.validated_data
        spend_limit_set(tenant=self.tenant, amount=data.get("amount", account.spend_limit),
                        enforcement=data.get("enforcement", account.spend_limit_enforcement), actor=self.actor)
        return Response(SpendStatusSerializer(spend_status(tenant=self.tenant)).data)

