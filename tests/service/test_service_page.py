"""The web page in a real headless Chromium (Playwright driving Debian's chromium) against a
live server: upload a clip and see results and the overlay, a bad file and see the error,
click a result to search from it, on a desktop and a phone-sized screen."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_helpers import of_kind

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a sandboxed machine without a network: no sandbox (root), and no calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (the test extra)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine: install Debian's chromium package "
                             "(.ci/run does)")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser, server: httpx.Client) -> Iterator:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(str(server.base_url) + "/")
    tab.wait_for_function("!document.getElementById('status').textContent.includes('Connecting')")
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_status_shows_device_model_and_index(page, server: httpx.Client) -> None:
    ready = server.get("/readyz").json()
    status = page.inner_text("#status")
    assert "Running on CPU" in status
    assert ready["model"]["hash"][:8] in status
    assert f"{ready['index']['items']:,} items" in status


def test_clip_upload_shows_results_and_the_overlay(page, service_corpus: Path) -> None:
    clip = service_corpus / of_kind(service_corpus, "clip")[0]["video"]
    page.set_input_files("#file", str(clip))
    page.select_option("#k", "6")
    page.click("#search")
    page.wait_for_selector("#results li")
    assert page.locator("#results li").count() == 6
    assert "your clip at" in page.inner_text("#summary")
    page.wait_for_selector("#where:not([hidden])")
    assert page.get_attribute("#overlay", "src").startswith("data:image/png;base64,")
    assert "Peak at" in page.inner_text("#overlay-caption")
    first = page.locator("#results li").first
    assert first.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert "score" in first.inner_text()


def test_bad_file_shows_the_api_message(page, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a picture or a sound\n" * 10)
    page.set_input_files("#file", str(bad))
    page.click("#search")
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert "unsupported media" in message
    assert page.locator("#results li").count() == 0


def test_nothing_chosen_says_so(page) -> None:
    page.click("#search")
    assert "Choose a clip" in page.inner_text("#error")


def test_click_a_result_to_search_from_it(page, service_corpus: Path) -> None:
    image = service_corpus / of_kind(service_corpus, "pair")[0]["image"]
    page.set_input_files("#file", str(image))
    page.click("#search")
    page.wait_for_selector("#results li")
    target = page.locator("#results li").nth(1).get_attribute("data-id")
    page.locator("#results li").nth(1).locator("button").click()
    page.wait_for_function(
        f"document.getElementById('summary').textContent.includes('for {target}')")
    assert "images for" in page.inner_text("#summary")  # a sound found images next
    assert page.locator("#results li").count() > 0


def test_keyboard_only(page, service_corpus: Path) -> None:
    image = service_corpus / of_kind(service_corpus, "pair")[0]["image"]
    page.set_input_files("#file", str(image))
    page.focus("#search")
    page.keyboard.press("Enter")
    page.wait_for_selector("#results li")
    button = page.locator("#results li").first.locator("button")
    button.focus()
    target = page.locator("#results li").first.get_attribute("data-id")
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"document.getElementById('summary').textContent.includes('for {target}')")


def test_phone_sized_screen(browser, server: httpx.Client, service_corpus: Path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True,
                                  has_touch=True)
    tab = context.new_page()
    tab.goto(str(server.base_url) + "/")
    image = service_corpus / of_kind(service_corpus, "pair")[0]["image"]
    tab.set_input_files("#file", str(image))
    tab.click("#search")
    tab.wait_for_selector("#results li")
    overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the screen"
    box = tab.locator("#results li").first.bounding_box()
    assert box is not None and box["width"] <= 375
    context.close()


def test_hits_show_their_heat_map(page, service_corpus: Path) -> None:
    scene = service_corpus / of_kind(service_corpus, "scene")[0]["image"]
    page.set_input_files("#file", str(scene))
    # Four digits in one frame: each one's sound is only a partial match of the whole scene,
    # so ask for every hit rather than those above the model's threshold.
    page.check("#weak")
    page.click("#search")
    page.wait_for_selector("#results li figure.heat canvas")
    cards = page.locator("#results li")
    assert page.locator("#results li figure.heat").count() == cards.count()
    assert "sound in your image" in cards.first.inner_text()


def test_a_long_clip_shows_its_timeline(page, changing_clip: Path) -> None:
    page.set_input_files("#file", str(changing_clip))
    page.click("#search")
    page.wait_for_selector("#timeline:not([hidden]) .bar")
    bars = page.locator("#timeline .bar")
    assert bars.count() == 7
    chosen = page.locator("#timeline .bar.chosen").get_attribute("data-time")
    assert float(chosen) in (1.5, 3.5)
    bars.nth(0).click()  # search from the first second instead
    page.wait_for_function("document.querySelector('#timeline .bar.chosen')?.dataset.time "
                           "=== '0.5'")
    assert page.input_value("#t") == "0.5"


def test_an_off_screen_sound_is_said_so(page, service_corpus: Path) -> None:
    scene = next(s for s in of_kind(service_corpus, "scene") if s.get("absent"))
    page.set_input_files("#file", str(service_corpus / scene["image"]))
    page.set_input_files("#pair-audio", str(service_corpus / scene["audio"]))
    page.click("#search")
    page.wait_for_selector("#where:not([hidden])")
    assert "does not seem to come from anything" in page.inner_text("#overlay-caption")
    assert page.locator("#peak").is_hidden()


def test_no_match_is_said_and_weak_matches_can_be_asked_for(page, tmp_path: Path) -> None:
    import numpy as np
    from service_helpers import wav_bytes

    wave = np.zeros(8000, dtype=np.float32)
    wave[3000:5000] = np.random.default_rng(0).normal(0.0, 0.3, 2000)
    noise = tmp_path / "noise.wav"
    noise.write_bytes(wav_bytes(wave, 8000))
    page.set_input_files("#file", str(noise))
    page.click("#search")
    page.wait_for_function("document.getElementById('summary').textContent.includes('No match')")
    assert "likely to match" in page.inner_text("#summary")
    assert page.locator("#results li").count() == 0
    page.check("#weak")
    page.click("#search")
    page.wait_for_selector("#results li")
    assert "% match" in page.locator("#results li").first.inner_text()


def test_a_sound_can_search_with_the_collections_sounds_most_like_it(page,
                                                                     service_corpus: Path) -> None:
    sound = service_corpus / of_kind(service_corpus, "pair")[2]["audio"]
    page.set_input_files("#file", str(sound))
    page.click("#search")
    page.wait_for_selector("#results li")
    assert "sounds of the collection" not in page.inner_text("#summary")
    page.check("#expand")
    page.click("#search")
    page.wait_for_function(
        "document.getElementById('summary').textContent.includes('sounds of the collection')")
    assert "with the 10 sounds of the collection most like it" in page.inner_text("#summary")
