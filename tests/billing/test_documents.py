"""An invoice as a PDF (read back with pypdf) and as CSV files: what a customer reads in
them, tenant-chosen text printed as written, and no spreadsheet formula smuggled in."""
import csv
import io
import uuid
from decimal import Decimal

import pytest
from pypdf import PdfReader

from billing.documents import invoice_csv, invoice_filename, invoice_pdf, line_requests_csv
from billing.models import CreditNote, InvoiceStatus, UsageEvent
from tests.billing.invoice_builders import NOV_1, invoice_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def labs(db):
    from tenants.services import tenant_create

    return tenant_create(name="<b>R&D</b> Labs & Co", slug="labs")


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    # Words as read, whatever the line breaks of a wrapped cell.
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def test_the_pdf_holds_the_number_the_lines_and_the_total(acme):
    invoice = invoice_create(acme)
    content = invoice_pdf(invoice=invoice)
    assert content.startswith(b"%PDF-")
    text = pdf_text(content)
    for expected in ("Inference Platform", "Invoice INV-202611-000042", "Acme Corp", "2026-11-01", "EUR",
                     "Monthly base fee", "10.00 EUR", "Inference requests — digits", "1,500",
                     "1,000 – 1,500: 500 × 0.0004", "0 – 1,000: 1,000 free", "12,345.678", "0.003", "37.04 EUR",
                     "usage of 2026-10-31 – 2026-11-01 UTC", "-0.47 EUR", "Total", "46.77 EUR"):
        assert expected in text, expected


def test_tenant_chosen_text_is_printed_as_written_not_as_markup(labs):
    invoice = invoice_create(labs)
    text = pdf_text(invoice_pdf(invoice=invoice))
    assert "<b>R&D</b> Labs & Co" in text
    assert "Compute on GPU — <b>R&D</b> model" in text


def test_a_draft_says_so_and_its_file_is_named_by_tenant_and_month(acme):
    invoice = invoice_create(acme, status=InvoiceStatus.DRAFT, total="0.00", lines=False)
    text = pdf_text(invoice_pdf(invoice=invoice))
    assert "DRAFT" in text and "Invoice INV" not in text
    assert "No charges in this period so far." in text and "0.00 EUR" in text
    assert invoice_filename(invoice, "pdf") == "draft-acme-2026-11.pdf"


def test_credit_notes_are_listed_with_the_total_after_them(acme):
    invoice = invoice_create(acme)
    CreditNote.unscoped.create(tenant=acme, invoice=invoice, number="CN-000001", amount=Decimal("6.77"),
                               reason="Outage on 2026-11-12 & 13")
    text = pdf_text(invoice_pdf(invoice=invoice))
    assert "CN-000001" in text and "Outage on 2026-11-12 & 13" in text and "-6.77 EUR" in text
    assert "Total after credit notes" in text and "40.00 EUR" in text
    assert invoice_filename(invoice, "pdf") == "invoice-INV-202611-000042.pdf"


def test_the_invoice_csv_has_a_row_per_line_and_credit_note_summing_to_what_is_owed(acme):
    invoice = invoice_create(acme)
    CreditNote.unscoped.create(tenant=acme, invoice=invoice, number="CN-000001", amount=Decimal("6.77"),
                               reason="=HYPERLINK(\"http://evil\")")
    rows = list(csv.DictReader(io.StringIO(invoice_csv(invoice=invoice))))
    assert [r["kind"] for r in rows] == ["base_fee", "usage", "usage", "adjustment", "credit_note"]
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal("40.00")
    assert rows[1]["quantity"] == "1500" and rows[1]["unit_price"] == ""
    assert rows[1]["tiers"] == "0 – 1,000: 1,000 free; 1,000 – 1,500: 500 × 0.0004"
    assert rows[2]["unit_price"] == "0.003" and rows[2]["quantity"] == "12345.678"
    assert rows[3]["amount"] == "-0.47" and rows[3]["service_start"] == "2026-10-31T23:00:00+00:00"
    assert rows[4]["description"].startswith("CN-000001: =HYPERLINK")
    assert {r["invoice"] for r in rows} == {"INV-202611-000042"}


@pytest.mark.parametrize("name, cell", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+1+1", "'+1+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("digits", "digits"),
])
def test_a_text_cell_a_spreadsheet_would_run_is_kept_as_text(acme, name, cell):
    invoice = invoice_create(acme, deployment_name=name)
    rows = list(csv.DictReader(io.StringIO(invoice_csv(invoice=invoice))))
    assert rows[1]["deployment"] == cell
    assert rows[3]["amount"] == "-0.47"  # numbers stay numbers


@pytest.mark.parametrize("given", ["queryset", "events"])
def test_the_requests_csv_streams_every_request_in_chunks(acme, given):
    events = UsageEvent.unscoped.bulk_create(
        UsageEvent(tenant=acme, request_id=uuid.uuid4(), deployment_name="digits", status=200, latency_ms=2.5,
                   compute_ms=1.5, occurred_at=NOV_1) for _ in range(2100))
    queryset = UsageEvent.unscoped.filter(tenant=acme).order_by("occurred_at")
    chunks = list(line_requests_csv(events=queryset if given == "queryset" else queryset.iterator()))
    assert len(chunks) == 3  # a header with 1,000 rows, 1,000 rows, then the rest
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert len(rows) == 2100
    assert {uuid.UUID(r["request_id"]) for r in rows} == {e.request_id for e in events}
    assert rows[0]["compute_ms"] == "1.5" and rows[0]["status"] == "200"
