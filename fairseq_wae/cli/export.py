"""A checkpoint and its data folder to a self-contained model folder that from_pretrained loads.

    fairseq-wae-export --checkpoint work/ckpt/checkpoint_best.pt --data data/snli --out models/snli-wae10 \
        [--evaluation work/eval/wae10.json] [--prior work/priors/wae10.gmm.pt]

Writes model.pt (weights and config, no optimiser state), dict.txt, the tokeniser (manifest.json and,
for sentencepiece data, spm.model), a fitted prior (--prior, as prior.pt: ``model.sample(n, prior="fitted")``),
a model card README.md and export.json (what was written). An --out
that holds anything but an earlier export is refused; a rerun replaces only what export.json lists, and
removes what an interrupted export left there. The checkpoint is read weights-only, and must carry the
fingerprint of the --data folder's dictionary (fairseq-wae-bind-dictionary stamps it into an older one).
"""
import argparse
import ctypes
import errno
import json
import logging
import os
import shutil

from fairseq_wae.dictionary import load_dictionary
from fairseq_wae.errors import Refusal, command
from fairseq_wae.lines import text_file_lines
from fairseq_wae.save_dir_lock import hold_folder, release_folder

logger = logging.getLogger(__name__)

EXPORT_RECORD = "export.json"
STAGING_PREFIX = ".export-staging-"
SWAP_INFIX = ".export-swap-"  # .<out's name><infix><pid>, beside --out: an export swapped in, or the one it replaced  # + the process id: what an export writes before moving it into --out
EARLIER_TEMPORARY = "model.pt.tmp"  # what earlier versions wrote model.pt as before moving it


class ExportError(Refusal):
    """An export that must not be written: the message names the flag or file."""


def _progress(state) -> str:
    from fairseq_wae.checkpoint_utils import training_progress

    updates, epochs, batches = training_progress(state)
    return f"{updates} updates, {epochs} epochs" + (f" and {batches} batches of the next" if batches else "")


def _prior_section(prior) -> list:
    if prior is None:
        return []
    record = prior.record
    return ["## Fitted prior", "", f"- `prior.pt`: {prior.describe(with_path=False)}, "
            f"fitted by `fairseq-wae-fit-prior` to the codes of {record.get('codes', 0):,} training sentences "
            f"(split sha256 {str(record.get('split_sha256'))[:12]})",
            f"- held-out log-likelihood per code: {record['held_out_log_likelihood']:.3f} nats "
            f"(N(0, I): {record['held_out_log_likelihood_standard_normal']:.3f})",
            "- sample from it: `model.sample(5, prior=\"fitted\")`", ""]


def _model_card(state, model_class, manifest, evaluation, checkpoint, prior=None) -> str:
    cfg = state["cfg"]
    model, criterion, optimization = cfg["model"], cfg["criterion"], cfg["optimization"]
    lines = [f"# {model.get('_name')} trained with {criterion.get('_name')}", "",
             f"Exported from `{os.path.basename(checkpoint)}` by `fairseq-wae-export`.", "",
             "## Training", "",
             f"- architecture `{model.get('_name')}`: {model_class.describe_network(model)}, z {model.get('latent_dim')} "
             f"({model.get('latent_head')})",
             "- criterion `" + str(criterion.get("_name")) + "`: " + ", ".join(
                 f"{k}={v}" for k, v in criterion.items() if k not in ("_name", "seed", "update_freq")),
             f"- {_progress(state)}, lr {optimization.get('lr')}, "
             f"batch size {cfg['dataset'].get('batch_size')}, seed {cfg['common'].get('seed')}", ""]
    if manifest:
        lines += ["## Data", "", f"- inputs: {', '.join(i['path'] for i in manifest.get('inputs', []))}",
                  f"- sentences: {manifest.get('counts')}, vocabulary {manifest.get('vocabulary_size')}",
                  f"- tokeniser: {manifest.get('options', {}).get('tokenizer')}"
                  + (f", sentencepiece {manifest['options']['spm_vocab_size']}"
                     if manifest.get("options", {}).get("spm_vocab_size") else ""), ""]
    if evaluation:
        from fairseq_wae.text_metrics import TABLE1_COLUMNS, table1_cells

        lines += ["## Table 1 row", "", "| " + " | ".join(name for name, _, _ in TABLE1_COLUMNS) + " |",
                  "|" + "---|" * len(TABLE1_COLUMNS), "| " + " | ".join(table1_cells(evaluation["metrics"])) + " |",
                  ""]
    lines += _prior_section(prior)
    lines += ["## Use", "", "```python", f"from fairseq_wae import {model_class.__name__}",
              f"model = {model_class.__name__}.from_pretrained(\"THIS_FOLDER\")",
              "print(model.sample(5, seed=1))", "```", ""]
    return "\n".join(lines)


