"""fairseq-wae-explore: the server started once for the module on the DAE overfit to 50 sentences
(conftest.overfit_dae, exported with a Gaussian prior fitted to its codes), with 300 toy sentences as its corpus; its routes over HTTP against the
Python interface, its refusals (host, origin, token, body size, cost, a full queue), 50 requests at once,
and the page in a real headless Chromium (Selenium driving the distribution's chromium and chromedriver,
which scripts/setup.sh installs), behind a path-prefixing proxy and across a server restart. Every
server listens on 127.0.0.1 only."""
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from helpers import CLI_ENV, REPO, built_once, run

CORPUS_SIZE = 300


def post(url, route, body, raw=None, **headers):
    """(status, answer) of a POST of ``body`` as JSON (or ``raw`` bytes) to /api/<route>, as the page sends
    it (from its own origin), with ``headers`` (Content_Type=...) changed; a header given as None is left out."""
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Origin": url,
               **{name.replace("_", "-"): value for name, value in headers.items()}}
    return ask(f"{url}/api/{route}", data, {k: v for k, v in headers.items() if v is not None})


def ask(url, data=None, headers=None, method=None):
    """(status, answer as JSON, or the response for a page) of one request."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
            return response.status, json.loads(body) if response.headers.get_content_type() == "application/json" else response
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class AsThePageDecodes:
    """A model's Python interface decoding sentences of at most the page's max_len tokens by default
    (fairseq-generate's max_len_b; the interface's own default is the model's, 200), as the page asks."""

    def __init__(self, model):
        from fairseq_wae.explore.limits import DEFAULT_LENGTH

        self.model, self.length = model, {"max_len_a": 0, "max_len_b": DEFAULT_LENGTH}

    def __getattr__(self, name):
        return getattr(self.model, name)

    def reconstruct(self, *args, **search):
        return self.model.reconstruct(*args, **{**self.length, **search})

    def interpolate(self, *args, **search):
        return self.model.interpolate(*args, **{**self.length, **search})

    def sample(self, *args, **search):
        return self.model.sample(*args, **{**self.length, **search})


@pytest.fixture(scope="module")
def explored(overfit_dae, tmp_path_factory):
    """(export folder, corpus file, corpus sentences, the model loaded by from_pretrained, decoding as the
    page asks). The export carries a fitted prior (a Gaussian: fitted in a second), so the page offers it."""
    from fairseq_wae import LSTMAutoencoderModel

    data, ckpt, _ = overfit_dae

    def build(folder):  # once for every pytest-xdist worker; each loads its own model
        run([sys.executable, REPO / "scripts" / "fit_prior.py", "--checkpoint", ckpt / "checkpoint_best.pt",
             "--data", data, "--density", "gaussian", "--out", folder / "gaussian.pt"])
        run([sys.executable, REPO / "scripts" / "export_model.py", "--checkpoint", ckpt / "checkpoint_best.pt",
             "--data", data, "--out", folder / "model", "--prior", folder / "gaussian.pt"])
        (folder / "corpus.txt").write_text("\n".join(corpus) + "\n")
        return folder

    corpus = [line for line in (REPO / "examples" / "toy" / "sentences.txt").read_text().splitlines() if line][:CORPUS_SIZE]
    folder = built_once(tmp_path_factory, "explore", build)
    # one thread, as the server and pytest-xdist's workers run: the tiny model's decoding is 3x slower on
    # two threads that contend with the server's
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = LSTMAutoencoderModel.from_pretrained(str(folder / "model"))
        yield folder / "model", folder / "corpus.txt", corpus, AsThePageDecodes(model)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def served(explored, tmp_path_factory):
    """(URL, log file) of ``python -m fairseq_wae.cli.explore EXPORT --corpus FILE --port 0 --allow-host
    explore.test``, once it prints its ready line; stopped after the module's tests."""
    export, corpus_file, _, _ = explored
    log = tmp_path_factory.mktemp("explore-server") / "server.log"
    command = [sys.executable, "-m", "fairseq_wae.cli.explore", str(export), "--corpus", str(corpus_file),
               "--port", "0", "--threads", "1", "--allow-host", "explore.test"]
    process = subprocess.Popen(command, cwd=REPO, env=CLI_ENV, stdout=subprocess.PIPE, stderr=open(log, "w"),
                               text=True)
    watchdog = threading.Timer(120, process.kill)  # a server that never gets ready fails the tests, not hangs them
    watchdog.start()
    try:
        ready = process.stdout.readline()
        watchdog.cancel()
        if "serving" not in ready:
            process.kill()
            process.wait()
            raise AssertionError(f"the server did not start: {ready}{log.read_text()[-3000:]}")
        assert "on http://127.0.0.1:" in ready and "token" not in ready, ready  # this machine only, no token
        yield ready.split(" on ")[-1].strip(), log
    finally:
        watchdog.cancel()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(served):
    return served[0]


def test_every_route_answers_what_the_python_interface_gives(server, explored):
    _, _, corpus, model = explored
    typed = "a dog is carrying a box .\nthe kids are swimming in the lake ."
    status, answer = post(server, "reconstruct", {"sentences": typed, "decoding": "beam", "beam": "3"})
    assert status == 200 and answer["reconstructions"] == model.reconstruct(typed.splitlines(), beam=3)
    # sampling: what the interface draws after torch.manual_seed(seed)
    status, answer = post(server, "reconstruct", {"sentences": typed, "decoding": "sampling", "sampling_seed": 5,
                                                  "temperature": "0.8", "topk": "4"})
    torch.manual_seed(5)
    assert status == 200 and answer["reconstructions"] == model.reconstruct(
        typed.splitlines(), sampling=True, temperature=0.8, sampling_topk=4)
    status, answer = post(server, "interpolate", {"start": "a dog is carrying a box .", "steps": "6",
                                                  "end": "four girls are swimming in the lake .", "method": "spherical"})
    assert status == 200 and answer["path"] == model.interpolate(
        "a dog is carrying a box .", "four girls are swimming in the lake .", steps=6, method="spherical")
    status, answer = post(server, "sample", {"n": "7", "seed": "3", "latent_temperature": "0.7",
                                             "decoding": "sampling", "topp": "0.9"})
    assert status == 200 and answer["samples"] == model.sample(7, seed=3, latent_temperature=0.7, sampling=True,
                                                               sampling_topp=0.9)
    status, answer = post(server, "neighbours", {"sentence": "a dog is eating outside .", "k": 4})
    expected = model.nearest("a dog is eating outside .", corpus, k=4)
    assert status == 200 and [s for s, _ in answer["neighbours"]] == [s for s, _ in expected]
    assert [d for _, d in answer["neighbours"]] == pytest.approx([d for _, d in expected], abs=1e-6)
    status, answer = post(server, "map", {"size": CORPUS_SIZE, "prior": 20, "seed": 2})
    assert status == 200 and len(answer["corpus"]["x"]) == CORPUS_SIZE and answer["corpus"]["text"] == corpus
    assert answer["prior"]["text"] == model.sample(20, seed=2) and len(answer["prior"]["y"]) == 20
    assert answer["prior_kind"] == "normal" and answer["prior_name"] == "N(0, I)"
    # the model's fitted prior, as sample(..., prior="fitted") draws it: its sentences, and its codes on the map
    status, answer = post(server, "sample", {"n": "7", "seed": "3", "prior_kind": "fitted"})
    fitted = model.sample(7, seed=3, prior="fitted")
    assert status == 200 and answer["samples"] == fitted and answer["prior_kind"] == "fitted"
    assert fitted != model.sample(7, seed=3) and "one full-covariance Gaussian" in answer["prior_name"]
    status, answer = post(server, "map", {"size": CORPUS_SIZE, "prior": 20, "seed": 2, "prior_kind": "fitted"})
    assert status == 200 and answer["prior"]["text"] == model.sample(20, seed=2, prior="fitted")
    from fairseq_wae.explore.service import pca_axes

    mean, axes, _ = pca_axes(model.encode(corpus).double())
    expected = (model.prior_codes(20, seed=2, prior="fitted").double() - mean) @ axes.T
    assert torch.tensor([answer["prior"]["x"], answer["prior"]["y"]]).T.double() == pytest.approx(expected, abs=1e-3)
    with urllib.request.urlopen(f"{server}/api/card") as response:
        card = json.loads(response.read())
    assert card["title"] == "lstm_ae_tiny trained with ae_cross_entropy" and "## Training" in card["card"]
    assert ["architecture", "lstm_ae_tiny"] in card["summary"] and card["corpus_sentences"] == CORPUS_SIZE
    assert list(card["priors"]) == ["normal", "fitted"] and "## Fitted prior" in card["card"]


def test_bad_input_gets_a_message_and_the_server_keeps_serving(server):
    refused = [
        ("reconstruct", {"sentences": "   "}, "sentences is empty"),
        ("reconstruct", {"sentences": "a" * 10_000}, "10,000 characters: at most 1,000"),
        ("reconstruct", {"sentences": "qqq zzz xxq"}, "has no word in the model's dictionary"),
        ("interpolate", {"start": "a dog .", "end": "a cat .", "steps": 10**6}, "steps must be between 2 and 100"),
        ("interpolate", {"start": "", "end": "a cat ."}, "start is empty"),
        ("sample", {"n": 10**6}, "n must be between 1 and 1,000"),
        ("sample", {"latent_temperature": 0}, "latent_temperature must be a finite number greater than 0"),
        ("sample", {"latent_temperature": "NaN"}, "latent_temperature must be a finite number greater than 0"),
        ("sample", {"decoding": "sampling", "temperature": "nan"}, "temperature must be a finite number"),
        ("sample", {"seed": -1}, "seed must be between 0 and 4,294,967,295"),
        ("neighbours", {"sentence": "a dog .", "k": 10**6}, "k must be between 1 and 100"),
        ("map", {"size": 10**6}, "size must be between 0 and 10,000"),
        ("map", {"method": "../../etc/passwd"}, "method must be one of pca"),
        ("map", {"prior_kind": "uniform"}, "prior_kind must be one of normal, fitted, got 'uniform'"),
        ("sample", None, "must be a JSON object"),
    ]
    for route, body, message in refused:
        status, answer = post(server, route, body)
        assert status == 400 and message in answer["error"], (route, body, answer)
    status, answer = post(server, "sample", None, raw=b"{not json")
    assert status == 400 and "not JSON" in answer["error"]
    # the page names no file: the static files are a fixed list
    for name in ("..%2F..%2Fsetup.py", "app.py", "index.html"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server}/static/{name}")
        assert missing.value.code == 404
    status, answer = post(server, "sample", {"n": 2, "seed": 1})
    assert status == 200 and len(answer["samples"]) == 2


def test_fifty_requests_at_once_are_answered_or_refused_and_identical_maps_drawn_once(server):
    """The model's queue holds 16 waiting requests: of 50 sent at once, each is answered, or refused (503)
    with the message the page shows; then 30 identical map requests at once are all answered, as one."""
    requests = [("sample", {"n": 5, "seed": 9}), ("reconstruct", {"sentences": "a dog is carrying a box ."}),
                ("interpolate", {"start": "a dog is carrying a box .", "end": "a cat sleeps ."}),
                ("reconstruct", {"sentences": "a dog is carrying a box .", "decoding": "sampling", "sampling_seed": 3}),
                ("sample", {"n": 12, "seed": 2, "decoding": "beam", "beam": 4})] * 10
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda request: post(server, *request), requests))
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 17, statuses
    assert all("the model is busy" in answer["error"] for status, answer in answers if status == 503)
    # the model takes them in turn: seeded draws are not mixed up by requests running beside them
    for kind in range(5):
        same = [answers[i] for i in range(kind, 50, 5) if answers[i][0] == 200]
        assert same and all(answer == same[0] for answer in same)
    the_map = ("map", {"size": 100, "prior": 50, "seed": 77})  # not drawn before: 50 prior samples decoded
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda _: post(server, *the_map), range(30)))
    assert all(answer == answers[0] for answer in answers) and answers[0][0] == 200, answers[0]


