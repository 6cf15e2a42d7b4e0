"""fairseq-wae-explore: the server started once for the module on the DAE overfit to 50 sentences
(conftest.overfit_dae, exported), with 300 toy sentences as its corpus; its routes over HTTP against the
Python interface, its refusals, 20 requests at once, and the page in a real headless Chromium (Selenium
driving the distribution's chromium and chromedriver, which scripts/setup.sh installs)."""
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from helpers import CLI_ENV, REPO, run

CORPUS_SIZE = 300


def post(url, route, body, raw=None):
    """(status, answer) of a POST of ``body`` as JSON (or ``raw`` bytes) to /api/<route>."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/api/{route}", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def explored(overfit_dae, tmp_path_factory):
    """(export folder, corpus file, corpus sentences, the model loaded by from_pretrained)."""
    from fairseq_wae import LSTMAutoencoderModel

    data, ckpt, _ = overfit_dae
    folder = tmp_path_factory.mktemp("explore")
    run([sys.executable, REPO / "scripts" / "export_model.py", "--checkpoint", ckpt / "checkpoint_best.pt",
         "--data", data, "--out", folder / "model"])
    corpus = [line for line in (REPO / "examples" / "toy" / "sentences.txt").read_text().splitlines() if line][:CORPUS_SIZE]
    (folder / "corpus.txt").write_text("\n".join(corpus) + "\n")
    # one thread, as the server and pytest-xdist's workers run: the tiny model's decoding is 3x slower on
    # two threads that contend with the server's
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield folder / "model", folder / "corpus.txt", corpus, LSTMAutoencoderModel.from_pretrained(str(folder / "model"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def server(explored):
    """The URL of ``python -m fairseq_wae.cli.explore EXPORT --corpus FILE --port 0``, once it prints its
    ready line; stopped after the module's tests."""
    export, corpus_file, _, _ = explored
    command = [sys.executable, "-m", "fairseq_wae.cli.explore", str(export), "--corpus", str(corpus_file),
               "--port", "0", "--threads", "1"]
    process = subprocess.Popen(command, cwd=REPO, env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    watchdog = threading.Timer(120, process.kill)  # a server that never gets ready fails the tests, not hangs them
    watchdog.start()
    try:
        ready = process.stdout.readline()
        watchdog.cancel()
        if "serving" not in ready:
            process.kill()
            raise AssertionError(f"the server did not start: {ready}{process.stderr.read()[-3000:]}")
        assert "on http://127.0.0.1:" in ready, ready  # this machine only, unless --host says otherwise
        yield ready.split(" on ")[-1].strip()
    finally:
        watchdog.cancel()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
    with urllib.request.urlopen(f"{server}/api/card") as response:
        card = json.loads(response.read())
    assert card["title"] == "lstm_ae_tiny trained with ae_cross_entropy" and "## Training" in card["card"]
    assert ["architecture", "lstm_ae_tiny"] in card["summary"] and card["corpus_sentences"] == CORPUS_SIZE


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


def test_twenty_requests_at_once_are_all_answered(server):
    requests = [("sample", {"n": 5, "seed": 9}), ("reconstruct", {"sentences": "a dog is carrying a box ."}),
                ("interpolate", {"start": "a dog is carrying a box .", "end": "a cat sleeps ."}),
                ("reconstruct", {"sentences": "a dog is carrying a box .", "decoding": "sampling", "sampling_seed": 3})] * 5
    started = time.perf_counter()
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda request: post(server, *request), requests))
    assert [status for status, _ in answers] == [200] * 20, answers
    # the model takes them in turn: seeded draws are not mixed up by requests running beside them
    for kind in range(4):
        assert all(answers[i] == answers[kind] for i in range(kind, 20, 4))
    assert time.perf_counter() - started < 30


def chromium_or_fail():
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is not installed: run scripts/setup.sh (pip install -e .[test,explore])")
    from fairseq_wae.explore.browser import find_browser

    problem = find_browser()[2]
    if problem:
        pytest.fail(problem)


def test_the_page_in_a_headless_browser_shows_what_the_interface_gives(server, explored, tmp_path):
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

        browser.get(server)
        WebDriverWait(browser, 60, poll_frequency=0.05).until(lambda b: b.execute_script("return document.body.dataset.ready"))
        assert find(By.ID, "card-title").text == "lstm_ae_tiny trained with ae_cross_entropy"

        type_into("rec-input", "a dog is carrying a box .")
        find(By.ID, "rec-button").click()
        assert answered("reconstruct") == "done"
        assert lines("rec-output") == model.reconstruct(["a dog is carrying a box ."])

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

        Select(find(By.ID, "decoding")).select_by_value("greedy")
        type_into("nn-input", "a dog is eating outside .")
        find(By.ID, "nn-button").click()
        assert answered("neighbours") == "done"
        shown = [row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "#nn-output tr")]
        assert shown == [s for s, _ in model.nearest("a dog is eating outside .", corpus, k=5)]

        find(By.ID, "map-button").click()
        assert answered("map-section") == "done"
        assert browser.execute_script("return document.getElementById('map').data[0].x.length") == len(corpus)
        assert browser.execute_script("return document.getElementById('map').data[1].x.length") == 200
        assert int(find(By.ID, "map-status").get_attribute("data-points")) == len(corpus) + 200
        # a click on a point: its sentence and its reconstruction
        point = browser.find_elements(By.CSS_SELECTOR, "#map .scatterlayer .trace:first-child .point")[0]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
        ActionChains(browser).move_to_element(point).pause(0.3).click().perform()
        WebDriverWait(browser, 30, poll_frequency=0.05).until(lambda b: "reconstruction:" in find(By.ID, "map-click").text)
        sentence, reconstruction = [line.split(": ", 1)[1] for line in find(By.ID, "map-click").text.splitlines()]
        shown = browser.execute_script("const map = document.getElementById('map'); "
                                       "return map.data[0].hovertext.concat(map.data[1].hovertext)")
        assert sentence in shown and reconstruction == model.reconstruct([sentence])[0]
        browser.save_screenshot(str(tmp_path / "explore.png"))
    assert (tmp_path / "explore.png").stat().st_size > 10_000


def test_the_command_refuses_what_it_cannot_serve(explored, tmp_path):
    from fairseq_wae.cli.explore import main

    export, corpus_file, _, _ = explored
    (tmp_path / "unknown.txt").write_text("qqq zzz\n")
    for argv, message in (
            ([str(tmp_path / "nothing")], "is not a folder"),
            ([str(export / "model.pt")], "is a checkpoint file: give --data"),
            ([str(export), "--corpus", str(tmp_path / "missing.txt")], "--corpus"),
            ([str(export), "--corpus", str(tmp_path / "unknown.txt")], "--corpus: sentence 1 ('qqq zzz') has no word"),
            ([str(export), "--port", "70000"], "--port must be in 0 .. 65535")):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        assert message in str(refused.value.code), (argv, refused.value.code)
