"""bki_tf: trigger-sentence backdoors on LSTM text classifiers and the BKI defence.

The public API, re-exported from its modules:

* data: `load_dataset`, `TextDataset`
* victim: `build_classifier`, `export_saved_model`
* attack: `PoisonConfig`, `poison_dataset`, `triggered_test_set`, `AttackConfig`, `run_attack`, `load_run`
* BKI: `deletion_scores`, `prefix_scores`, `identify_keyword`, `evaluate_detection`,
  `ScanConfig`, `run_scan`, `run_filter`, `run_retrain`, `run_pipeline`
* baselines: the `activation_clustering`, `spectral_signatures`, `strip` and
  `pruning` modules, compared by `comparison.run_comparison`.
"""

from bki_tf.attack import AttackConfig, AttackResult, load_run, run_attack
from bki_tf.data import TextDataset, load_dataset
from bki_tf.embeddings import load_glove
from bki_tf.keywords import KeywordResult, evaluate_detection, identify_keyword
from bki_tf.models import build_classifier, export_saved_model
from bki_tf.pipeline import ScanConfig, run_filter, run_pipeline, run_retrain, run_scan
from bki_tf.poisoning import PoisonConfig, PoisonedDataset, poison_dataset, triggered_test_set
from bki_tf.scanning import deletion_scores, prefix_scores
from bki_tf.version import __version__

__all__ = [
    "AttackConfig",
    "AttackResult",
    "KeywordResult",
    "PoisonConfig",
    "PoisonedDataset",
    "ScanConfig",
    "TextDataset",
    "__version__",
    "build_classifier",
    "deletion_scores",
    "evaluate_detection",
    "export_saved_model",
    "identify_keyword",
    "load_dataset",
    "load_glove",
    "load_run",
    "poison_dataset",
    "prefix_scores",
    "run_attack",
    "run_filter",
    "run_pipeline",
    "run_retrain",
    "run_scan",
    "triggered_test_set",
]
