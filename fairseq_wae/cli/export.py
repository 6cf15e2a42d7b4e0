"""A checkpoint and its data folder to a self-contained model folder that from_pretrained loads.

    fairseq-wae-export --checkpoint work/ckpt/checkpoint_best.pt --data data/snli --out models/snli-wae10 \
        [--evaluation work/eval/wae10.json]

Writes model.pt (weights and config, no optimiser state), dict.txt, the tokeniser (manifest.json and,
for sentencepiece data, spm.model), a model card README.md and export.json (what was written). An --out
that holds anything but an earlier export is refused; a rerun replaces only what export.json lists.
"""
import argparse
import json
import os
import shutil
import sys

EXPORT_RECORD = "export.json"


class ExportError(ValueError):
    pass


def _progress(state) -> str:
    from fairseq_wae.checkpoints import training_progress

    updates, epochs, batches = training_progress(state)
    return f"{updates} updates, {epochs} epochs" + (f" and {batches} batches of the next" if batches else "")


def _model_card(state, model_class, manifest, evaluation, checkpoint) -> str:
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
    lines += ["## Use", "", "```python", f"from fairseq_wae import {model_class.__name__}",
              f"model = {model_class.__name__}.from_pretrained(\"THIS_FOLDER\")",
              "print(model.sample(5, seed=1))", "```", ""]
    return "\n".join(lines)


def export(checkpoint: str, data: str, out: str, evaluation: str = None) -> dict:
    import torch

    from fairseq_wae.checkpoints import check_checkpoint_file
    from fairseq_wae.corpus import read_manifest, sha256_of

    check_checkpoint_file(checkpoint)
    if not os.path.isfile(os.path.join(data, "dict.txt")):
        raise ExportError(f"--data {data} has no dict.txt")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExportError(f"--out {out} is a file, not a folder")
    previous = {}
    if os.path.isdir(out) and os.listdir(out):
        record = os.path.join(out, EXPORT_RECORD)
        if not os.path.isfile(record):
            raise ExportError(f"--out {out} holds files that no export wrote: choose another folder")
        with open(record) as f:
            previous = json.load(f)
        foreign = set(os.listdir(out)) - set(previous.get("files", [])) - {EXPORT_RECORD}
        if foreign:
            raise ExportError(f"--out {out} holds {', '.join(sorted(foreign))}, not written by an export")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    from fairseq.data import Dictionary

    from fairseq_wae.checkpoints import (
        check_same_dictionary,
        checkpoint_dictionary,
        dictionary_fingerprint,
        saved_model_class,
    )
    from fairseq_wae.models.autoencoder import SentenceAutoencoderModel

    if state.get("cfg", {}).get("model", {}).get("_name") is None:
        raise ExportError(f"{checkpoint} has no model config: not a fairseq-wae checkpoint")
    if not issubclass(saved_model_class(state) or object, SentenceAutoencoderModel):
        raise ExportError(f"{checkpoint} holds --arch {state['cfg']['model']['_name']}: not a fairseq-wae autoencoder")

    dictionary = os.path.join(data, "dict.txt")
    check_same_dictionary(checkpoint_dictionary(state), dictionary_fingerprint(Dictionary.load(dictionary), dictionary),
                          checkpoint)  # an export with another corpus's dict.txt would be unloadable
    state.pop("last_optimizer_state", None)
    state.get("extra_state", {}).pop("metrics", None)  # the training meters: not needed to use the model
    evaluation_report = None
    if evaluation:
        with open(evaluation) as f:
            evaluation_report = json.load(f)
    manifest = read_manifest(data)

    os.makedirs(out, exist_ok=True)
    torch.save(state, os.path.join(out, "model.pt.tmp"))
    os.replace(os.path.join(out, "model.pt.tmp"), os.path.join(out, "model.pt"))
    written = ["model.pt", "dict.txt"]
    shutil.copyfile(os.path.join(data, "dict.txt"), os.path.join(out, "dict.txt"))
    for name in ("manifest.json", "spm.model"):
        if os.path.isfile(os.path.join(data, name)):
            shutil.copyfile(os.path.join(data, name), os.path.join(out, name))
            written.append(name)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(_model_card(state, saved_model_class(state), manifest, evaluation_report, checkpoint))
    written.append("README.md")
    for name in set(previous.get("files", [])) - set(written):
        os.remove(os.path.join(out, name))
    digests = {name: sha256_of(os.path.join(out, name)) for name in written}
    record = {"files": written, "sha256": digests, "checkpoint": os.path.abspath(checkpoint),
              "checkpoint_bytes": os.path.getsize(checkpoint), "model_bytes": os.path.getsize(os.path.join(out, "model.pt"))}
    with open(os.path.join(out, EXPORT_RECORD), "w") as f:
        json.dump(record, f, indent=2)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a fairseq-train checkpoint (checkpoint_best.pt, ...)")
    parser.add_argument("--data", required=True, help="the data folder it was trained on (dict.txt, manifest.json)")
    parser.add_argument("--out", required=True, help="the model folder to write")
    parser.add_argument("--evaluation", help="an evaluate.py --json file: its Table 1 row goes into the model card")
    args = parser.parse_args(argv)
    from fairseq_wae.checkpoints import CheckpointError

    try:
        record = export(args.checkpoint, args.data, args.out, args.evaluation)
    except (ExportError, CheckpointError, OSError) as e:
        sys.exit(f"fairseq-wae-export: {e}")
    print(f"{args.out}: {', '.join(record['files'])}; model.pt {record['model_bytes']:,} bytes "
          f"(the checkpoint: {record['checkpoint_bytes']:,})")


if __name__ == "__main__":
    main()
