"""The fingerprint of the dictionary a model was trained with, part of the model's state: a model refuses
to load against another dictionary (the words would be silently scrambled), or without one (a
checkpoint written before the binding existed; ``fairseq-wae-bind-dictionary`` stamps it in). The
checks of a checkpoint file before it is loaded are in fairseq_wae/checkpoint_utils.py."""
import hashlib
import os
from typing import Dict, Optional

from torch import Tensor, nn

from fairseq_wae.errors import CheckpointError
from fairseq_wae.models.state_tensors import json_to_tensor, tensor_to_json
from fairseq_wae.tokenizer import folder_tokenization, tokenization_mismatch

BIND_COMMAND = "fairseq-wae-bind-dictionary"
BINDING_KEY = "dictionary_binding._extra_state"  # the model's DictionaryBinding, in its state dict
FINGERPRINT = "dictionary fingerprint"


def dictionary_fingerprint(dictionary, path: Optional[str] = None) -> Dict:
    """The dictionary's symbols in id order, hashed: two dictionaries give the same ids to the same
    words exactly when their fingerprints are equal (counts do not matter)."""
    digest = hashlib.sha256("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()
    return {"sha256": digest, "size": len(dictionary), "path": os.path.abspath(path) if path else None}


def describe(fingerprint: Dict) -> str:
    where = fingerprint.get("path") or "a dictionary of unknown path"
    return f"{where} ({fingerprint['size']} entries, sha256 {fingerprint['sha256'][:12]})"


def check_same_dictionary(trained: Optional[Dict], current: Dict, what: str, remedy: str = "") -> None:
    if trained is not None and trained["sha256"] != current["sha256"]:
        raise CheckpointError(
            f"{what} was trained with the dictionary {describe(trained)}, but this run's dictionary is "
            f"{describe(current)}: token ids would map to other words. Give the data folder the model was "
            f"trained on (or a copy of its dict.txt){remedy}.")


def unbound_message(what: str, checkpoint: str, current: Dict) -> str:
    """Why a checkpoint without a dictionary fingerprint is refused, and the command that binds it."""
    dictionary = current.get("path") or "the dictionary given"
    data = os.path.dirname(current["path"]) if current.get("path") else "DATA"
    return (f"{what} holds no fingerprint of the dictionary it was trained with (it was written before fairseq-wae "
            f"recorded one), so nothing shows that {dictionary} is that dictionary: one of the same size with other "
            "words would scramble every sentence without an error. If it is the data folder the model was trained "
            f"on, bind them once with `{BIND_COMMAND} {checkpoint} {data}` (it checks what can be checked and "
            "stamps the fingerprint); otherwise give that data folder")


def saved_fingerprint(saved) -> Optional[Dict]:
    """The fingerprint a state dict holds under :data:`BINDING_KEY`: a tensor (``fingerprint_state``), a
    dict (checkpoints written before fairseq-wae kept it as a tensor), or None (before it kept one)."""
    return tensor_to_json(saved, FINGERPRINT) if isinstance(saved, Tensor) else saved


def fingerprint_state(fingerprint: Dict) -> Tensor:
    """The fingerprint as the model's state dict keeps it: a tensor, as fairseq's tools expect of every value
    (see fairseq_wae.models.state_tensors)."""
    return json_to_tensor(fingerprint)


class DictionaryBinding(nn.Module):
    """The fingerprint of the model's dictionary, in its state dict (as ``..._extra_state``, a tensor).

    Loading a state dict written with another dictionary, or without a fingerprint (a checkpoint
    written before the binding existed), raises :class:`CheckpointError`. The tools check the file
    first (:func:`fairseq_wae.checkpoint_utils.check_checkpoint`), naming it; this is the last line, for every other way in.
    """

    def __init__(self, dictionary, path: Optional[str] = None):
        super().__init__()
        self.fingerprint = dictionary_fingerprint(dictionary, path)
        # how the folder's text becomes these tokens: recorded at training, checked at every load
        self.fingerprint["tokenization"] = folder_tokenization(os.path.dirname(path)) if path else None

    def get_extra_state(self):
        return fingerprint_state(self.fingerprint)

    def set_extra_state(self, state) -> None:
        state = saved_fingerprint(state)
        if state is None:
            raise CheckpointError(unbound_message("this checkpoint", "CHECKPOINT", self.fingerprint))
        check_same_dictionary(state, self.fingerprint, "this checkpoint")
        folder = os.path.dirname(self.fingerprint["path"]) if self.fingerprint.get("path") else None
        problem = tokenization_mismatch(state.get("tokenization"), folder, self.fingerprint["tokenization"]) \
            if folder else None
        if problem is not None:
            raise CheckpointError(problem)
        if state.get("tokenization"):
            self.fingerprint["tokenization"] = state["tokenization"]

    def upgrade_state_dict_named(self, state_dict, name: str) -> None:
        state_dict.setdefault(f"{name}._extra_state", None)


def checkpoint_dictionary(state: Dict) -> Optional[Dict]:
    """The dictionary fingerprint saved in a loaded checkpoint, if it has one."""
    return next((saved_fingerprint(value) for key, value in state.get("model", {}).items()
                 if key.endswith("dictionary_binding._extra_state")), None)
