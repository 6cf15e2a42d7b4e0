#!/usr/bin/env python
"""How fast fairseq-wae-explore answers, against the targets of its issue: a reconstruction, an
interpolation and a sample within 1 s on the CPU, the map of 10,000 codes drawn in the browser within
5 s, and 20 requests at once all answered.

    python scripts/benchmark_explore.py MODEL [--data DATA] [--corpus FILE] [--repeats 20] [--threads 1]

MODEL and --data as fairseq-wae-explore takes them (the quick start's model: fairseq-wae-export it, or
quickstart/checkpoints/checkpoint_best.pt --data quickstart/data). Without --corpus, 10,000 sentences of
the toy grammar (scripts/make_toy_corpus.py) are written in a temporary folder. The server runs as its
own process, as a user starts it; the requests go over HTTP; the map is drawn by the distribution's
headless Chromium (scripts/setup.sh installs it), timed from the click to the frame after plotly drew it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

REQUESTS = {  # route: the request a page sends (the toy grammar's sentences)
    "reconstruct": {"sentences": "a man in a red shirt is playing a guitar outside ."},
    "interpolate": {"start": "a man in a red shirt is playing a guitar outside .",
                    "end": "two dogs are swimming in the lake at night .", "steps": 8},
    "sample": {"n": 10, "seed": 1},
}


def post(url, route, body):
    request = urllib.request.Request(f"{url}/api/{route}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, json.loads(response.read())


def start_server(args, corpus):
    command = [sys.executable, "-m", "fairseq_wae.cli.explore", args.model, "--corpus", corpus, "--port", "0",
               "--threads", str(args.threads)] + (["--data", args.data] if args.data else [])
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "CUDA_VISIBLE_DEVICES": "",
                                    "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
    ready = process.stdout.readline()
    if "serving" not in ready:
        process.kill()
        sys.exit(f"benchmark_explore.py: the server did not start: {ready!r}")
    return process, ready.split(" on ")[-1].strip(), time.perf_counter() - started


def latencies(url, repeats):
    """{route: seconds of each of ``repeats`` requests, one after another, after one to warm up}."""
    times = {}
    for route, body in REQUESTS.items():
        post(url, route, body)
        times[route] = []
        for _ in range(repeats):
            started = time.perf_counter()
            status, _ = post(url, route, body)
            times[route].append(time.perf_counter() - started)
            assert status == 200
    return times


def concurrent(url, count=20):
    """(answered with 200, seconds) of ``count`` requests sent at once, the three kinds in turn."""
    requests = [list(REQUESTS.items())[i % len(REQUESTS)] for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(lambda request: post(url, *request)[0], requests))
    return sum(status == 200 for status in statuses), time.perf_counter() - started


def map_in_browser(url, size, times=2):
    """[(seconds from the click to the drawn frame, the server's share, the drawing's share, points)] of
    ``times`` draws of the map of ``size`` corpus codes and 200 prior samples (the first computes the
    projection and decodes the prior samples; the next ones get the server's cached answer)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fairseq_wae.explore.browser import HeadlessChromium

    draws = []
    with HeadlessChromium(1280, 900) as browser:
        browser.get(url)
        WebDriverWait(browser, 60).until(lambda b: b.execute_script("return document.body.dataset.ready"))
        browser.execute_script(f"document.getElementById('map-size').value = {size}")
        for _ in range(times):
            started = time.perf_counter()
            browser.find_element(By.ID, "map-button").click()
            WebDriverWait(browser, 120, poll_frequency=0.02).until(
                lambda b: b.find_element(By.ID, "map-section").get_attribute("data-state") in ("done", "error"))
            elapsed = time.perf_counter() - started
            status = browser.find_element(By.ID, "map-status")
            if browser.find_element(By.ID, "map-section").get_attribute("data-state") != "done":
                sys.exit(f"benchmark_explore.py: the map failed: {browser.find_element(By.ID, 'map-error').text}")
            draws.append((elapsed, int(status.get_attribute("data-fetch-ms")) / 1000,
                          int(status.get_attribute("data-render-ms")) / 1000, int(status.get_attribute("data-points"))))
    return draws


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an exported model folder, or a checkpoint with --data")
    parser.add_argument("--data", help="the data folder of a checkpoint")
    parser.add_argument("--corpus", help="sentences for the map (default: 10,000 of the toy grammar)")
    parser.add_argument("--repeats", type=int, default=20, help="requests of each kind, one after another")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        corpus = args.corpus
        if corpus is None:
            corpus = os.path.join(scratch, "toy.txt")
            with open(corpus, "w") as f:
                subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_toy_corpus.py"),
                                "--num-sentences", "10000", "--seed", "11"], stdout=f, check=True)
        with open(corpus) as f:
            size = min(10_000, sum(1 for line in f if line.strip()))
        process, url, startup = start_server(args, corpus)
        try:
            times = latencies(url, args.repeats)
            answered, together = concurrent(url)
            draws = map_in_browser(url, size)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"fairseq-wae-explore on {args.model}: server ready in {startup:.1f} s (loading the model and encoding "
          f"{size:,} corpus sentences), {args.threads} torch thread(s), {os.cpu_count()} cores")
    print("| request | median | max | target |\n|---|---|---|---|")
    for route, seconds in times.items():
        verdict = "met" if max(seconds) < 1 else "MISSED"
        print(f"| {route} ({json.dumps(REQUESTS[route])[:48]}...) | {1000 * statistics.median(seconds):.0f} ms | "
              f"{1000 * max(seconds):.0f} ms | < 1 s: {verdict} |")
    print(f"| 20 requests at once | {answered}/20 answered | {together:.2f} s for all | all answered: "
          f"{'met' if answered == 20 else 'MISSED'} |")
    for number, (elapsed, fetched, drawn, points) in enumerate(draws, start=1):
        print(f"| map of {points:,} points in Chromium, draw {number} | {elapsed:.2f} s from the click (server "
              f"{fetched:.2f} s, drawing {drawn:.2f} s) | | < 5 s: {'met' if elapsed < 5 else 'MISSED'} |")


if __name__ == "__main__":
    main()
