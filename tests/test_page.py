"""The page in a real headless Chromium (Debian's), against the whole pack.

The ``pack`` fixture runs ``tombola up`` with W's tempo at one second.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from runner.database import generated_customer
from tests.pack import Pack

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/tombola-page.png")
PLAY_TIMEOUT_MS = 20_000


@pytest.fixture
def page(browser: Browser, pack: Pack) -> Iterator[Page]:
    """A fresh browser tab on the pack; the test fails on any script error or CSP violation."""
    context = browser.new_context(base_url=pack.url, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"CSP violation: {message.text}")

    page.on("console", console)
    yield page
    context.close()
    assert problems == []


def customer_panel_shows(page: Page, customer_id: int) -> None:
    customer = generated_customer(customer_id)
    for field in ("firstname", "lastname", "email"):
        expect(page.locator("#panel-i")).to_contain_text(str(customer[field]))


def test_a_customer_plays_once(page):
    page.goto("/?id=42")
    customer_panel_shows(page, 42)
    expect(page.locator("#panel-s")).to_contain_text("Not played yet")
    expect(page.locator("#panel-p")).to_contain_text("No prize yet")
    play = page.locator("#play")
    expect(play).to_be_enabled()

    play.click()
    expect(page.locator("#panel-b")).to_contain_text("Please wait")
    expect(play).to_be_disabled()

    expect(page.locator("#panel-b")).to_contain_text("You won:", timeout=PLAY_TIMEOUT_MS)
    price = page.locator("#panel-b .text").inner_text().split("You won:")[1].strip()
    expect(page.locator("#panel-s")).to_contain_text("Played on", timeout=PLAY_TIMEOUT_MS)
    expect(page.locator("#panel-s")).to_contain_text(f"prize: {price}")
    picture = page.locator("#prize-img")
    expect(picture).to_be_visible(timeout=PLAY_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('#prize-img').naturalWidth > 0", timeout=PLAY_TIMEOUT_MS)
    assert picture.get_attribute("src") == "/srvp/user/42/image"
    expect(play).to_be_disabled()
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.reload()
    expect(page.locator("#panel-s")).to_contain_text(f"prize: {price}")
    page.wait_for_function("document.querySelector('#prize-img').naturalWidth > 0")
    expect(play).to_be_disabled()
    expect(page.locator("#panel-b")).to_contain_text("already played")


def test_typing_an_id_loads_that_customer(page):
    page.goto("/")
    expect(page.locator("#play")).to_be_disabled()
    page.locator("#customer-id").fill("7")
    page.locator("#customer-id").press("Enter")
    expect(page).to_have_url(re.compile(r"/\?id=7$"))
    customer_panel_shows(page, 7)
    expect(page.locator("#panel-s")).to_contain_text("Not played yet")
    expect(page.locator("#play")).to_be_enabled()

    page.locator("#customer-id").fill("8")
    page.get_by_role("button", name="Go").click()
    expect(page).to_have_url(re.compile(r"/\?id=8$"))
    customer_panel_shows(page, 8)

    page.go_back()
    expect(page).to_have_url(re.compile(r"/\?id=7$"))
    customer_panel_shows(page, 7)


def test_an_invalid_id_is_refused_by_the_page(page):
    calls: list[str] = []
    page.on("request", lambda request: calls.append(request.url) if "/srv" in request.url else None)
    page.goto("/?id=abc")
    expect(page.locator("#lookup-message")).to_contain_text("is not a customer number")
    expect(page.locator("#customer-id")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#play")).to_be_disabled()

    for typed in ("0", "-3", "1234567890", "4.2"):
        page.locator("#customer-id").fill(typed)
        page.locator("#customer-id").press("Enter")
        expect(page.locator("#lookup-message")).to_contain_text("is not a customer number")
    assert page.url.endswith("/?id=abc")
    assert calls == []


def test_an_unknown_customer_cannot_play(page):
    page.goto("/?id=99999999")
    expect(page.locator("#panel-i")).to_contain_text("Unknown customer")
    expect(page.locator("#panel-s")).to_contain_text("Not played yet")
    expect(page.locator("#play")).to_be_disabled()
