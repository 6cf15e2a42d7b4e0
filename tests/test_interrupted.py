"""Interrupted, requeued, resumed: a job killed or preempted anywhere resumes, trains each sentence of an
epoch once whatever its new batching, and finds no stale lock and nothing half-written."""
import collections
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from helpers import CLI_ENV, built_once, parse_json_log, preprocess, run, run_in_process, toy_sentences, train_command

LOCK = "fairseq-wae.lock"
DAE = {"arch": "lstm_ae_tiny", "criterion": "ae_cross_entropy"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """160 training sentences: 10 batches of 16, 5 of 32."""
    def build(folder):
        sentences = toy_sentences(200, seed=9)
        return preprocess(folder, {"train": sentences[:160], "valid": sentences[160:]})

    return built_once(tmp_path_factory, "interrupted", build)


def trained_sentences(command):
    """fairseq-train run in this process: ({epoch: the ids of the sentences it trained, in order}, its log)."""
    from fairseq_wae.tasks.sentence_autoencoding import SentenceAutoencodingTask

    trained, train_step = collections.defaultdict(list), SentenceAutoencodingTask.train_step

    def recording(task, sample, *args, **kwargs):
        if sample["nsentences"]:
            trained[task.epoch] += sample["id"].tolist()
        return train_step(task, sample, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(SentenceAutoencodingTask, "train_step", recording)
        result = run_in_process("fairseq_cli.train", [str(c) for c in command])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return trained, result.stdout + result.stderr


# -- the batches of a resumed epoch -------------------------------------------------------------------

def resume_command(data, save_dir, *flags, epochs=2):
    return train_command(data, save_dir, "--disable-validation", *flags, epochs=epochs, batch_size=16, **DAE)


@pytest.fixture(scope="module")
def interrupted(data, tmp_path_factory):
    """The sentences of an uninterrupted 2-epoch run at batch 16 by epoch, and a save dir of the same run
    stopped at update 5 of 10 in epoch 1."""
    def build(folder):
        whole, _ = trained_sentences(resume_command(data, folder / "whole"))
        before, _ = trained_sentences(resume_command(data, folder / "stopped", "--max-update", "5",
                                                     "--save-interval-updates", "5"))
        return dict(whole), before, folder / "stopped"

    whole, before, stopped = built_once(tmp_path_factory, "interrupted-runs", build)
    assert sorted(whole[1]) == sorted(whole[2]) == list(range(160))
    assert list(before) == [1] and before[1] == whole[1][:80]  # the uninterrupted run's first five batches
    return whole, before[1], stopped


@pytest.mark.parametrize("batching", [["--batch-size", "32"], ["--max-tokens", "200"], ["--update-freq", "2"], [],
                                      "earlier release"])
def test_a_resume_with_other_batches_trains_each_sentence_of_the_epoch_once(data, interrupted, tmp_path, batching):
    whole, before, stopped = interrupted
    save_dir = shutil.copytree(stopped, tmp_path / "resumed")
    if batching == "earlier release":  # a checkpoint that does not name the sentences its epoch trained
        state = torch.load(save_dir / "checkpoint_last.pt", weights_only=True)
        for key in ("trained_sentences", "batches", "batches_left_out"):
            del state["extra_state"]["train_iterator"][key]
        torch.save(state, save_dir / "checkpoint_last.pt")
        after, log = trained_sentences(resume_command(data, save_dir, epochs=1))
        assert "cannot be told, so epoch 1 starts again from its first batch" in log
        assert sorted(after[1]) == list(range(160))  # retrained, never skipped
    else:
        # one epoch but in one case, which also shows that the next epoch is whole again
        epochs = 2 if batching == ["--batch-size", "32"] else 1
        after, log = trained_sentences(resume_command(data, save_dir, *batching, epochs=epochs))
        if batching:
            assert "training the 80 of its 160 sentences not trained yet" in log
        else:  # the same batches: fairseq's own skip, the uninterrupted run's order
            assert after[1] == whole[1][80:]
        assert sorted(before + after[1]) == list(range(160))  # each sentence of epoch 1 once
    assert list(after) == [1] or sorted(after[2]) == list(range(160))


class Sentences(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


@pytest.mark.parametrize("workers_before,workers_after", [(1, 3), (2, 1), (3, 2), (2, 2)])
def test_the_rest_of_an_epoch_is_dealt_to_any_number_of_workers_and_resumed_again(workers_before, workers_after):
    """Against a brute-force count: the sentences each worker gets after a resume, with another batch size
    and worker count, are exactly those the epoch has not trained, each once, and every worker gets as
    many batches as the others (data-parallel workers step together); a second interruption in that
    epoch resumes from what both parts trained."""
    from fairseq_wae.data.resumable_batches import ResumableEpochBatchIterator

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, size=101)

    def workers(count, batch_size, epoch=3):
        order = np.argsort(lengths, kind="stable")
        batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        return [ResumableEpochBatchIterator(Sentences(101), lambda ids: ids, batches, seed=5, num_shards=count,
                                            shard_id=rank, epoch=epoch) for rank in range(count)]

    def take(iterators, steps):
        seen = []
        for iterator in iterators:
            epoch = iterator.next_epoch_itr(shuffle=True)
            seen.append([i for _ in range(steps) for i in next(epoch)])
        return seen

    first = workers(workers_before, 8)
    trained = [i for ids in take(first, 2) for i in ids]
    state = first[0].state_dict()
    assert state["iterations_in_epoch"] == 2 and state["trained_sentences"].sum() == len(set(trained)) == len(trained)

    second = workers(workers_after, 5)
    for iterator in second:
        iterator.load_state_dict(state)
    dealt = [list(iterator.next_epoch_itr(shuffle=True)) for iterator in second]
    assert len({len(batches) for batches in dealt}) == 1  # as many batches for every worker
    assert sorted(trained + [i for batches in dealt for batch in batches for i in batch]) == list(range(101))

    second = workers(workers_after, 5)  # interrupted again in that epoch, after one more batch each
    for iterator in second:
        iterator.load_state_dict(state)
    partly = [i for ids in take(second, 1) for i in ids]
    third = workers(workers_after + 1, 7)
    for iterator in third:
        iterator.load_state_dict(second[0].state_dict())
    rest = [i for iterator in third for batch in iterator.next_epoch_itr(shuffle=True) for i in batch]
    assert sorted(trained + partly + rest) == list(range(101))  # each sentence of the epoch once
    following = [i for iterator in third for batch in iterator.next_epoch_itr(shuffle=True) for i in batch]
    assert third[0].epoch == 4 and sorted(following) == list(range(101))  # then whole epochs again


# -- the save dir's lock ------------------------------------------------------------------------------

def lock_is_free(save_dir) -> bool:
    """Whether another training could take ``save_dir``'s lock now (tried from a descriptor of its own,
    which the kernel's flock tells apart from this process's others)."""
    import fcntl

    try:
        descriptor = os.open(save_dir / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)


HOLDER = textwrap.dedent("""
    import sys, time
    from fairseq_wae.errors import CheckpointError
    from fairseq_wae.save_dir_lock import lock_save_dir
    while not __import__("os").path.exists(sys.argv[2]):  # all start together
        time.sleep(0.005)
    try:
        lock_save_dir(sys.argv[1])
        print("held", flush=True)
    except CheckpointError as e:
        print("refused:", e, flush=True)
    sys.stdin.read()
""")


def holders(save_dir, go, count):
    """``count`` processes that take ``save_dir``'s lock as a training does, all at once when ``go`` appears,
    and hold what they got until their standard input closes."""
    return [subprocess.Popen([sys.executable, "-c", HOLDER, str(save_dir), str(go)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=CLI_ENV) for _ in range(count)]


def test_of_trainings_started_together_one_holds_the_save_dir_and_a_killed_one_leaves_no_obstacle(data, tmp_path):
    save_dir, go = tmp_path / "ckpt", tmp_path / "go"
    save_dir.mkdir()
    racers = holders(save_dir, go, 3)
    time.sleep(2)  # their imports, mostly
    go.touch()
    answers = {racer.pid: racer.stdout.readline() for racer in racers}
    winners = [pid for pid, answer in answers.items() if answer == "held\n"]
    assert len(winners) == 1, answers
    holder = next(racer for racer in racers if racer.pid == winners[0])
    for racer in racers:
        if racer is not holder:
            assert f"(process {holder.pid} on {os.uname().nodename}, started 20" in answers[racer.pid]
            racer.stdin.close()
            racer.wait()
    record = json.loads((save_dir / LOCK).read_text())
    assert record["pid"] == holder.pid and record["save_dir"] == str(save_dir.resolve())

    # a training refused in one line while it holds the save dir; nothing written
    command = train_command(data, save_dir, epochs=1, **DAE)
    refused = run(command, check=False)
    assert refused.returncode == 2 and refused.stdout.count("error:") + refused.stderr.count("error:") == 1
    assert f"--save-dir {save_dir} is in use by another training (process {holder.pid}" in refused.stderr
    assert sorted(p.name for p in save_dir.iterdir()) == [LOCK]

    # killed (preempted): its record stays, naming a node the requeued job does not run on, as after a requeue
    holder.kill()
    holder.wait()
    (save_dir / LOCK).write_text(json.dumps({**record, "host": "node-a", "pid": 4242}) + "\n")
    (save_dir / "checkpoint_last.pt.tmp").write_bytes(b"PK\x03\x04")  # a save it was killed in
    trained = run(command)
    assert "removing" in trained.stdout + trained.stderr and not (save_dir / "checkpoint_last.pt.tmp").exists()
    assert [r["epoch"] for r in parse_json_log(trained.stdout + trained.stderr) if "train_loss" in r] == [1]
    assert not (save_dir / LOCK).exists()  # given back, the file removed, when the training ended

    (save_dir / LOCK).write_text("4242 node-a\n")  # an earlier release's lock file: no obstacle either
    run(train_command(data, save_dir, epochs=2, **DAE))


def test_a_training_refused_while_the_holder_writes_its_record_names_the_holder(tmp_path):
    """The holder takes the kernel's lock, then writes who it is: one refused in between waits for that."""
    import fcntl
    import threading

    from fairseq_wae.errors import CheckpointError
    from fairseq_wae.save_dir_lock import lock_save_dir

    descriptor = os.open(tmp_path / LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # taken, its record not written yet
    record = json.dumps({"pid": 4242, "host": "node-a", "started": "2026-12-08T00:00:00+00:00"}) + "\n"
    writer = threading.Timer(0.3, os.pwrite, (descriptor, record.encode(), 0))
    writer.start()
    try:
        with pytest.raises(CheckpointError, match=r"\(process 4242 on node-a, started 2026-12-08T00:00:00"):
            lock_save_dir(str(tmp_path))
    finally:
        writer.join()
        os.close(descriptor)


FORKING_HOLDER = textwrap.dedent("""
    import os, sys, time
    from fairseq_wae.save_dir_lock import hold_folder, lock_save_dir

    lock_save_dir(sys.argv[1])
    hold_folder(sys.argv[2], "export", "export-")
    if os.fork() == 0:  # as a DataLoader worker, or a preparation's pool, is forked while the locks are held
        time.sleep(120)
        os._exit(0)
    print("held", flush=True)
    time.sleep(120)
""")


def test_a_killed_training_leaves_no_lock_with_the_processes_it_forked(tmp_path):
    """The kernel keeps a flock while any copy of its descriptor is open: a forked child closes its copies,
    so the save dir and a held folder are free the moment their holder is killed, whatever it forked."""
    import fcntl
    import signal

    save_dir, folder = tmp_path / "ckpt", tmp_path / "export"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", FORKING_HOLDER, str(save_dir), str(folder)],
                              stdout=subprocess.PIPE, text=True, env=CLI_ENV, start_new_session=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert not lock_is_free(save_dir)
        holder.kill()
        holder.wait()
        assert lock_is_free(save_dir)  # the child that sleeps on holds no copy
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(descriptor)
    finally:
        try:
            os.killpg(holder.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


NOTEBOOK = textwrap.dedent("""
    import sys
    import fairseq_wae  # loaded before fairseq-train's module, as after from_pretrained in a notebook
    import fairseq_cli.train
    from fairseq import options, trainer
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    def train(argv):
        args = options.parse_args_and_arch(options.get_training_parser(), argv)
        return fairseq_cli.train.main(convert_namespace_to_omegaconf(args))

    def interrupted(*args, **kwargs):  # raised outside the task: Ctrl-C, fairseq's NaN error, out of memory
        raise KeyboardInterrupt

    update, trainer.Trainer.train_step = trainer.Trainer.train_step, interrupted
    try:
        train(sys.argv[1:])
    except KeyboardInterrupt as error:
        sys.last_traceback = kept = error.__traceback__  # as a notebook keeps it, and the training's frames
    print("raised", flush=True)
    sys.stdin.readline()
    trainer.Trainer.train_step = update
    train(sys.argv[1:])  # the cell run again
    print("trained", flush=True)
    sys.stdin.read()  # the session goes on, holding what it ran
""")


def test_a_notebook_trains_again_after_a_training_raised_and_a_terminal_after_one_returned(data, tmp_path):
    save_dir = tmp_path / "ckpt"
    command = [str(c) for c in train_command(data, save_dir, epochs=1, **DAE)]
    session = subprocess.Popen([sys.executable, "-c", NOTEBOOK, *command[1:]], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=CLI_ENV)
    try:
        output = []
        for expected in ("raised\n", "trained\n"):
            for line in session.stdout:
                output.append(line)
                if line == expected:
                    break
            assert output[-1:] == [expected], "".join(output[-40:])
            if expected == "raised\n":  # the session's first training, in a main loaded after the plugin
                assert lock_is_free(save_dir) and not (save_dir / LOCK).exists()
                session.stdin.write("\n")
                session.stdin.flush()
        assert lock_is_free(save_dir) and not (save_dir / LOCK).exists()
        resumed = run(train_command(data, save_dir, epochs=2, **DAE))  # from another process: this one
        assert [r["epoch"] for r in parse_json_log(resumed.stdout + resumed.stderr) if "train_loss" in r] == [2]
    finally:
        session.stdin.close()
        session.wait()


def test_a_training_in_this_process_holds_the_save_dir_until_it_ends_and_one_on_a_file_system_without_locks_trains(
        data, tmp_path, monkeypatch):
    import threading

    from fairseq_wae import save_dir_lock
    from fairseq_wae.errors import CheckpointError

    taken, finish, locks = threading.Event(), threading.Event(), []

    class Training:  # what stands for a training, as fairseq-train's task does
        pass

    def training():
        owner = Training()
        locks.extend([save_dir_lock.lock_save_dir(tmp_path, owner=owner), save_dir_lock.lock_save_dir(tmp_path, owner=owner)])
        taken.set()
        finish.wait()

    thread = threading.Thread(target=training, name="training-thread")
    thread.start()
    try:
        assert taken.wait(60) and locks[0] is locks[1]  # its own lock again: not a rival
        with pytest.raises(CheckpointError, match="in use by another training of this process .thread training-thread"):
            save_dir_lock.lock_save_dir(tmp_path)
        assert not lock_is_free(tmp_path)
    finally:
        finish.set()
        thread.join()
    assert save_dir_lock.lock_save_dir(tmp_path) is not locks[0]  # that thread's training has ended
    save_dir_lock.release_trainings_of_this_thread()
    assert lock_is_free(tmp_path)

    def no_locks(*args):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(save_dir_lock.fcntl, "flock", no_locks)
    save_dir = tmp_path / "lustre"
    log = run_in_process("fairseq_cli.train", [str(c) for c in train_command(data, save_dir, epochs=1, **DAE)])
    assert log.returncode == 0, log.stderr[-2000:]
    assert log.stdout.count(f"the file system of {save_dir} takes no locks") == 1
    assert (save_dir / "checkpoint_last.pt").exists()


# -- sizes and counts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--max-tokens", "0"), ("--update-freq", "0"),
                                        ("--validate-interval", "0"), ("--batch-size-valid", "-3"),
                                        ("--save-interval", "0"), ("--log-interval", "0")])
def test_a_size_or_count_that_means_nothing_is_refused_at_start_up(data, tmp_path, flag, value):
    result = run(train_command(data, tmp_path / "ckpt", flag, value, epochs=1, **DAE), check=False)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"error: {flag} (" in result.stderr and f".{flag.strip('-').replace('-', '_')} in hydra) must be" in result.stderr
    assert f"got {value}" in result.stderr
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


# -- a full disk --------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB file system of its own (tmpfs; mounting needs root, as CI and the set-up run)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.parametrize("when", ["foreseen", "during the save"])
def test_a_full_disk_while_saving_is_one_line_and_the_last_checkpoint_resumes(data, small_disk, monkeypatch, when):
    import fairseq.checkpoint_utils
    import fairseq_cli.train

    from fairseq_wae.tasks import sentence_autoencoding

    save_dir = small_disk / "ckpt"
    run(train_command(data, save_dir, epochs=1, **DAE))
    last = (save_dir / "checkpoint_last.pt").read_bytes()
    filler = small_disk / "filler"
    filler.write_bytes(b"0" * (shutil.disk_usage(small_disk).free - len(last) // 2))  # half a checkpoint left
    if when == "during the save":  # room enough by the estimate: the disk fills while torch.save writes
        monkeypatch.setattr(sentence_autoencoding, "check_room_for_a_checkpoint", lambda *args: None)
        monkeypatch.setattr(fairseq.checkpoint_utils.time, "sleep", lambda seconds: None)  # fairseq's retries
    result = run(train_command(data, save_dir, epochs=2, **DAE), check=False)
    message = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2 and len(message) == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"no space left in {save_dir} for the next checkpoint (" in message[0] and "MiB are free" in message[0]
    if when == "foreseen":
        assert "it needs about 0.8 MiB" in message[0]
    assert sorted(p.name for p in save_dir.iterdir()) == ["checkpoint_best.pt", "checkpoint_last.pt"]  # no .tmp
    assert (save_dir / "checkpoint_last.pt").read_bytes() == last
    assert fairseq_cli.train.main.releases_save_dir_locks and lock_is_free(save_dir)

    filler.unlink()
    monkeypatch.undo()
    resumed = run(train_command(data, save_dir, epochs=2, **DAE))
    assert [r["epoch"] for r in parse_json_log(resumed.stdout + resumed.stderr) if "train_loss" in r] == [2]
