#!/usr/bin/env python
"""How fast fairseq-wae-explore answers, against the targets of its issues: a reconstruction, an
interpolation and a sample within 1 s on the CPU, the map of 10,000 codes drawn in the browser within
5 s, and, with 50 of the costliest model requests sent at once, each answered or refused (503) while
the page and its files load within 200 ms.

    python scripts/benchmark_explore.py MODEL [--data DATA] [--corpus FILE] [--repeats 20] [--threads 1]
    python scripts/benchmark_explore.py --budget [--threads 1]

``--budget`` times the costliest request each limit lets through (explore/limits.py) on an untrained
paper-size model (lstm_wae_paper, a 20,000-word dictionary), built in this process: an untrained model
decodes every sentence to the longest length, the worst case; the limits aim at about 2 s each.

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
import urllib.error
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
    """(status, answer) of the POST the page sends (from its own origin)."""
    request = urllib.request.Request(f"{url}/api/{route}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Origin": url})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


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


#: about the costliest request of each kind the limits let through (explore/limits.py: 2,000 decoding steps)
HEAVY = [("sample", {"n": 12, "seed": 1, "decoding": "beam", "beam": 4}),
         ("interpolate", {**REQUESTS["interpolate"], "steps": 12, "decoding": "beam", "beam": 4}),
         ("reconstruct", {"sentences": "\n".join([REQUESTS["reconstruct"]["sentences"]] * 12), "decoding": "beam",
                          "beam": 4})]


def page_load(url) -> float:
    """Seconds to load the page and its files (plotly.min.js's 4.8 MB included), one after another."""
    started = time.perf_counter()
    for address in (f"{url}/", f"{url}/static/explore.js", f"{url}/static/explore.css", f"{url}/static/plotly.min.js"):
        with urllib.request.urlopen(address, timeout=60) as response:
            response.read()
    return time.perf_counter() - started


def concurrent(url, count=50):
    """({status: how many} of ``count`` of the costliest model requests sent at once, seconds for all, the
    slowest of 5 loads of the page and its files while they ran, and of 5 with the server idle, in seconds)."""
    idle = max(page_load(url) for _ in range(5))
    requests = [HEAVY[i % len(HEAVY)] for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        statuses = pool.map(lambda request: post(url, *request)[0], requests)
        time.sleep(0.2)  # the requests sent, the model busy with the first
        busy = max(page_load(url) for _ in range(5))
        statuses = list(statuses)
    return {status: statuses.count(status) for status in sorted(set(statuses))}, time.perf_counter() - started, busy, idle


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


def untrained_paper_size(folder: str, words: int = 20_000):
    """The Python interface of an untrained lstm_wae_paper on a dictionary of ``words`` tokens (w0, w1, ...),
    as fairseq-train would build it; its sentences are the dictionary's tokens (no tokeniser)."""
    from fairseq import options, tasks
    from fairseq.dataclass.configs import GenerationConfig
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    from fairseq_wae.models.hub_interface import AutoencoderHubInterface

    with open(os.path.join(folder, "dict.txt"), "w") as f:
        f.writelines(f"w{i} {words - i}\n" for i in range(words - 4))  # fairseq adds its 4 symbols
    args = options.parse_args_and_arch(options.get_training_parser(), [
        folder, "--user-dir", os.path.join(REPO, "fairseq_wae"), "--task", "sentence_autoencoding",
        "--arch", "lstm_wae_paper", "--criterion", "wae_mmd", "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    return AutoencoderHubInterface(OmegaConf.create({"generation": OmegaConf.structured(GenerationConfig)}), task, model)


def budget(threads: int):
    """Seconds of the costliest request each limit lets through, on an untrained paper-size model."""
    import torch

    from fairseq_wae.explore import limits
    from fairseq_wae.explore.service import ExploreService, projection_methods

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    with tempfile.TemporaryDirectory() as folder:
        model = untrained_paper_size(folder)
    corpus = [" ".join(f"w{(7 * i + 13 * j) % 19_000}" for j in range(12)) for i in range(limits.MAP_LIMIT)]
    started = time.perf_counter()
    service = ExploreService(model, corpus)
    print(f"untrained lstm_wae_paper ({sum(p.numel() for p in model.model.parameters()):,} parameters, "
          f"{len(model.dictionary):,} tokens), {threads} torch thread(s), {os.cpu_count()} cores: the corpus of "
          f"{len(corpus):,} sentences of 12 tokens encoded at start in {time.perf_counter() - started:.1f} s; "
          f"decoding up to {service.length} tokens a sentence; MAX_DECODING {limits.MAX_DECODING:,}")
    sentence, length = corpus[1], limits.DEFAULT_LENGTH
    def most(beam, tokens):  # sentences: the most the limit lets through
        return (limits.MAX_DECODING // tokens - limits.STEP_COST) // beam

    requests = [("sample", {"n": most(1, length), "seed": 1}),
                ("sample", {"n": most(4, length), "seed": 1, "decoding": "beam", "beam": 4}),
                ("sample", {"n": 1, "seed": 1, "decoding": "beam", "beam": limits.MAX_BEAM, "max_len": 70}),
                ("sample", {"n": most(1, service.length), "seed": 1, "max_len": service.length}),
                ("sample", {"n": most(1, length), "seed": 1, "decoding": "sampling", "topk": 10}),
                ("interpolate", {"start": sentence, "end": corpus[2], "steps": most(1, length)}),
                ("interpolate", {"start": sentence, "end": corpus[2], "steps": most(5, length), "decoding": "beam",
                                 "beam": 5}),
                ("reconstruct", {"sentences": "\n".join(corpus[:most(1, length)])}),
                ("neighbours", {"sentence": sentence, "k": limits.MAX_NEIGHBOURS}),
                ("map", {"size": limits.MAP_LIMIT, "prior": most(1, length)})]
    for method in projection_methods()[1:]:
        half = limits.MAX_DECODING // 2 // length - limits.STEP_COST  # prior samples of half the budget
        requests.append(("map", {"size": limits.PROJECTION_LIMITS[method], "prior": 0, "method": method}))
        requests.append(("map", {"size": limits.PROJECTION_LIMITS[method] // 2 - half, "prior": half, "method": method}))
    print("| request (at the limits) | seconds |\n|---|---|")
    for route, body in requests:
        started = time.perf_counter()
        getattr(service, route)(body).result()
        shown = {k: (f"{v.count(chr(10)) + 1} sentences" if k == "sentences" else v) for k, v in body.items()
                 if k not in ("start", "end", "sentence")}
        print(f"| {route} {json.dumps(shown)} | {time.perf_counter() - started:.2f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="an exported model folder, or a checkpoint with --data")
    parser.add_argument("--budget", action="store_true",
                        help="time the costliest requests the limits let through, on an untrained paper-size model")
    parser.add_argument("--data", help="the data folder of a checkpoint")
    parser.add_argument("--corpus", help="sentences for the map (default: 10,000 of the toy grammar)")
    parser.add_argument("--repeats", type=int, default=20, help="requests of each kind, one after another")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    args = parser.parse_args()
    if args.budget:
        return budget(args.threads)
    if args.model is None:
        parser.error("give MODEL, or --budget")
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
            at_once = concurrent(url)
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
    counts, together, slowest_page, idle_page = at_once
    print(f"| 50 costliest model requests at once | {counts.get(200, 0)} answered, {counts.get(503, 0)} refused (503), "
          f"{sum(n for s, n in counts.items() if s not in (200, 503))} other | {together:.2f} s for all | all answered "
          f"or refused: {'met' if set(counts) <= {200, 503} else 'MISSED'} |")
    print(f"| the page and its files (plotly.min.js included) while they ran | slowest of 5 loads {1000 * slowest_page:.0f} "
          f"ms | (idle server: {1000 * idle_page:.0f} ms) | < 200 ms: {'met' if slowest_page < 0.2 else 'MISSED'} |")
    for number, (elapsed, fetched, drawn, points) in enumerate(draws, start=1):
        print(f"| map of {points:,} points in Chromium, draw {number} | {elapsed:.2f} s from the click (server "
              f"{fetched:.2f} s, drawing {drawn:.2f} s) | | < 5 s: {'met' if elapsed < 5 else 'MISSED'} |")


if __name__ == "__main__":
    main()