def test_requests_for_another_host_or_from_another_origin_are_refused(served):
    """DNS rebinding (a page that points its own name at 127.0.0.1) and cross-site POSTs: 403, each logged
    in one line; the names the server is for are answered."""
    url, log = served
    port = url.rsplit(":", 1)[1]
    logged = log.read_text().count("refused ")
    card = f"{url}/api/card"
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example", ""):
        for route, data in (("/", None), ("/api/card", None), ("/static/explore.js", None), ("/api/map", b"{}")):
            status, answer = ask(url + route, data, {"Host": host, "Origin": f"http://{host}",
                                                     "Content-Type": "application/json"})
            assert status == 403 and f"does not answer for the host {host!r}" in answer["error"], (host, route)
    for host in (f"localhost:{port}", f"[::1]:{port}", f"127.0.0.1:{port}", f"explore.test:{port}", "EXPLORE.test"):
        status, answer = ask(card, headers={"Host": host})
        assert status == 200 and answer["corpus_sentences"] == CORPUS_SIZE, host
    refused = [({"Origin": None}, 403, "not for the origin None"),
               ({"Origin": "http://attacker.example"}, 403, "not for the origin 'http://attacker.example'"),
               ({"Origin": "null"}, 403, "not for the origin 'null'"),
               ({"Origin": url.replace("127.0.0.1", "localhost")}, 403, "own page only"),
               ({"Origin": None, "Referer": "http://attacker.example/?q=" + url}, 403, "own page only"),
               ({"Content_Type": None}, 415, "Content-Type: application/json"),
               ({"Content_Type": "text/plain"}, 415, "Content-Type: application/json"),
               ({"Content_Type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json")]
    for headers, code, message in refused:
        status, answer = post(url, "sample", {"n": 1}, **headers)
        assert status == code and message in answer["error"], (headers, answer)
    status, answer = ask(url + "/api/sample", b"{}", {"Origin": url, "Content-Type": "application/json"}, method="PUT")
    assert status == 405
    # the page's own requests: its Origin, or (a browser that sends none) its Referer
    assert post(url, "sample", {"n": 1})[0] == 200
    assert post(url, "sample", {"n": 1}, Origin=None, Referer=f"{url}/")[0] == 200
    assert post(url, "sample", {"n": 1}, Content_Type="application/json; charset=utf-8")[0] == 200
    time.sleep(0.2)
    assert log.read_text().count("refused ") - logged == 4 * 4 + len(refused) + 1


def raw_request(url, head: bytes, chunks=()):
    """The answer (status line, headers and body, as text) a server gives to ``head`` (request line and
    headers) and then ``chunks`` of a body, sent over one socket; the server closes it after a refusal."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
        return sock.makefile("rb").read().decode()


def test_bodies_over_a_megabyte_are_refused_before_they_are_read(server):
    head = (f"POST /api/sample HTTP/1.1\r\nHost: {server.split('//')[1]}\r\nOrigin: {server}\r\n"
            "Content-Type: application/json\r\n")
    # a Content-Length of 100 MB and no body sent: answered at once, from the header alone
    started = time.perf_counter()
    answer = raw_request(server, f"{head}Content-Length: 1000001\r\n\r\n".encode())
    assert answer.startswith("HTTP/1.1 413") and '{"error": "the request body is over 1,000,000 bytes"}' in answer
    assert raw_request(server, f"{head}Content-Length: 100000000\r\n\r\n".encode()).startswith("HTTP/1.1 413")
    assert time.perf_counter() - started < 5
    # a chunked body has no length: counted while read, refused once past 1,000,000 bytes (the 21st
    # chunk: all that was sent is read, so the answer is not lost to a reset connection)
    chunk = b"%x\r\n%s\r\n" % (50_000, b" " * 50_000)
    answer = raw_request(server, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode(), [chunk] * 21)
    assert answer.startswith("HTTP/1.1 413") and "over 1,000,000 bytes" in answer, answer
    status, answer = post(server, "sample", None, raw=json.dumps({"n": 1, "pad": " " * 990_000}).encode())
    assert status == 200 and len(answer["samples"]) == 1


def test_costly_requests_are_refused_naming_the_limit(server):
    from fairseq_wae.explore.limits import MAX_DECODING, PROJECTION_LIMITS

    over = f"over the limit of {MAX_DECODING:,} per request"
    for route, body, message in (
            ("sample", {"n": 1000, "decoding": "beam", "beam": 20}, "(1,000 sentence(s) x beam 20 + 8) x up to 30 tokens"),
            ("sample", {"n": 59}, "(59 sentence(s) x beam 1 + 8) x up to 30 tokens (max_len) is 2,010 decoding steps"),
            ("sample", {"n": 3, "max_len": 200}, "(3 sentence(s) x beam 1 + 8) x up to 200 tokens"),
            ("interpolate", {"start": "a dog .", "end": "a cat .", "steps": 100, "decoding": "beam", "beam": 20}, over),
            ("reconstruct", {"sentences": "a dog .\n" * 100, "decoding": "beam", "beam": 20}, over),
            ("map", {"prior": 1000}, "map (its prior samples)"),
            ("map", {"prior": 26, "max_len": 100}, "map (its prior samples)")):
        status, answer = post(server, route, body)
        assert status == 400 and over in answer["error"] and message in answer["error"], (route, answer)
    methods = ask(f"{server}/api/card")[1]["projection_methods"]
    for method in set(methods) & set(PROJECTION_LIMITS):
        status, answer = post(server, "map", {"size": CORPUS_SIZE, "prior": 10, "method": method})
        assert status == 400 and f"{CORPUS_SIZE + 10} codes (at most {PROJECTION_LIMITS[method]:,})" in answer["error"]
    assert post(server, "sample", {"n": 2, "max_len": 200})[0] == 200  # the limits let these through
    assert post(server, "sample", {"n": 58})[0] == 200
    assert post(server, "sample", {"n": 1, "max_len": 201})[1]["error"] == "max_len must be between 1 and 200, got 201"


def chromium_or_fail():
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is not installed: run scripts/setup.sh (pip install -e .[test,explore])")
    from fairseq_wae.explore.browser import find_browser

    problem = find_browser()[2]
    if problem:
        pytest.fail(problem)


class ServedInThread:
    """``create_app(ExploreService(model), token=token)`` served by uvicorn on a thread of this process, on
    127.0.0.1 (``port`` 0: a free one): the app of a server started with a non-loopback --host, which a
    test must not bind; ``stop()`` and a new one on the same port are a server restarted."""

    def __init__(self, service, token=None, port=0):
        import uvicorn

        from fairseq_wae.cli.explore import listening_socket
        from fairseq_wae.explore.app import create_app

        self.socket = listening_socket("127.0.0.1", port)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(service, token=token), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


@pytest.fixture(scope="module")
def bare_service(explored):
    """The page's service of the module's model, without a corpus (nothing encoded at start)."""
    from fairseq_wae.explore.service import ExploreService, model_card

    model = explored[3].model
    return ExploreService(model, [], model_card(model))


def test_a_server_for_other_machines_asks_for_the_token_it_printed(bare_service):
    token = "a-token-of-the-test"
    served = ServedInThread(bare_service, token=token)
    url = served.url
    try:
        for route in ("/", "/static/explore.js", "/api/card", "/?token=wrong"):
            status, answer = ask(url + route)
            assert status == 403 and "no valid token" in answer["error"], route
        assert post(url, "sample", {"n": 1})[0] == 403
        # the URL printed at start: the page, and a cookie that the page's next requests carry
        with urllib.request.urlopen(f"{url}/?token={token}") as response:
            cookie = response.headers["Set-Cookie"].split(";")[0]
            assert response.status == 200 and b"fairseq-wae-explore" in response.read()
        assert cookie.endswith("=" + token) and "HttpOnly" in response.headers["Set-Cookie"]
        assert ask(f"{url}/static/explore.js", headers={"Cookie": cookie})[0] == 200
        assert ask(f"{url}/api/card", headers={"Cookie": cookie})[0] == 200
        assert post(url, "sample", {"n": 1}, Cookie=cookie)[0] == 200
        assert post(url, "sample", {"n": 1}, X_Explore_Token=token)[0] == 200
        assert post(url, "sample", {"n": 1}, Cookie=cookie.split("=")[0] + "=wrong")[0] == 403
    finally:
        served.stop()


def test_the_fitted_prior_is_refused_for_a_model_without_one(overfit_dae):
    """The checkpoint itself (no prior.pt beside it): N(0, I) alone is offered, and "fitted" refused in one line."""
    from fairseq_wae.explore.service import ExploreService, model_card
    from fairseq_wae.models.hub_interface import from_checkpoint

    data, ckpt, _ = overfit_dae
    model = from_checkpoint(str(ckpt / "checkpoint_best.pt"), str(data))
    served = ServedInThread(ExploreService(model, [], model_card(model)))
    try:
        assert ask(f"{served.url}/api/card")[1]["priors"] == {"normal": "N(0, I)"}
        for route in ("sample", "map"):
            status, answer = post(served.url, route, {"n": 2, "prior": 2, "prior_kind": "fitted"})
            assert status == 400 and answer["error"] == (
                "prior_kind 'fitted': this model carries no fitted prior (its folder holds no prior.pt): fit one "
                "with fairseq-wae-fit-prior and export the model with --prior FILE"), (route, answer)
        assert post(served.url, "sample", {"n": 2, "prior_kind": "normal"})[0] == 200
    finally:
        served.stop()


def prefixing_proxy(target: str, prefix: str) -> ThreadingHTTPServer:
    """A proxy on 127.0.0.1 that serves ``target``'s /PATH as ``prefix``/PATH, as JupyterHub's proxy or an
    editor's port forwarding do (the Host header kept); its URL is ``proxy.url``; stopped by ``shutdown()``."""
    host, port = target.split("//")[1].split(":")

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            if not self.path.startswith(prefix + "/"):
                self.send_error(404)
                return
            length = int(self.headers.get("Content-Length") or 0)
            upstream = http.client.HTTPConnection(host, int(port), timeout=60)
            upstream.request(self.command, self.path[len(prefix):], body=self.rfile.read(length) if length else None,
                             headers={k: v for k, v in self.headers.items() if k.lower() != "connection"})
            response = upstream.getresponse()
            body = response.read()
            upstream.close()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = forward

        def log_message(self, *args):
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    proxy.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{proxy.server_address[1]}{prefix}/"
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


def test_the_page_in_a_headless_browser_behind_a_path_prefix_shows_what_the_interface_gives(server, explored,
                                                                                            tmp_path):
    chromium_or_fail()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from fairseq_wae.explore.browser import HeadlessChromium

    _, _, corpus, model = explored
    with HeadlessChromium(1200, 1400) as browser:
        find = browser.find_element

        def answered(section):
            WebDriverWait(browser, 60, poll_frequency=0.05).until(lambda b: find(By.ID, section).get_attribute("data-state") in ("done", "error"))
            return find(By.ID, section).get_attribute("data-state")

        def lines(list_id):
            return [item.text for item in browser.find_elements(By.CSS_SELECTOR, f"#{list_id} li")]

        def type_into(element_id, text):
            find(By.ID, element_id).clear()
            find(By.ID, element_id).send_keys(text)

        proxy = prefixing_proxy(server, "/user/me/proxy/7860")  # every request of the page through it
        browser.get(proxy.url)
        WebDriverWait(browser, 60, poll_frequency=0.05).until(lambda b: b.execute_script("return document.body.dataset.ready"))
        assert find(By.ID, "card-title").text == "lstm_ae_tiny trained with ae_cross_entropy"

        type_into("rec-input", "a dog is carrying a box .\na qqzx is carrying a box .")
        find(By.ID, "rec-button").click()
        assert answered("reconstruct") == "done"
        assert lines("rec-output") == model.reconstruct(["a dog is carrying a box .", "a qqzx is carrying a box ."])
        # the word the dictionary does not hold, marked, and <unk> marked wherever a reconstruction has it
        assert [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#rec-unknown mark.unk")] == ["qqzx"]
        assert "line 2: unknown to the model" in find(By.ID, "rec-unknown").text
        assert browser.execute_script("const item = document.createElement('li'); "
                                      "withUnknownMarked(item, 'a <unk> is <unk> .'); "
                                      "return [item.textContent, item.querySelectorAll('mark.unk').length]") == [
            "a <unk> is <unk> .", 2]

        type_into("int-start", "a dog is carrying a box .")
        type_into("int-end", "four girls are swimming in the lake .")
        type_into("int-steps", "5")
        find(By.ID, "int-button").click()
        assert answered("interpolate") == "done"
        assert lines("int-output") == model.interpolate("a dog is carrying a box .",
                                                        "four girls are swimming in the lake .", steps=5)

        Select(find(By.ID, "decoding")).select_by_value("sampling")
        type_into("sam-n", "6")
        type_into("sam-seed", "4")
        type_into("sam-temp", "0.9")
        find(By.ID, "sam-button").click()
        assert answered("sample") == "done"
        assert lines("sam-output") == model.sample(6, seed=4, latent_temperature=0.9, sampling=True)
        assert find(By.ID, "sam-download").get_attribute("href").startswith("blob:")

        # a bad input: the message on the page; then a good request still answered
        type_into("sam-temp", "0")
        find(By.ID, "sam-button").click()
        assert answered("sample") == "error"
        assert "latent_temperature must be a finite number greater than 0" in find(By.ID, "sam-error").text
        type_into("sam-temp", "1")
        find(By.ID, "sam-button").click()
        assert answered("sample") == "done" and find(By.ID, "sam-error").text == ""
        assert lines("sam-output") == model.sample(6, seed=4, sampling=True)
        assert find(By.ID, "sam-prior-used").text == "sampled from N(0, I)"
        # the model carries a fitted prior: the choice is offered, and its samples shown, with the prior named
        assert find(By.ID, "sam-prior-kind").is_displayed() and find(By.ID, "map-prior-kind").is_displayed()
        Select(find(By.ID, "sam-prior-kind")).select_by_value("fitted")
        find(By.ID, "sam-button").click()
        assert answered("sample") == "done"
        assert lines("sam-output") == model.sample(6, seed=4, sampling=True, prior="fitted")
        assert find(By.ID, "sam-prior-used").text.startswith("sampled from the fitted prior (one full-covariance")

        Select(find(By.ID, "decoding")).select_by_value("greedy")
        type_into("nn-input", "a dog is eating outside .")
        find(By.ID, "nn-button").click()
        assert answered("neighbours") == "done"
        shown = [row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "#nn-output tr")]
        assert shown == [s for s, _ in model.nearest("a dog is eating outside .", corpus, k=5)]

        Select(find(By.ID, "map-prior-kind")).select_by_value("fitted")
        find(By.ID, "map-button").click()
        assert answered("map-section") == "done"
        assert browser.execute_script("return document.getElementById('map').data[0].x.length") == len(corpus)
        assert browser.execute_script("return document.getElementById('map').data[1].hovertext") == model.sample(
            50, seed=1, prior="fitted")
        assert "50 prior samples from the fitted prior" in find(By.ID, "map-status").text
        assert int(find(By.ID, "map-status").get_attribute("data-points")) == len(corpus) + 50
        # a click on a point: its sentence and its reconstruction
        point = browser.find_elements(By.CSS_SELECTOR, "#map .scatterlayer .trace:first-child .point")[0]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
        ActionChains(browser).move_to_element(point).pause(0.3).click().perform()
        WebDriverWait(browser, 30, poll_frequency=0.05).until(lambda b: "reconstruction:" in find(By.ID, "map-click").text)
        sentence, reconstruction = [line.split(": ", 1)[1] for line in find(By.ID, "map-click").text.splitlines()]
        shown = browser.execute_script("const map = document.getElementById('map'); "
                                       "return map.data[0].hovertext.concat(map.data[1].hovertext)")
        assert sentence in shown and reconstruction == model.reconstruct([sentence])[0]

        # the interpolation, drawn on the map as a path: its codes in the map's PCA projection
        find(By.ID, "int-button").click()
        assert answered("interpolate") == "done"
        path = browser.execute_script("const trace = document.getElementById('map').data[2]; "
                                      "return [trace.name, trace.x, trace.y, trace.hovertext]")
        from fairseq_wae.explore.service import pca_axes

        mean, axes, _ = pca_axes(model.encode(corpus).double())
        expected = (model.interpolation_codes("a dog is carrying a box .", "four girls are swimming in the lake .",
                                              steps=5).double() - mean) @ axes.T
        assert path[0] == "interpolation" and path[3] == lines("int-output")
        assert torch.tensor([path[1], path[2]], dtype=torch.float64).T == pytest.approx(expected, abs=1e-3)
        browser.save_screenshot(str(tmp_path / "explore.png"))
        proxy.shutdown()
    assert (tmp_path / "explore.png").stat().st_size > 10_000


def test_a_page_left_open_across_a_restart_says_so_and_goes_on(bare_service):
    """The page of a server that stops says so on its next request, and goes on with the server started
    again on the same port (a new X-Explore-Server id), the token's cookie kept."""
    chromium_or_fail()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from fairseq_wae.explore.browser import HeadlessChromium

    token = "the-token-kept-across-the-restart"
    served = ServedInThread(bare_service, token=token)
    port = served.url.rsplit(":", 1)[1]
    try:
        with HeadlessChromium(1000, 800) as browser:
            find = browser.find_element

            def reconstruct():
                find(By.ID, "rec-button").click()
                WebDriverWait(browser, 30, poll_frequency=0.05).until(
                    lambda b: find(By.ID, "reconstruct").get_attribute("data-state") in ("done", "error"))
                return find(By.ID, "reconstruct").get_attribute("data-state")

            browser.get(f"{served.url}/?token={token}")
            WebDriverWait(browser, 30, poll_frequency=0.05).until(lambda b: b.execute_script("return document.body.dataset.ready"))
            find(By.ID, "rec-input").send_keys("a dog is carrying a box .")
            assert reconstruct() == "done" and not find(By.ID, "server-status").is_displayed()
            served.stop()
            assert reconstruct() == "error" and "the server does not answer" in find(By.ID, "rec-error").text
            assert find(By.ID, "server-status").text == "the server does not answer"
            served = ServedInThread(bare_service, token=token, port=int(port))
            assert reconstruct() == "done" and find(By.ID, "rec-error").text == ""
            assert "the server was restarted" in find(By.ID, "server-status").text
    finally:
        served.stop()


def test_the_command_refuses_what_it_cannot_serve(explored, tmp_path):
    from fairseq_wae.cli.explore import main

    export, corpus_file, _, _ = explored
    (tmp_path / "unknown.txt").write_text("qqq zzz\n")
    # read as preparation reads a corpus: one line of 2 MiB, a binary file, a line that is not UTF-8
    (tmp_path / "long.txt").write_bytes(b"a dog .\n" + b"a" * (2 << 20) + b"\n")
    (tmp_path / "binary.txt").write_bytes(b"a dog .\n\x00\x01\x02\n")
    (tmp_path / "latin1.txt").write_bytes("a dog .\n\nun caf\u00e9 .\n".encode("latin-1"))
    for argv, message in (
            ([str(export), "--corpus", str(tmp_path / "long.txt")], "long.txt, line 2: longer than 1,048,576 bytes"),
            ([str(export), "--corpus", str(tmp_path / "binary.txt")], "binary.txt looks like a binary file"),
            ([str(export), "--corpus", str(tmp_path / "latin1.txt")], "latin1.txt, line 3: not valid UTF-8"),
            ([str(tmp_path / "nothing")], "is not a folder"),
            ([str(export / "model.pt")], "is a checkpoint file: give --data"),
            ([str(export), "--corpus", str(tmp_path / "missing.txt")], "--corpus"),
            ([str(export), "--corpus", str(tmp_path / "unknown.txt")], "--corpus: sentence 1 ('qqq zzz') has no word"),
            ([str(export), "--port", "70000"], "--port must be in 0 .. 65535")):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        assert message in str(refused.value.code), (argv, refused.value.code)
