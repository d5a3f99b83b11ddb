"""Backdoor Keyword Identification, in memory and free of file IO.

    result = bki_tf.bki.detect(model, texts, vocabulary, labels=labels)
    result.keyword, result.flagged, result.detection

Modules: `scoring` (the exact word-deletion scores and the `simple` method),
`fast` (the state-reusing scorer), `keywords` (dictionary and keyword selection of
both variants), `plus` (BKI+: a decision, several keywords, trigger phrases),
`detector` (`BKIConfig`, `BKIResult`, `detect`), and `convergence` (a diagnostic
beside the hot path).

    result = bki_tf.bki.detect(model, texts, vocabulary, labels=labels,
                               config=bki_tf.bki.BKIConfig(variant="plus"))
    result.backdoor_found, result.plus.phrases, result.flagged
"""

from bki_tf.bki.detector import BKIConfig, BKIResult, detect, encode_texts, select
from bki_tf.bki.keywords import KeywordEntry, KeywordResult, identify_keyword
from bki_tf.bki.plus import PlusKeyword, PlusResult
from bki_tf.bki.scoring import Scorer, deletion_scores, prefix_scores

__all__ = [
    "BKIConfig",
    "BKIResult",
    "KeywordEntry",
    "KeywordResult",
    "PlusKeyword",
    "PlusResult",
    "Scorer",
    "deletion_scores",
    "detect",
    "encode_texts",
    "identify_keyword",
    "prefix_scores",
    "select",
]