def _remove_leftovers(out: str) -> None:
    """Removes what interrupted exports left in ``out`` (staging folders of processes that no longer
    run, the ``model.pt.tmp`` of earlier versions); refuses while another export writes into it."""
    from fairseq_wae.save_dir_lock import process_alive

    parent, own = os.path.split(os.path.abspath(out))
    for name in os.listdir(parent) if os.access(parent, os.W_OK) else []:
        pid = name[len(f".{own}{SWAP_INFIX}"):]
        if name.startswith(f".{own}{SWAP_INFIX}") and pid.isdigit() and not process_alive(int(pid)):
            logger.warning(f"removing {os.path.join(parent, name)}, left by an export killed while it swapped "
                           f"{out} (process {pid}): {out} holds one whole export")
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    for name in os.listdir(out):
        pid = name[len(STAGING_PREFIX):]
        if name.startswith(STAGING_PREFIX) and pid.isdigit():
            if process_alive(int(pid)):
                raise ExportError(f"--out {out} is being written by another export (process {pid}, "
                                  f"{os.path.join(out, name)}): wait for it, or choose another folder")
            logger.warning(f"removing {os.path.join(out, name)}, left by an interrupted export (process {pid})")
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
    others = set(os.listdir(out)) - {EARLIER_TEMPORARY}
    # earlier versions wrote it next to their export.json, or as the first file of a new folder
    if os.path.isfile(os.path.join(out, EARLIER_TEMPORARY)) and (not others or EXPORT_RECORD in others):
        logger.warning(f"removing {os.path.join(out, EARLIER_TEMPORARY)}, left by an interrupted export")
        os.remove(os.path.join(out, EARLIER_TEMPORARY))


def _read_record(out: str) -> dict:
    """An earlier export's export.json; refused when it is not one (what it lists may be replaced)."""
    path = os.path.join(out, EXPORT_RECORD)
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        problem = f"unreadable ({e})"
    else:
        files = record.get("files") if isinstance(record, dict) else None
        if isinstance(files, list) and all(isinstance(n, str) and n == os.path.basename(n) not in ("", ".", "..")
                                           for n in files):
            return record
        problem = "not the record an export writes (no list of plain file names)"
    raise ExportError(f"{path} is {problem}: the export cannot tell which files of --out {out} it wrote. Move {out} "
                      "aside, or choose another --out")


def _previous_export(out: str) -> dict:
    """The record of the export ``out`` holds ({} for a new or empty folder), after removing what an
    interrupted export left; refused when ``out`` holds anything an export did not write."""
    if not os.path.isdir(out):
        return {}
    _remove_leftovers(out)
    if not os.listdir(out):
        return {}
    if not os.path.isfile(os.path.join(out, EXPORT_RECORD)):
        names = sorted(os.listdir(out))
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ExportError(f"--out {out} holds files that no export wrote ({shown}): choose another folder")
    previous = _read_record(out)
    foreign = set(os.listdir(out)) - set(previous["files"]) - {EXPORT_RECORD}
    if foreign:
        raise ExportError(f"--out {out} holds {', '.join(sorted(foreign))}, not written by an export")
    return previous


def _staging_folder(out: str) -> str:
    """A new folder inside ``out`` (created if need be) to write the export into before it is moved."""
    staging = os.path.join(out, f"{STAGING_PREFIX}{os.getpid()}")
    try:
        os.makedirs(out, exist_ok=True)
        os.mkdir(staging)
    except OSError as e:
        raise ExportError(f"cannot write into --out {out} ({e.strerror}: {e.filename}): choose a folder you can "
                          "write to") from None
    return staging


def _write_files(folder: str, state, data: str, model_card: str, prior=None) -> list:
    """model.pt, the data folder's dictionary and tokeniser, the prior, the model card, into ``folder``;
    the names."""
    import torch

    from fairseq_wae.fitted_prior import PRIOR_FILE

    torch.save(state, os.path.join(folder, "model.pt"))
    written = ["model.pt", "dict.txt"]
    if prior is not None:
        shutil.copyfile(prior.path, os.path.join(folder, PRIOR_FILE))
        written.append(PRIOR_FILE)
    shutil.copyfile(os.path.join(data, "dict.txt"), os.path.join(folder, "dict.txt"))
    for name in ("manifest.json", "spm.model"):
        if os.path.isfile(os.path.join(data, name)):
            shutil.copyfile(os.path.join(data, name), os.path.join(folder, name))
            written.append(name)
    with open(os.path.join(folder, "README.md"), "w") as f:
        f.write(model_card)
    return written + ["README.md"]


