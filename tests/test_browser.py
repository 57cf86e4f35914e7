"""A real browser through the demo: login page, consent page, loopback callback page, then rows.

Debian's chromium driven by Playwright's sync API (no pytest-playwright plugin). chromium is
installed by scripts/install-browser.sh when missing; the test is skipped only if that fails.
Screenshots of each page go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotetables.auth.consent import browser_consent
from remotetables.demo.run import Demo
from tests.conftest import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
NO_DNS = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"


def _ensure_chromium() -> str | None:
    """None when chromium is usable, else why not."""
    if Path(CHROMIUM).exists():
        return None
    script = ROOT / "scripts" / "install-browser.sh"
    try:
        done = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"chromium is not installed and scripts/install-browser.sh failed: {exc}"
    if done.returncode != 0 or not Path(CHROMIUM).exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"chromium is not installed and scripts/install-browser.sh failed: {tail[0]}"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _ensure_chromium()
    if reason:
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[NO_DNS])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    try:
        yield pg
    finally:
        context.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_consent_in_a_real_browser_then_rows(page: Any, tmp_path: Path, user: str) -> None:
    seen: list[str] = []

    def open_in_playwright(url: str) -> bool:
        page.goto(url)
        seen.append(page.url)
        assert page.locator("input[name=password]").count() == 1, "expected the login page"
        _shot(page, f"{user}-1-login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", user)
        page.click("button[name=login]")
        page.wait_for_selector("button[value=allow]")
        seen.append(page.url)
        assert f"Signed in as {user}" in page.inner_text("body")
        _shot(page, f"{user}-2-consent")
        page.click("button[value=allow]")
        page.wait_for_url("http://127.0.0.1:*/callback?*")
        seen.append(page.url)
        assert "Authorization received" in page.inner_text("body")
        _shot(page, f"{user}-3-callback")
        return True

    with Demo(tmp_path, n_rows=60) as demo:
        consent = browser_consent(timeout=30, open_browser=open_in_playwright, out=None)
        conn = demo.connect(user, consent=consent)
        try:
            owners = [r[0] for r in conn.execute("SELECT assigned_to FROM incidents")]
            # a second query uses the stored token: no browser
            again = conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
        finally:
            conn.close()
        issuer = demo.auth.issuer
    assert owners and set(owners) == {user}
    assert again == len(owners)
    assert len(seen) == 3
    assert seen[0].startswith(issuer + "/login")
    assert seen[1].startswith(issuer + "/authorize")
    assert seen[2].startswith("http://127.0.0.1:") and "/callback?" in seen[2]
