"""The paper's evaluation (Table 1) and the usual extras, on tokenised text (one sentence a string).

BLEU is sacrebleu's, LM scores are KenLM's (the reverse perplexity's model built by its lmplz); only the
unigram statistics and the share of copied samples are computed here.
"""
import math
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from typing import Dict, List, Sequence

from fairseq_wae.errors import Refusal

LOG2_10 = math.log2(10)


class EvaluationError(Refusal):
    """Bad evaluation input: the message names the file or the problem."""


def bleu(references: Sequence[str], hypotheses: Sequence[str]):
    """Corpus BLEU of reconstructions (sacrebleu, ``tokenize='none'``: the text is tokenised already).

    Returns (score, signature).
    """
    from sacrebleu.metrics import BLEU

    if len(references) != len(hypotheses):
        raise EvaluationError(f"BLEU needs one reconstruction per reference: {len(hypotheses)} reconstructions, "
                              f"{len(references)} references")
    metric = BLEU(tokenize="none")
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return score.score, str(metric.get_signature())


def lm_scores(model, sentences: Sequence[str]) -> Dict[str, float]:
    """NLL of ``sentences`` under a KenLM model (``kenlm.Model``), end-of-sentence token included.

    Per-word NLL in bits and nats (the paper's NLL column reads as bits per word: see the README),
    per-sentence NLL in nats, perplexity, and the number of out-of-vocabulary words.
    """
    if not sentences:
        raise EvaluationError("no sentences to score")
    log10_total, predicted, oov = 0.0, 0, 0
    for sentence in sentences:
        log10_total += model.score(sentence, bos=True, eos=True)
        words = sentence.split()
        predicted += len(words) + 1
        oov += sum(word not in model for word in words)
    nats = -log10_total * math.log(10)
    return {
        "nll_bits_per_word": nats / math.log(2) / predicted,
        "nll_nats_per_word": nats / predicted,
        "nll_nats_per_sentence": nats / len(sentences),
        "perplexity": math.exp(nats / predicted),
        "oov_words": oov,
        "scored_tokens": predicted,
    }


def unigram_counts(sentences: Sequence[str]) -> Counter:
    return Counter(word for sentence in sentences for word in sentence.split())


def unigram_kl(generated: Sequence[str], corpus: Sequence[str], smoothing: float = 0.0) -> Dict[str, float]:
    """KL(p_generated || p_corpus) over word unigrams, in nats.

    ``smoothing=0`` is the paper's definition: generated words unseen in the corpus are skipped (and
    counted). ``smoothing > 0`` adds that count to every word of the union vocabulary in both
    distributions, so nothing is skipped.
    """
    p, q = unigram_counts(generated), unigram_counts(corpus)
    if not p:
        raise EvaluationError("the generated sentences hold no words")
    if not q:
        raise EvaluationError("the corpus holds no words")
    unseen = {w: c for w, c in p.items() if w not in q}
    if smoothing > 0:
        vocabulary = set(p) | set(q)
        p_total = sum(p.values()) + smoothing * len(vocabulary)
        q_total = sum(q.values()) + smoothing * len(vocabulary)
        kl = sum((p[w] + smoothing) / p_total * math.log(((p[w] + smoothing) / p_total) / ((q[w] + smoothing) / q_total))
                 for w in vocabulary)
    else:
        seen = {w: c for w, c in p.items() if w in q}
        if not seen:
            raise EvaluationError("no generated word occurs in the corpus: UnigramKL is undefined")
        p_total, q_total = sum(seen.values()), sum(q.values())
        kl = sum(c / p_total * math.log((c / p_total) / (q[w] / q_total)) for w, c in seen.items())
    return {"unigram_kl": kl, "unseen_tokens": sum(unseen.values()), "unseen_types": len(unseen)}


def unigram_entropy(sentences: Sequence[str]) -> float:
    """Entropy of the word unigram distribution, in nats."""
    counts = unigram_counts(sentences)
    total = sum(counts.values())
    if not total:
        raise EvaluationError("no words to compute an entropy of")
    return -sum(c / total * math.log(c / total) for c in counts.values())


