"""What the tests share: running the real CLI, the toy corpus, fairseq-train command lines, json logs, and
the criterions built in process by fairseq's own option parsing. Fixtures live in conftest.py."""
import os
import pickle
import shutil
import subprocess as _subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_wae")
# keep every CLI run on the CPU and quiet about warnings we cannot fix
CLI_ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest-xdist's workers take every core already (conftest.py)
    CLI_ENV["OMP_NUM_THREADS"] = "1"


#: fairseq's own commands that the tests run in this process (fairseq's own tests do the same), saving
#: each one's start-up (importing torch and fairseq); TESTS_IN_PROCESS=0 runs them as processes.
#: ``run(..., subprocess=True)`` keeps a real process where it is the point (kill -9, a lock held by
#: another process, stdin).
IN_PROCESS = {"fairseq-train": "fairseq_cli.train", "fairseq-generate": "fairseq_cli.generate",
              "fairseq-validate": "fairseq_cli.validate", "fairseq-preprocess": "fairseq_cli.preprocess",
              "fairseq-interactive": "fairseq_cli.interactive"}
#: fairseq-hydra-train's module, run in this process by the hydra tests alone (with hydra's run folder theirs)
HYDRA_TRAIN = "fairseq_cli.hydra_train"
#: and the plugin's own tools, whose scripts/*.py only call these modules' ``main``
OUR_SCRIPTS = {REPO / "scripts" / f"{script}.py": f"fairseq_wae.cli.{module}" for script, module in (
    ("prepare_corpus", "prepare_corpus"), ("prepare_snli", "prepare_snli"), ("evaluate", "evaluate"),
    ("interpolate", "interpolate"), ("export_model", "export"), ("bind_dictionary", "bind_dictionary"),
    ("verify", "verify"), ("fit_prior", "fit_prior"))}
#: and the scripts that hold their own ``main`` (loaded from the file, as ``python scripts/NAME.py`` runs it)
SCRIPTS_WITH_MAIN = {REPO / "scripts" / f"{script}.py" for script in (
    "extract_hypotheses", "latent_coverage", "latent_metrics", "train_lm", "train_word2vec")} | {
    REPO / "examples" / "snli" / "report.py"}


def in_process_allowed() -> bool:
    """False under TESTS_IN_PROCESS=0: every command a real process."""
    return os.environ.get("TESTS_IN_PROCESS", "1") != "0"


def in_process(cmd):
    """(the module whose entry point runs ``cmd`` in this process, its sys.argv), or None for a real process."""
    if not in_process_allowed():
        return None
    if cmd[0] in IN_PROCESS:
        return IN_PROCESS[cmd[0]], cmd
    if cmd[0] == sys.executable and len(cmd) > 1:
        script = Path(cmd[1])
        if script in OUR_SCRIPTS:
            return OUR_SCRIPTS[script], cmd[1:]
        if script in SCRIPTS_WITH_MAIN:
            return script, cmd[1:]
    return None


def load_script(path: Path):
    """The module of a script file (``scripts/NAME.py``), loaded as a module named NAME: its functions
    without running its ``if __name__ == "__main__"`` block."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(cmd, cwd=None, check=True, timeout=600, subprocess=False, input=None):
    """Runs a command (a list), returning a CompletedProcess; on failure shows its output. ``input``: the text
    typed into it; fairseq-interactive in this process reads it as ``--input FILE``, through the same reader
    (fairseq's ``fileinput`` loop) that reads standard input."""
    cmd = [str(c) for c in cmd]
    entry = None if cwd is not None or subprocess else in_process(cmd)
    if entry and input is not None:
        if cmd[0] != "fairseq-interactive":
            raise ValueError(f"typed input is for fairseq-interactive or a real process, not {cmd[0]}")
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".typed.txt", delete=False, encoding="utf-8") as typed:
            typed.write(input)
        try:
            result = run_in_process(entry[0], [*entry[1], "--input", typed.name])
        finally:
            os.remove(typed.name)
    elif entry:
        result = run_in_process(*entry)
    else:
        result = _subprocess.run(cmd, cwd=cwd, env=CLI_ENV, capture_output=True, text=True, timeout=timeout,
                                 input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-5000:]}")
    return result


