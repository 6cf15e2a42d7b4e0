"""Serves a page in the browser for one trained autoencoder: reconstruction, interpolation, prior
samples, nearest neighbours and a 2-D map of a corpus's codes, and the model card.

    fairseq-wae-explore models/toy-wae --corpus examples/toy/sentences.txt          # an exported model
    fairseq-wae-explore work/ckpt/checkpoint_best.pt --data data/snli --corpus data/snli/test.txt

MODEL is what from_pretrained takes: a folder made by fairseq-wae-export, or a checkpoint (a file, or a
folder with --checkpoint-file) with --data, the data folder it was trained on. The model loads weights
only. The page is served on 127.0.0.1 (this machine only) unless --host says otherwise; on a remote
machine, open it through an SSH tunnel: ssh -L 7860:127.0.0.1:7860 HOST, then http://127.0.0.1:7860.
Needs the explore extra: pip install -e .[explore]
"""
import argparse
import logging
import os
import secrets
import socket
import sys

from fairseq_wae.errors import Refusal, command

logger = logging.getLogger(__name__)

PROG = "fairseq-wae-explore"


def read_corpus(path: str, limit: int):
    """The first ``limit`` sentences of ``path`` and how many more it holds, read as preparation reads a
    corpus (fairseq_wae.lines: a line over 1 MiB and a binary file refused); blank lines are left out,
    a line that is not UTF-8 is refused naming it."""
    from fairseq_wae.preprocess.readers import CorpusError, plain_sentences

    sentences, beyond, reports = [], 0, []
    for sentence in plain_sentences(path, False, reports):
        if len(sentences) < limit:
            sentences.append(sentence)
        else:
            beyond += 1
    lines = reports[0].first_lines.get("non-UTF-8")
    if lines:
        raise CorpusError(f"{path}, line {lines[0]}: not valid UTF-8")
    return sentences, beyond


def load_model(model: str, checkpoint_file: str, data: str):
    """What from_pretrained returns for MODEL as the command line gives it; (interface, export folder or None)."""
    from fairseq_wae.models.lstm_autoencoder import LSTMAutoencoderModel

    if os.path.isfile(model):  # a checkpoint file: its folder and name
        if data is None:
            raise ValueError(f"MODEL {model} is a checkpoint file: give --data, the data folder it was trained on")
        return LSTMAutoencoderModel.from_pretrained(os.path.dirname(os.path.abspath(model)),
                                                    checkpoint_file=os.path.basename(model),
                                                    data_name_or_path=data), None
    loaded = LSTMAutoencoderModel.from_pretrained(model, checkpoint_file=checkpoint_file,
                                                  data_name_or_path=data if data is not None else ".")
    return loaded, (model if data is None else None)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), listening: port 0 takes a free port, which the ready line names."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


@command
def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("model", metavar="MODEL",
                        help="a folder made by fairseq-wae-export, or a checkpoint (file, or folder with "
                             "--checkpoint-file) with --data")
    parser.add_argument("--checkpoint-file", default="model.pt", help="the checkpoint's name in the MODEL folder")
    parser.add_argument("--data", help="the data folder a checkpoint was trained on (an export holds its own)")
    parser.add_argument("--corpus", help="sentences, one a line, for the map and the neighbours (the first 10,000; "
                                         "read as fairseq-wae-prepare reads a corpus)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to serve on (default: this machine only; another one lets anyone who "
                             "reaches it run the model)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a host name the page may be opened under besides 127.0.0.1, localhost, ::1 and --host "
                             "(a proxy's, a machine's name); repeat for more")
    parser.add_argument("--port", type=int, default=7860, help="0 takes a free port")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        sys.exit(f"{PROG}: --port must be in 0 .. 65535, got {args.port}")
    if args.threads is not None and args.threads < 1:
        sys.exit(f"{PROG}: --threads must be at least 1, got {args.threads}")
    try:
        import uvicorn

        from fairseq_wae.explore.app import create_app, plotly_bundle
        from fairseq_wae.explore.guard import LOOPBACK
        from fairseq_wae.explore.limits import MAP_LIMIT
        from fairseq_wae.explore.service import ExploreService, model_card

        if not os.path.isfile(plotly_bundle()):
            raise ImportError(f"plotly has no {plotly_bundle()}")
    except ImportError as e:
        sys.exit(f"{PROG} needs the explore extra ({e}): pip install -e .[explore]")
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = []
    if args.corpus:
        try:
            corpus, beyond = read_corpus(args.corpus, MAP_LIMIT)
        except Refusal as e:
            sys.exit(f"{PROG}: --corpus: {e}")
        if beyond:
            logger.warning(f"--corpus {args.corpus}: using its first {MAP_LIMIT:,} sentences, of {MAP_LIMIT + beyond:,}")
        if not corpus:
            sys.exit(f"{PROG}: --corpus {args.corpus} holds no sentence")
    try:
        model, export_folder = load_model(args.model, args.checkpoint_file, args.data)
        service = ExploreService(model, corpus, model_card(model, export_folder))
    except (OSError, ValueError) as e:  # FileNotFoundError, CheckpointError, a corpus sentence without a known word
        sys.exit(f"{PROG}: {e}")
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as e:
        sys.exit(f"{PROG}: cannot serve on --host {args.host} --port {args.port}: {e.strerror or e}")
    host, port = sock.getsockname()[:2]
    token = None
    if args.host not in LOOPBACK:  # others may reach it: the page asks for a token, as Jupyter does
        token = secrets.token_urlsafe(24)
        logger.warning(f"serving on {args.host}: anyone who reaches it and has the token can run the model")
    shown = f"[{host}]" if ":" in host else host
    print(f"{PROG}: serving {args.model} on http://{shown}:{port}" + (f"/?token={token}" if token else ""), flush=True)
    hosts = [args.host, *args.allow_host]
    if args.host in ("0.0.0.0", "::"):  # every address of the machine: its own names too
        hosts += [socket.gethostname(), socket.getfqdn()]
    app = create_app(service, hosts=hosts, token=token)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()
