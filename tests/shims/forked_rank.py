"""Test-only: a Python script run as a process forked from a server that imported torch and fairseq
once, where a new interpreter would import them again (about 5 CPU-seconds of each data-parallel rank
the tests start, most of what a 30-update rank costs).

    python tests/shims/forked_rank.py SCRIPT [ARGS...]    runs SCRIPT (a console script's file, or
                                                        pytorch_ddp_on_cpu.py) as ``python SCRIPT ARGS``

with the server's socket in $FORKED_RANK_SERVER (``serve`` starts one); without it, it execs Python.
The client is the process its caller sees: it hands the server its standard streams, working folder,
environment and arguments, passes on SIGTERM, SIGINT and SIGHUP, and exits with the script's status.
The forked process imports everything else itself (fairseq_cli.train, the plugin through --user-dir)
and runs SCRIPT as ``__main__``: an uncaught exception goes through sys.excepthook, and the exit
handlers run, as at the end of an interpreter. tests/helpers.py's ``launch`` puts this in front of
scripts/train_distributed_cpu.sh's ranks (FAIRSEQ_TRAIN); TESTS_IN_PROCESS=0 starts them afresh.
"""
import json
import os
import signal
import socket
import sys

PRELOAD = ("torch", "fairseq")  # importing fairseq imports its tasks, models and criterions


def client(script, args):
    address = os.environ.get("FORKED_RANK_SERVER")
    if not address:
        os.execv(sys.executable, [sys.executable, script, *args])
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(address)
    request = json.dumps({"script": script, "args": args, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    socket.send_fds(connection, [len(request).to_bytes(8, "big") + request], [0, 1, 2])
    replies = connection.makefile("r")
    pid = int(replies.readline())
    received = []

    def pass_on(signum, frame):
        received.append(signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, pass_on)
    status = replies.readline()
    # no status: the forked process was killed (by the signal passed on, or another)
    sys.exit(int(status) if status else 128 + (received[-1] if received else signal.SIGKILL))


def run_forked(request):
    """In the forked process: become ``python SCRIPT ARGS`` and run it; returns its exit status."""
    import atexit
    import runpy
    import traceback
    import warnings

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("PYTHONWARNINGS"):
        warnings.simplefilter(os.environ["PYTHONWARNINGS"])
    if os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    sys.argv = [request["script"], *request["args"]]
    sys.path[0] = os.path.dirname(os.path.abspath(request["script"]))
    try:
        runpy.run_path(request["script"], run_name="__main__")
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        traceback.print_exc()
        status = 128 + signal.SIGINT
    except BaseException:
        status = 1
        try:
            sys.excepthook(*sys.exc_info())
        except SystemExit as e:  # the plugin's hook ends a refusal with its status
            status = e.code if isinstance(e.code, int) else 1
    atexit._run_exitfuncs()
    return status


def serve(address):
    """Listens on ``address`` (a Unix socket), forking a process for each client, until its parent ends."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    parent = os.getppid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked processes are reaped as they end
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(16)
    listener.settimeout(1.0)
    print("ready", flush=True)
    while os.getppid() == parent:
        try:
            connection, _ = listener.accept()
        except socket.timeout:
            continue
        connection.settimeout(None)
        message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
        size = int.from_bytes(message[:8], "big")
        while len(message) < 8 + size:
            message += connection.recv(1 << 20)
        request = json.loads(message[8:8 + size])
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            listener.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            connection.sendall(f"{os.getpid()}\n".encode())
            status = 1
            try:
                status = run_forked(request)
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except Exception:
                        pass
                try:
                    connection.sendall(f"{status}\n".encode())
                finally:
                    os._exit(status)
        for fd in fds:
            os.close(fd)
        connection.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2])
    else:
        client(sys.argv[1], sys.argv[2:])