def run_in_process(module_name, argv):
    """A command through its module's entry point in this process (fairseq's ``cli_main``, the plugin's
    ``main``) with ``argv`` as sys.argv: what it prints comes back as stdout, what it logs as stdout for
    fairseq's commands (fairseq logs there) and as stderr for the plugin's (they log there), an
    exception's traceback as stderr, and its exit status as the return code. fairseq's commands load their
    batches in this process (``--num-workers 0`` unless ``argv`` names it): the DataLoader worker that a
    command forks from this long-lived process is joined when its loader is collected, later, and that join
    waited seconds (fairseq-generate of 13 samples, run 4 times in one process: 5.0-6.4 s each, 0.8 s each
    with --num-workers 0; a real process of the same command: no wait)."""
    import contextlib
    import importlib
    import io
    import logging
    import traceback

    from fairseq import checkpoint_utils
    from fairseq.logging import progress_bar

    from fairseq_wae.errors import EXIT_STATUS, one_line, refusal_message

    # a script of SCRIPTS_WITH_MAIN, or a module
    module = load_script(module_name) if isinstance(module_name, Path) else importlib.import_module(module_name)
    fairseqs = module_name in IN_PROCESS.values() or module_name == HYDRA_TRAIN
    if module_name == HYDRA_TRAIN:  # hydra's overrides, not flags
        argv = argv if any(a.startswith("dataset.num_workers=") for a in argv) else [*argv, "dataset.num_workers=0"]
    elif fairseqs and module_name != IN_PROCESS["fairseq-preprocess"] and "--num-workers" not in argv:
        argv = [*argv, "--num-workers", "0"]
    # fairseq keeps a run's best validation loss on these functions: a new process starts without it
    for keeper in (checkpoint_utils.save_checkpoint, getattr(module, "should_stop_early", None)):
        for name in ("best", "num_runs"):
            if hasattr(keeper, name):
                delattr(keeper, name)
    # and its TensorBoard writers by subset alone ("train", "valid"), whatever --tensorboard-logdir says
    for writer in progress_bar._tensorboard_writers.values():
        writer.close()
    progress_bar._tensorboard_writers.clear()
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(out if fairseqs else err)
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s" if fairseqs
                                           else "%(message)s"))
    root = logging.getLogger()
    saved = sys.argv, root.handlers[:], root.level
    sys.argv, root.handlers = argv, [handler]
    root.setLevel(logging.INFO)
    returncode = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            returned = module.cli_main() if fairseqs else module.main()
        returncode = returned if isinstance(returned, int) else 0
    except SystemExit as e:  # argparse's refusals, and commands that exit with a status
        returncode = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            err.write(f"{e.code}\n")
    except Exception as error:  # as the plugin's sys.excepthook shows it (fairseq_wae.errors)
        line = one_line(error)
        err.write(traceback.format_exc() if line is None else f"{line}\n")
        returncode = 1 if refusal_message(error) is None else EXIT_STATUS
    finally:
        sys.argv, root.handlers = saved[0], saved[1]
        root.setLevel(saved[2])
    return _subprocess.CompletedProcess(argv, returncode, out.getvalue(), err.getvalue())


def start_workers(worker, args, nprocs=2):
    """``torch.multiprocessing.spawn(worker, (*args, results), nprocs)``; returns ``results``, the dict the
    workers filled. The workers are forked from a server that imported torch, fairseq and the plugin once
    for this test process: a spawned worker imports them again (5-9 s of CPU each, most of such a test), a
    forked one starts at once. Not forked from this process itself: its threads (torch's, pytest's) would
    be copied in whatever state they are in."""
    import multiprocessing

    import torch.multiprocessing

    multiprocessing.set_forkserver_preload(["torch", "fairseq", "fairseq_wae", "helpers"])
    with multiprocessing.get_context("forkserver").Manager() as manager:
        results = manager.dict()
        torch.multiprocessing.start_processes(worker, args=(*args, results), nprocs=nprocs, join=True,
                                              start_method="forkserver")
        return dict(results)