def average_length(sentences: Sequence[str]) -> float:
    """Mean number of tokens per sentence."""
    if not sentences:
        raise EvaluationError("no sentences")
    return sum(len(s.split()) for s in sentences) / len(sentences)


def distinct_n(sentences: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams over the sentences."""
    grams = [tuple(words[i:i + n]) for words in (s.split() for s in sentences) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


#: Table 1's columns: the metric each reads and its format.
TABLE1_COLUMNS = (("BLEU", "bleu", ".2f"), ("NLL", "nll_bits_per_word", ".2f"), ("UnigramKL", "unigram_kl", ".3f"),
                  ("Entropy", "entropy", ".2f"), ("AvgLen", "avg_len", ".1f"))


#: beyond the paper: how much of the data's variety the samples cover, and how much of it they copy
DIVERSITY_COLUMNS = (("Reverse PPL", "reverse_perplexity", ".1f"), ("Copied", "copied", ".1%"))


def table1_cells(metrics: Dict[str, float], columns=TABLE1_COLUMNS) -> List[str]:
    """One Table 1 row's cells, "-" where a metric is missing."""
    return [format(metrics[key], fmt) if metrics.get(key) is not None else "-" for _, key, fmt in columns]


def diversity_cells(metrics: Dict[str, float]) -> List[str]:
    """The reverse perplexity's and copied share's cells of a row, "-" where missing."""
    return table1_cells(metrics, DIVERSITY_COLUMNS)


def copied_share(samples: Sequence[str], training: Sequence[str]) -> float:
    """The share of samples that are a training sentence verbatim: a model that repeats what it read
    scores a good NLL without generating anything."""
    if not samples:
        raise EvaluationError("no samples")
    seen = set(training)
    return sum(sample in seen for sample in samples) / len(samples)


def find_kenlm_binary(name: str) -> str:
    """KenLM's ``name`` (lmplz, build_binary): in $KENLM_BIN, then where scripts/install_kenlm.sh puts
    it, then on PATH."""
    candidates = [os.environ.get("KENLM_BIN", ""),
                  os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "fairseq-wae", "kenlm", "bin")]
    for folder in candidates:
        path = os.path.join(folder, name)
        if folder and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found is None:
        raise Refusal(f"KenLM's {name} not found; run: bash scripts/install_kenlm.sh")
    return found


def reverse_perplexity(samples: Sequence[str], real: Sequence[str], order: int = 3) -> Dict[str, float]:
    """Reverse perplexity (Zhao et al. 2018; Cifka et al. 2018): an ``order``-gram KenLM trained by lmplz
    on the samples scores the real sentences. Samples that cover the data's variety give it a low value;
    a model that repeats a few fluent sentences, a high one, however good their forward NLL."""
    import kenlm

    with tempfile.TemporaryDirectory() as folder:
        text, arpa = os.path.join(folder, "samples.txt"), os.path.join(folder, "samples.arpa")
        with open(text, "w", encoding="utf-8") as f:
            f.writelines(sample + "\n" for sample in samples if sample.strip())
        # -S/-T: lmplz takes 80% of the memory by default; --discount_fallback: few samples cannot estimate
        # every discount; --skip_symbols: a sample may hold a literal <unk>
        with open(text, "rb") as f, open(arpa, "wb") as g:
            built = subprocess.run([find_kenlm_binary("lmplz"), "-o", str(order), "-S", "200M", "-T", folder,
                                    "--discount_fallback", "--skip_symbols"], stdin=f, stdout=g, stderr=subprocess.PIPE)
        if built.returncode != 0:
            last = built.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            raise EvaluationError(f"lmplz could not build the reverse-perplexity model from {len(samples)} samples "
                                  f"({last[0]})")
        binary = os.path.join(folder, "samples.bin")  # kenlm prints a progress bar when it loads an ARPA file
        subprocess.run([find_kenlm_binary("build_binary"), arpa, binary], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        scores = lm_scores(kenlm.Model(binary), real)
    return {"reverse_perplexity": scores["perplexity"], "reverse_nll_bits_per_word": scores["nll_bits_per_word"],
            "reverse_oov_words": scores["oov_words"]}
