"""The Billing page in real Chromium against the portal (the live server thread, the test
database): the daily cost chart draws a bar for each deployment that cost something, with a
legend and a tooltip; the table and the prices show; the owner sets the spend limit through
the form (a refused amount first); an invoice's page opens and its PDF downloads."""
import io
import json
from decimal import Decimal
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from billing.models import BillingAccount
from graph_editor.services import model_version_upload
from tests.portal.billing_fixtures import billing_built
from tests.portal.browser import ARTIFACTS, chromium_page, screenshots_reset

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """This module's screenshots, replaced on each run (other browser tests keep theirs)."""
    return screenshots_reset("billing-[0-9]*.png")


@pytest.fixture
def browser_page(artifacts):
    with chromium_page(width=1440, height=1000, timeout_ms=20_000) as page:
        yield page


@pytest.fixture
def billing(acme, digits_onnx):
    version = model_version_upload(tenant=acme, model_name="digits", chunks=[digits_onnx])
    return billing_built(acme, version)


def shot(page, name: str, **options) -> None:
    page.screenshot(path=str(ARTIFACTS / f"billing-{name}.png"), **options)


def sign_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button:has-text('Sign in')")
    page.wait_for_selector("nav")


def test_the_billing_page_its_chart_the_spend_limit_and_an_invoice_pdf(live_server, alice, billing, browser_page,
                                                                       tmp_path):
    page = browser_page
    sign_in(page, live_server, "alice", "alice-password-1")
    page.click("nav >> text=Billing")
    page.wait_for_url("**/billing/")

    # The chart: a bar for each deployment that cost something, each in the legend.
    svg = page.locator("[data-billing-chart-svg]")
    expect(svg).to_be_visible()
    chart = json.loads(page.inner_text("#billing-chart-data"))
    costly = {row["deployment_name"] for row in chart["daily"] if Decimal(row["amount"]) > 0}
    assert costly == {"digits", "digits-pipeline", "vision"}
    for name in costly:
        bars = svg.locator(f'rect[data-bar][data-deployment="{name}"]')
        assert bars.count() >= 1, name
        assert float(bars.first.get_attribute("height")) > 1
    legend = page.locator("[data-legend-item]")
    assert {item.get_attribute("data-legend-item") for item in legend.all()} == costly
    assert "$" in legend.first.inner_text()
    # The days of the month on x (every day of it has a column), amounts on y in dollars.
    days = svg.locator("g[data-day]")
    assert days.count() == len(page.evaluate(
        "() => { const d = JSON.parse(document.getElementById('billing-chart-data').textContent);"
        " return [...Array((new Date(d.period_end) - new Date(d.period_start)) / 864e5).keys()]; }"))
    assert svg.locator("g.tick text").first.text_content() == "$0"

    # The table by deployment and component, and the prices.
    expect(page.locator("#billing-by-deployment")).to_contain_text("Compute on GPU, per second")
    expect(page.locator("#plan-prices")).to_contain_text("Next 10 seconds: 0.02 USD per second")
    expect(page.locator("[data-upcoming-prices]")).to_contain_text("New prices from")
    shot(page, "01-page", full_page=True)

    # Hovering a day's bar: its cost per deployment and the day's total.
    last_bar = svg.locator('rect[data-bar][data-deployment="vision"]').last
    last_bar.hover()
    tooltip = page.locator("[data-billing-tooltip]")
    expect(tooltip).to_contain_text("vision")
    expect(tooltip).to_contain_text("Total")
    page.locator(".billing-chart").scroll_into_view_if_needed()
    shot(page, "02-chart-tooltip", clip=page.locator("section.card:has([data-billing-chart])").bounding_box())
    page.mouse.move(0, 0)

    # The spend limit: an amount with fractions of a cent is refused, with the reason.
    form = page.locator("[data-spend-limit-form]")
    form.locator("input[name=amount]").fill("12.345")
    form.locator("button[type=submit]").click()
    error = page.locator("[data-field-error=amount]")
    expect(error).to_have_text("The spend limit has at most 2 decimals (cents), not 12.345.")
    assert not BillingAccount.objects.filter(tenant=billing.tenant, spend_limit__isnull=False).exists()
    page.locator("#spend").scroll_into_view_if_needed()
    shot(page, "03-limit-refused", clip=page.locator("#spend").bounding_box())

    form = page.locator("[data-spend-limit-form]")
    form.locator("input[name=amount]").fill("50")
    form.locator("select[name=enforcement]").select_option("hard")
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash.success")).to_contain_text("Set the monthly spend limit to 50.00 (hard)")
    expect(page.locator("[data-spend-limit] [data-limit]")).to_have_text("50.00")
    expect(page.locator("[data-spend-percent]")).to_be_visible()
    account = BillingAccount.objects.get(tenant=billing.tenant)
    assert (account.spend_limit, account.spend_limit_enforcement) == (Decimal("50.00"), "hard")
    shot(page, "04-limit-set")

    # Last month's invoice: its lines, its credit note, and its PDF.
    finalized = billing.finalized
    page.click(f"#invoices >> text={finalized.number}")
    page.wait_for_url(f"**/billing/invoices/{finalized.pk}/")
    expect(page.locator("[data-invoice-number]")).to_have_text(finalized.number)
    expect(page.locator("#invoice-lines")).to_contain_text("70 – 90: 20 × 0.01")
    expect(page.locator("#credit-notes")).to_contain_text("Goodwill for the outage of the 3rd")
    shot(page, "05-invoice", full_page=True)
    with page.expect_download() as download_info:
        page.click("[data-download=pdf]")
    download = download_info.value
    assert download.suggested_filename == f"invoice-{finalized.number}.pdf"
    pdf = tmp_path / "invoice.pdf"
    download.save_as(pdf)
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF-")
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(content)).pages)
    assert finalized.number in text
    # What the tenant sees when opening it: its first page as an image, beside the screenshots.
    document = pdfium.PdfDocument(content)
    document[0].render(scale=1.5).to_pil().save(ARTIFACTS / "billing-07-invoice-pdf.png")
    document.close()

    # This month's draft: the late call of last month on it, dated.
    page.goto(f"{live_server.url}/billing/invoices/{billing.draft.pk}/")
    expect(page.locator("tr.adjustment").first).to_contain_text("(usage of")
    shot(page, "06-draft", full_page=True)