FORKED_RANK = REPO / "tests" / "shims" / "forked_rank.py"
_rank_server = []


def forked_ranks(script=None) -> dict:
    """The environment in which scripts/train_distributed_cpu.sh starts each rank as ``python SCRIPT``
    (fairseq-train's console script unless ``script`` says) forked from a server of tests/shims/forked_rank.py
    that imported torch and fairseq once for this test process; under TESTS_IN_PROCESS=0 each rank a new
    interpreter, as the launcher starts them for a user."""
    if not in_process_allowed():
        return {"FAIRSEQ_TRAIN": f"{sys.executable} {script}"} if script else {}
    if not _rank_server:
        import atexit
        import tempfile

        address = os.path.join(tempfile.mkdtemp(prefix="forked-rank-"), "socket")
        server = _subprocess.Popen([sys.executable, str(FORKED_RANK), "--serve", address], env=CLI_ENV,
                                   stdout=_subprocess.PIPE, stderr=_subprocess.DEVNULL, text=True)
        if server.stdout.readline() != "ready\n":
            raise RuntimeError(f"{FORKED_RANK} did not start (status {server.wait()})")
        atexit.register(server.kill)
        _rank_server.append(address)
    script = script or shutil.which("fairseq-train")
    return {"FAIRSEQ_TRAIN": f"{sys.executable} {FORKED_RANK} {script}", "FORKED_RANK_SERVER": _rank_server[0]}


def toy_sentences(n, seed=1):
    out = run([sys.executable, REPO / "scripts" / "make_toy_corpus.py", "--num-sentences", n, "--seed", seed])
    return out.stdout.splitlines()


def preprocess(folder: Path, splits: dict) -> Path:
    """Writes ``splits`` ({name: sentences}) as text and binarizes them with fairseq-preprocess."""
    folder.mkdir(parents=True, exist_ok=True)
    args = ["fairseq-preprocess", "--only-source", "--destdir", folder / "bin", "--workers", "1"]
    for name, sentences in splits.items():
        (folder / f"{name}.txt").write_text("\n".join(sentences) + "\n")
        args += [f"--{'train' if name == 'train' else name}pref", folder / f"{name}.txt"]
    run(args)
    return folder / "bin"


def train_command(data, save_dir, *extra, arch="lstm_wae_tiny", criterion="wae_mmd", epochs=3, batch_size=32):
    """The fairseq-train command line the tests train with (json log)."""
    return [
        "fairseq-train", data, "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch", arch,
        "--criterion", criterion, "--optimizer", "adam", "--lr", "0.005", "--clip-norm", "5",
        "--batch-size", batch_size, "--max-epoch", epochs, "--cpu", "--seed", "1", "--save-dir", save_dir,
        "--no-epoch-checkpoints", "--log-format", "json", "--log-interval", "10",
        # batches made in the training process: the same batches, without a loader process forked each epoch
        "--num-workers", "0", *extra,
    ]


def train(data, save_dir, *extra, **options):
    """fairseq-train through the real CLI; returns the parsed json log records."""
    result = run(train_command(data, save_dir, *extra, **options))
    return parse_json_log(result.stdout + result.stderr)


def parse_json_log(text):
    from fairseq_wae.logs import json_log_records

    return json_log_records(text.splitlines())


def validate_record(result):
    """fairseq-validate's json record in a command's output (it has no epoch, so parse_json_log leaves it out)."""
    import json

    line = [line for line in (result.stdout + result.stderr).splitlines() if "| valid |" in line][-1]
    return json.loads(line[line.index("{"):])


_CONFIGS = {}


