"""Screenshots of the web page for the docs, taken in headless Chromium against a running
service: the page with results and an overlay (an image and a sound), the page on a phone-sized
screen (a clip), and the overlay PNG of ``/v1/localize``.

Usage: python scripts/screenshots.py --url http://127.0.0.1:8000 --image SCENE.png \
           --audio SOUND.wav --clip CLIP.mp4 [--out docs/images]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def search(page: Page, url: str, upload: Path, sound: Path | None = None) -> None:
    page.goto(url + "/")
    page.wait_for_function("!document.getElementById('status').textContent.includes('Connect')")
    page.set_input_files("#file", str(upload))
    if sound is not None:
        page.set_input_files("#pair-audio", str(sound))
    page.click("#search")
    page.wait_for_selector("#results li")
    page.wait_for_selector("#where:not([hidden])")
    page.wait_for_function("[...document.images].filter(i => i.getBoundingClientRect().top < "
                           "innerHeight).every(i => i.complete)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--image", type=Path, required=True, help="a 2x2 scene")
    parser.add_argument("--audio", type=Path, required=True, help="the sound of one cell")
    parser.add_argument("--clip", type=Path, required=True, help="an mp4 clip")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=ARGS)
        desktop = browser.new_page(viewport={"width": 1200, "height": 900})
        search(desktop, args.url, args.image, args.audio)
        desktop.select_option("#k", "6")
        desktop.click("#search")
        desktop.wait_for_function("document.querySelectorAll('#results li').length === 6")
        desktop.wait_for_timeout(300)
        desktop.screenshot(path=args.out / "page.png", full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        search(phone, args.url, args.clip)
        phone.evaluate("document.getElementById('where').scrollIntoView()")
        phone.screenshot(path=args.out / "page-phone.png", full_page=False)
        browser.close()
    with httpx.Client(base_url=args.url, timeout=60) as client:
        files = {"image": (args.image.name, args.image.read_bytes()),
                 "audio": (args.audio.name, args.audio.read_bytes())}
        answer = client.post("/v1/localize", files=files, headers={"Accept": "image/png"})
        answer.raise_for_status()
        (args.out / "overlay.png").write_bytes(answer.content)
    for name in ("page.png", "page-phone.png", "overlay.png"):
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
