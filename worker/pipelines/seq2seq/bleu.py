"""Corpus BLEU (Papineni et al., 2002) on token lists, for held-out evaluation.

The book reports no quality metric; BLEU is what translation systems are compared by, and for a
chatbot it says how often the model's reply shares words with the one in the held-out dialogue.
Clipped n-gram precisions up to 4-grams, their geometric mean, and the brevity penalty against the
reference closest in length, all summed over the corpus (as `nltk.translate.bleu_score.corpus_bleu`
and sacreBLEU do). `smoothing` adds one to each n-gram count above unigrams (Lin and Och's "add
one"), so that short corpora without a matching 4-gram do not score zero.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[index : index + n]) for index in range(len(tokens) - n + 1))


def modified_precision(references: Sequence[Sequence[str]], hypothesis: Sequence[str], n: int) -> tuple[int, int]:
    """(clipped matches, n-grams in the hypothesis): each n-gram counts at most as often as it
    appears in any one reference."""
    counts = ngrams(hypothesis, n)
    max_reference_counts: Counter = Counter()
    for reference in references:
        for gram, count in ngrams(reference, n).items():
            max_reference_counts[gram] = max(max_reference_counts[gram], count)
    clipped = sum(min(count, max_reference_counts[gram]) for gram, count in counts.items())
    return clipped, sum(counts.values())


def corpus_bleu(
    references: Sequence[Sequence[Sequence[str]]],
    hypotheses: Sequence[Sequence[str]],
    *,
    max_n: int = 4,
    smoothing: bool = False,
) -> float:
    """BLEU in 0..1 of `hypotheses[i]` against the references `references[i]` (one or more each)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"references: {len(references)} entries for {len(hypotheses)} hypotheses")
    matches = [0] * max_n
    totals = [0] * max_n
    hypothesis_length = reference_length = 0
    for candidates, hypothesis in zip(references, hypotheses):
        if not candidates:
            raise ValueError("references: every hypothesis needs at least one reference")
        for n in range(1, max_n + 1):
            clipped, count = modified_precision(candidates, hypothesis, n)
            matches[n - 1] += clipped
            totals[n - 1] += count
        hypothesis_length += len(hypothesis)
        # The reference closest in length; the shorter one on a tie.
        reference_length += min((abs(len(reference) - len(hypothesis)), len(reference)) for reference in candidates)[1]
    if hypothesis_length == 0:
        return 0.0
    log_precisions = []
    for n in range(max_n):
        numerator, denominator = matches[n], totals[n]
        if smoothing and n > 0:
            numerator, denominator = numerator + 1, denominator + 1
        if numerator == 0 or denominator == 0:
            return 0.0
        log_precisions.append(math.log(numerator / denominator))
    brevity_penalty = 1.0 if hypothesis_length > reference_length else math.exp(1 - reference_length / hypothesis_length)
    return brevity_penalty * math.exp(sum(log_precisions) / max_n)