def configure(data, arch, criterion, *flags):
    """(task, config) as fairseq-train makes them from these flags. The config of the same flags is made
    once per test process (fairseq's conversion to hydra's config takes about 0.6 s; 113 calls in six test
    files made 86 distinct configs), each caller getting a copy and a task of its own."""
    import copy

    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = [str(data), "--user-dir", USER_DIR, "--task", "sentence_autoencoding", "--arch", arch,
            "--criterion", criterion, "--cpu", "--batch-size", "16", "--no-save", *map(str, flags)]
    if tuple(argv) not in _CONFIGS:
        args = options.parse_args_and_arch(options.get_training_parser(), argv)
        _CONFIGS[tuple(argv)] = convert_namespace_to_omegaconf(args)
    cfg = copy.deepcopy(_CONFIGS[tuple(argv)])
    return tasks.setup_task(cfg.task), cfg


def build(data, arch, criterion, *flags):
    """(task, model, criterion) as fairseq-train would build them from these flags."""
    task, cfg = configure(data, arch, criterion, *flags)
    return task, task.build_model(cfg.model), task.build_criterion(cfg.criterion)


def interface(task, model):
    """The Python interface around a model built in process (``build``): its batching and fairseq's
    search with fairseq-generate's defaults."""
    from fairseq.dataclass.configs import GenerationConfig
    from omegaconf import OmegaConf

    from fairseq_wae.models.hub_interface import AutoencoderHubInterface

    return AutoencoderHubInterface(OmegaConf.create({"generation": OmegaConf.structured(GenerationConfig)}), task, model)


def first_batch(task, size=16):
    task.load_dataset("train")
    dataset = task.dataset("train")
    return dataset.collater([dataset[i] for i in range(size)])


def one_update(task, model, crit, unmoved=()):
    """One Adam step on the first training batch; asserts a finite loss and that every trainable
    parameter moved, but those whose names contain a string of ``unmoved``. Returns the batch."""
    import torch

    sample = first_batch(task)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    loss, _, _ = crit(model, sample)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    still = {name for name, p in model.named_parameters() if p.requires_grad and torch.equal(before[name], p)}
    assert still == {name for name in still if any(part in name for part in unmoved)}, still
    return sample


def assert_beam_scores_equal_a_fresh_forward_pass(autoencoder, sentences, beam=5):
    """Beam search reorders the encoder output and the decoder's cached states at every step: if it
    mixed them up, the scores it reports would differ from teacher-forcing its own hypotheses from
    scratch. Checks every hypothesis of every sentence of a Python interface's model; returns how many."""
    import torch
    from fairseq.sequence_generator import SequenceGenerator

    model, dictionary = autoencoder.model, autoencoder.dictionary
    eos = dictionary.eos()
    tokens, lengths = next(autoencoder.batches(sentences, tokenize=False))
    generator = SequenceGenerator([model], dictionary, beam_size=beam)
    checked = 0
    with torch.no_grad():
        results = generator.generate([model], {"net_input": {"src_tokens": tokens, "src_lengths": lengths}})
        z = model.encoder(tokens, lengths)["z"]
        for row, nbest in enumerate(results):
            for hypothesis in nbest:
                target = hypothesis["tokens"].unsqueeze(0)
                prev = torch.cat([torch.tensor([[eos]]), target[:, :-1]], dim=1)
                logits, _ = model.decoder(prev, {"z": z[row : row + 1]})
                forced = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).view(-1)
                assert torch.allclose(forced, hypothesis["positional_scores"], atol=1e-4)
                checked += 1
    return checked


def generated_sentences(output: str):
    """fairseq-generate's hypotheses (H- lines) in the order of their ids."""
    found = {}
    for line in output.splitlines():
        if line.startswith("H-"):
            head, _, text = line.split("\t")
            found[int(head[2:])] = text
    return [found[i] for i in range(len(found))]


def built_once(tmp_path_factory, name, build):
    """``build(folder)``'s value, built once per test run whichever pytest-xdist worker asks first: the
    workers share one folder, the first builds under a file lock, the others wait and reuse its value."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder every worker's own temporary folder is in
    folder, value_path = root / name, root / f"{name}.pickle"
    with FileLock(str(root / f"{name}.lock")):
        if not value_path.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            value = build(folder)
            # written by this test run for itself: safe to unpickle, unlike a file a user hands in
            value_path.write_bytes(pickle.dumps(value))
        return pickle.loads(value_path.read_bytes())
