"""Billing over the REST API: the live draft of the month, invoices with their lines, PDF
and CSV, the requests behind a line, the plan's prices, and the spend limit.

Every member reads; only an owner, signed in, sets the spend limit. Another tenant's
invoice or line is 404, as one that exists nowhere. Money is a decimal string, never a
JSON number, so that no client reads 0.1 + 0.2."""
from billing.api_billing.views import (
    BillingCurrentView,
    InvoiceCsvView,
    InvoiceDetailView,
    InvoiceListView,
    InvoicePdfView,
    LineRequestsView,
    PricesView,
    SpendLimitView,
)

__all__ = ["BillingCurrentView", "InvoiceCsvView", "InvoiceDetailView", "InvoiceListView", "InvoicePdfView",
           "LineRequestsView", "PricesView", "SpendLimitView"]
