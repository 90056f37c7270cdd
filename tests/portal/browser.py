"""Real Chromium for the browser tests: Debian's chromium driven by Playwright, and the
folder their screenshots go to (test-artifacts/browser/, kept after the run)."""
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

# Playwright's sync API keeps an event loop in this thread; Django's ORM refuses to run
# next to one unless told that this test process is single-threaded on purpose.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
BUNDLE = ROOT / "frontend" / "dist" / "platform.js"


def screenshots_reset(pattern: str) -> Path:
    """Remove one module's screenshots of an earlier run (`pattern`), keeping the others'."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(pattern):
        old.unlink()
    return ARTIFACTS


@contextmanager
def chromium_page(*, width: int, height: int, timeout_ms: int, page_errors_fail: bool = True):
    """A page in a fresh Chromium. With `page_errors_fail`, an uncaught error in the page
    fails the test once it is done."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `apt-get update && apt-get install -y chromium` "
                    "(`make test` installs it)")
    if not BUNDLE.exists():
        pytest.fail("The frontend bundle is not built: `cd frontend && npm ci && npm run build`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(timeout_ms)
        errors = []
        page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
        yield page
        # The test body's own database connection (Playwright's event loop gave it a fresh one).
        connection.close()
        browser.close()
        if page_errors_fail:
            assert errors == [], errors
