"""The Download page and the pairing code in a real browser: the build for the visitor's Windows is
marked, nothing scrolls sideways on a phone, and the code's Copy button puts the code on the clipboard."""

import pytest

from tests.browser.test_first_impressions import sign_up

pytestmark = pytest.mark.browser

WINDOWS_32 = "Mozilla/5.0 (Windows NT 10.0; rv:115.0) Gecko/20100101 Firefox/115.0"


WINDOWS_64 = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
NO_UA_DATA = "Object.defineProperty(navigator, 'userAgentData', {get: () => undefined});"  # as in Firefox
# Chromium says "Win64; x64" in its User-Agent on every Windows: its userAgentData tells the truth.
CHROMIUM_ON_32_BIT = """Object.defineProperty(navigator, 'userAgentData', {get: () => ({platform: 'Windows',
  getHighEntropyValues: () => Promise.resolve({bitness: '32'})})});"""


@pytest.mark.parametrize("user_agent, script, marked", [
    (WINDOWS_32, NO_UA_DATA, "32"),
    (WINDOWS_64, NO_UA_DATA, "64"),
    (WINDOWS_64, CHROMIUM_ON_32_BIT, "32"),
])
def test_download_marks_this_pcs_build_and_fits_a_phone(browser, portal, screenshot, user_agent, script, marked):
    _app, base = portal
    context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=user_agent)
    context.add_init_script(script)
    page = context.new_page()
    page.goto(f"{base}/download")
    page.wait_for_selector(f"[data-build='{marked}'].recommended")
    other = "64" if marked == "32" else "32"
    assert page.locator(f"[data-build='{other}'].recommended").count() == 0
    assert page.locator(f"[data-build='{marked}'] .for-this-pc").is_visible()
    assert not page.locator(f"[data-build='{other}'] .for-this-pc").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, f"download-390-marks-{marked}")
    context.close()


def test_the_copy_button_copies_the_pairing_code(browser, portal, screenshot):
    _app, base = portal
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    sign_up(page, base)
    page.goto(f"{base}/workers/new")
    page.fill("input[name=name]", "Studio PC")
    page.click("text=Create worker")
    page.wait_for_url("**/setup")
    code = page.inner_text("#pairing-code").strip()
    page.click("button[data-copy='#pairing-code']")
    page.wait_for_selector("button[data-copy]:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == code
    assert "Pairing code" in page.inner_text("#pairing") and "Worker App" in page.inner_text("#pairing")
    screenshot(page, "setup-copy-code")
    context.close()