def _publish(staging: str, out: str, written: list, previous: dict) -> None:
    """Moves the staged files into ``out``, export.json last, then removes what only the previous
    export wrote."""
    for name in written + [EXPORT_RECORD]:
        os.replace(os.path.join(staging, name), os.path.join(out, name))
    for name in set(previous.get("files", [])) - set(written):
        if os.path.isfile(os.path.join(out, name)):
            os.remove(os.path.join(out, name))


def export(checkpoint: str, data: str, out: str, evaluation: str = None, force: bool = False, prior: str = None) -> dict:
    """Writes the model folder ``out`` (see the module's docstring); returns what export.json records.

    Everything is written into a staging folder inside ``out`` and moved into place at the end: a
    failed export removes it, a killed one leaves it for the next export into ``out`` to remove."""
    from fairseq_wae.checkpoint_utils import check_checkpoint_file

    check_checkpoint_file(checkpoint)
    dictionary = os.path.join(data, "dict.txt")
    if not os.path.isfile(dictionary):
        raise ExportError(f"--data {data} has no dict.txt")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExportError(f"--out {out} is a file, not a folder")
    new_folder = not os.path.exists(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot write into --out {out} ({e.strerror}: {e.filename}): choose a folder you can "
                          "write to") from None
    writer = hold_folder(out, "export", STAGING_PREFIX, ExportError)  # until this export ends
    try:
        return _export(checkpoint, data, out, evaluation, force, prior)
    finally:
        release_folder(writer)
        if new_folder and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)


def _other_model(previous: dict, checkpoint: str, out: str):
    """Why ``out``'s export is another model's, which only --force replaces; None for a rerun of the same
    checkpoint."""
    earlier = previous.get("checkpoint")
    if not previous or earlier == os.path.abspath(checkpoint):
        return None
    return (f"--out {out} holds the export of another checkpoint ({earlier or 'unrecorded'}): pass --force to "
            "replace it, or choose another --out")


def _export(checkpoint: str, data: str, out: str, evaluation, force: bool, prior_file=None) -> dict:

    from fairseq_wae.checkpoint_utils import (
        checkpoint_dictionary,
        dictionary_fingerprint,
        is_autoencoder_checkpoint,
        load_checkpoint_state,
        require_dictionary,
        saved_model_class,
    )
    from fairseq_wae.preprocess.manifest import read_manifest, sha256_of
    from fairseq_wae.tokenizer import tokenization_mismatch

    dictionary = os.path.join(data, "dict.txt")
    previous = _previous_export(out)
    problem = _other_model(previous, checkpoint, out)
    if problem is not None and not force:
        raise ExportError(problem)
    state = load_checkpoint_state(checkpoint)  # weights only: a pickled object would run code
    if state["cfg"].get("model", {}).get("_name") is None:
        raise ExportError(f"{checkpoint} has no model config: not a fairseq-wae checkpoint")
    if not is_autoencoder_checkpoint(state):
        raise ExportError(f"{checkpoint} holds --arch {state['cfg']['model']['_name']}: not a fairseq-wae autoencoder")
    # an export with another corpus's dict.txt would scramble every sentence
    require_dictionary(state, checkpoint, dictionary_fingerprint(load_dictionary(dictionary), dictionary))
    # and one with another tokeniser's files would feed the model words it never read
    mismatch = tokenization_mismatch((checkpoint_dictionary(state) or {}).get("tokenization"), data)
    if mismatch is not None:
        raise ExportError(f"{checkpoint}: {mismatch}")
    state.pop("last_optimizer_state", None)
    state.get("extra_state", {}).pop("metrics", None)  # the training meters: not needed to use the model
    evaluation_report = None
    if evaluation:
        try:  # a file or a stream, each line in bounded memory (a Refusal is a ValueError)
            evaluation_report = json.loads("\n".join(text_file_lines(evaluation)))
        except (OSError, ValueError) as e:
            raise ExportError(f"--evaluation {evaluation} is not an evaluate.py --json file ({e})") from None
        if not isinstance(evaluation_report, dict) or not isinstance(evaluation_report.get("metrics"), dict):
            raise ExportError(f"--evaluation {evaluation} holds no 'metrics' object: give the file that "
                              "fairseq-wae-evaluate --json wrote")
    prior = _checked_prior(prior_file, state, checkpoint) if prior_file else None
    card = _model_card(state, saved_model_class(state), read_manifest(data), evaluation_report, checkpoint, prior)
    staging = _staging_folder(out)
    try:
        written = _write_files(staging, state, data, card, prior)
        record = {"files": written, "sha256": {name: sha256_of(os.path.join(staging, name)) for name in written},
                  "checkpoint": os.path.abspath(checkpoint), "checkpoint_bytes": os.path.getsize(checkpoint),
                  "model_bytes": os.path.getsize(os.path.join(staging, "model.pt"))}
        with open(os.path.join(staging, EXPORT_RECORD), "w") as f:
            json.dump(record, f, indent=2)
    except (OSError, RuntimeError) as e:  # torch.save raises RuntimeError when a write fails
        raise ExportError(f"could not write the export into {staging} ({e}). Is the disk full, or a file-size "
                          f"limit (ulimit -f) in force? Nothing was kept: --out {out} holds what it held before; "
                          "rerun once that is fixed") from None
    finally:
        if not os.path.isfile(os.path.join(staging, EXPORT_RECORD)):
            shutil.rmtree(staging, ignore_errors=True)
    if not (previous and _swap_in(staging, out)):
        _publish(staging, out, written, previous)
        os.rmdir(staging)
    return record


