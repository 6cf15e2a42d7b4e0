#!/usr/bin/env python
"""The README's picture of fairseq-wae-explore: the page of MODEL with a reconstruction, an
interpolation, prior samples, neighbours and the map filled in, as headless Chromium draws it, saved as
a PNG of --width pixels (palette colours, to keep it small).

    python scripts/screenshot_explore.py MODEL [--data DATA] --corpus FILE --out docs/explore.png
"""
import argparse
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def fill_in(browser, start, end, neighbour):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def press(button, section):
        browser.find_element(By.ID, button).click()
        WebDriverWait(browser, 120, poll_frequency=0.05).until(
            lambda b: b.find_element(By.ID, section).get_attribute("data-state") in ("done", "error"))

    def type_into(element_id, text):
        browser.find_element(By.ID, element_id).clear()
        browser.find_element(By.ID, element_id).send_keys(text)

    type_into("rec-input", f"{start}\n{end}")
    press("rec-button", "reconstruct")
    type_into("int-start", start)
    type_into("int-end", end)
    type_into("int-steps", "6")
    press("int-button", "interpolate")
    type_into("sam-n", "6")
    press("sam-button", "sample")
    type_into("nn-input", neighbour)
    type_into("nn-k", "3")
    press("nn-button", "neighbours")
    press("map-button", "map-section")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--colors", type=int, default=64, help="of the PNG's palette")
    parser.add_argument("--start", default="a man in a red shirt is playing a guitar outside .")
    parser.add_argument("--end", default="two dogs are swimming in the lake at night .")
    parser.add_argument("--neighbour", default="a boy is riding a bike outside .")
    args = parser.parse_args()
    from PIL import Image
    from selenium.webdriver.support.ui import WebDriverWait

    from fairseq_wae.explore.browser import HeadlessChromium

    command = [sys.executable, "-m", "fairseq_wae.cli.explore", args.model, "--corpus", args.corpus, "--port", "0"]
    process = subprocess.Popen(command + (["--data", args.data] if args.data else []), cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
    try:
        ready = process.stdout.readline()
        if "serving" not in ready:
            sys.exit(f"screenshot_explore.py: the server did not start: {ready!r}")
        with HeadlessChromium(1280, 900) as browser:
            browser.get(ready.split(" on ")[-1].strip())
            WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.body.dataset.ready"))
            fill_in(browser, args.start, args.end, args.neighbour)
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1280, height + 140)  # the window's frame: the page itself gets `height`
            browser.save_screenshot(args.out)
    finally:
        process.terminate()
        process.wait(timeout=30)
    image = Image.open(args.out).convert("RGB")
    image = image.resize((args.width, round(image.height * args.width / image.width)), Image.LANCZOS)
    image.quantize(colors=args.colors, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {image.width}x{image.height}, {os.path.getsize(args.out):,} bytes")


if __name__ == "__main__":
    main()
