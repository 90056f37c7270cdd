"""Invoices: a tenant's usage of a calendar month (UTC) rated into lines, from the hourly
rollups only (billing/rollups.py), never from the gateway.

Prices. The month is rated by the tenant's current plan (`tenant_plan`: its own, else
the default plan) as it stands when the draft is rated: a plan change mid-month re-rates
the whole open month by the new plan. Each hour is rated by the plan's price version in
force at the hour's start (`effective_from` ≤ hour), so a price change mid-month rates
the hours before it at the old prices and those after at the new. A component without
a price in that version is free: its line shows the quantity at a unit price of 0.

Rating. The month's rollups are read in time order (hour, then deployment id); each
component keeps a running month total that decides where its units fall in the free
allowance and the graduated tiers (billing/pricing.py), across deployments and price
versions. Lines are keyed by (component, deployment, hardware, price version): quantity in
the component's unit (1,000 requests, second, GB-hour); `tiers`, the units of the line
priced at each unit price, [{from, to, quantity, unit_price, amount}], where from/to
span the positions in the month's running total the line's units took at that price
(another deployment's units may lie between); `unit_price` when a single price applies.
The base fee is one line, from the version in force at the month's start (or the first
taking effect within it), when it is not zero.

Rounding. Nothing is rounded while rating. A line's amount is the exact sum of its
pieces (quantity × unit price), rounded once, to the cent, half-up: 0.125 → 0.13. An
invoice's total is the sum of its rounded lines, so the lines always add up to it.

Drafts and finalization. One invoice per tenant per month: a draft re-rated by beat every
minute (`invoices_refresh`; its lines are replaced in one transaction holding the
invoice's row lock, so re-rating gives the same lines and keeps their ids), then, once
the month's end plus BILLING_FINALIZE_GRACE_S (1 h) has passed, finalized by beat
(`invoices_finalize_due`): the month's hours with unrolled events are rolled again, the
draft is rated a last time, numbered from the `billing_invoice_number` sequence
(INV-YYYYMM-NNNNNN) and frozen. A finalized invoice and its lines are immutable (the
models refuse to save or delete them); corrections are credit notes (CN-NNNNNN), at most
the invoice's total less earlier credit notes. `rated_at` and `finalized_at` are the
clock's time; `now` arguments only say which months are open or due.

Late usage. An event that arrives during the grace lands in its own month's draft. One
that arrives later (its month finalized, or never invoiced and past its grace) becomes
adjustment lines on the tenant's earliest draft after that month: per line key, the
month rated whole now less what finalized invoices billed for that key (the month's
usage lines and earlier adjustments), in quantity and in rounded amount, dated "Late
usage of YYYY-MM", its service window in that month. Rated whole again, the month is
never billed twice nor dropped: the two invoices together bill what rating the month
whole now bills.

  rating.py       the arithmetic: rollups to lines (no writes)
  drafts.py       month_rating, drafts, refresh, finalization, re-rating
  corrections.py  credit notes, billing accounts, the requests behind a line"""
from billing.invoicing.corrections import billing_account_for, credit_note_create, line_request_ids
from billing.invoicing.drafts import (
    MonthRating,
    draft_refresh_rated,
    invoice_draft_refresh,
    invoice_finalize,
    invoice_for,
    invoice_rerate,
    invoices_finalize_due,
    invoices_refresh,
    month_rating,
    period_reroll,
)
from billing.invoicing.rating import day_start, month_next, month_start

__all__ = [
    "MonthRating",
    "billing_account_for",
    "credit_note_create",
    "day_start",
    "draft_refresh_rated",
    "invoice_draft_refresh",
    "invoice_finalize",
    "invoice_for",
    "invoice_rerate",
    "invoices_finalize_due",
    "invoices_refresh",
    "line_request_ids",
    "month_next",
    "month_rating",
    "month_start",
    "period_reroll",
]