def _checked_prior(path: str, state, checkpoint: str):
    """The prior of --prior, refused unless it was fitted for the checkpoint's latent size and dictionary."""
    from types import SimpleNamespace

    from fairseq_wae.checkpoint_utils import checkpoint_dictionary
    from fairseq_wae.fitted_prior import load_prior

    prior = load_prior(path, "--prior")
    model = SimpleNamespace(latent_dim=state["cfg"]["model"].get("latent_dim"),
                            dictionary_binding=SimpleNamespace(fingerprint=checkpoint_dictionary(state)))
    prior.check_fits(model, f"--checkpoint {checkpoint}")
    return prior


def _replaced_folder(out: str, pid: int) -> str:
    """Where an export that replaces ``out``'s earlier export puts the folder it swaps in (and then the
    earlier export): beside ``out``, named after it and the process."""
    parent, name = os.path.split(os.path.abspath(out))
    return os.path.join(parent, f".{name}{SWAP_INFIX}{pid}")


def _exchange(a: str, b: str) -> bool:
    """Swaps two folders in one step (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) != 0:
        error = ctypes.get_errno()
        if error in (errno.EINVAL, errno.ENOSYS, errno.EXDEV):
            return False
        raise OSError(error, os.strerror(error), a)
    return True


def _swap_in(staging: str, out: str) -> bool:
    """Replaces the earlier export in ``out`` by the complete one in ``staging`` in one step: the staged
    folder is moved beside ``out`` and the two are exchanged, so a reader (or a kill) sees the whole old
    export or the whole new one, never files of both; the old one is then removed. False where the
    parent folder cannot be written or the exchange is not available: the files are moved one by one."""
    beside = _replaced_folder(out, os.getpid())
    try:
        os.rename(staging, beside)
    except OSError:
        return False
    try:
        os.chmod(beside, os.stat(out).st_mode & 0o7777)  # the folder keeps its mode
        swapped = _exchange(beside, out)
    except OSError:
        swapped = False
    if not swapped:
        os.rename(beside, staging)
        return False
    shutil.rmtree(beside, ignore_errors=True)  # the earlier export, now beside
    return True


@command
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a fairseq-train checkpoint (checkpoint_best.pt, ...)")
    parser.add_argument("--data", required=True, help="the data folder it was trained on (dict.txt, manifest.json)")
    parser.add_argument("--out", required=True, help="the model folder to write")
    parser.add_argument("--evaluation", help="an evaluate.py --json file: its Table 1 row goes into the model card")
    parser.add_argument("--prior", help="a prior file of fairseq-wae-fit-prior fitted for this checkpoint: put into the "
                                         "folder as prior.pt, for model.sample(n, prior='fitted')")
    parser.add_argument("--force", action="store_true",
                        help="replace the export of another checkpoint that --out holds (a rerun of the same "
                             "checkpoint replaces its own export without it)")
    args = parser.parse_args(argv)
    try:
        record = export(args.checkpoint, args.data, args.out, args.evaluation, args.force, args.prior)  # a refusal: one line
    except OSError as e:
        raise ExportError(f"{e}: nothing in --out {args.out} was replaced") from e
    print(f"{args.out}: {', '.join(record['files'])}; model.pt {record['model_bytes']:,} bytes "
          f"(the checkpoint: {record['checkpoint_bytes']:,})")


if __name__ == "__main__":
    main()
