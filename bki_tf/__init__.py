"""bki_tf: trigger-sentence backdoors on LSTM text classifiers and the BKI defence.

Three layers:

* building blocks (this package's top-level modules): `data`, `tokenization`,
  `embeddings`, `models`, `training`, `poisoning`, `detection`, `artifacts`;
* `bki_tf.bki`: the BKI algorithm, in memory (`bki.detect`), no file IO;
  `bki_tf.baselines`: Activation Clustering, Spectral Signatures, STRIP, pruning;
* `bki_tf.runs`: run folders (attack, scan, purify, retrain, compare, reproduce).

The most used names are re-exported here.
"""

from bki_tf import bki
from bki_tf.bki import BKIConfig, BKIResult, detect
from bki_tf.data import TextDataset, load_dataset
from bki_tf.detection import DetectionEvaluation, DetectionResult, evaluate
from bki_tf.embeddings import load_glove
from bki_tf.models import build_classifier, export_saved_model
from bki_tf.poisoning import PoisonConfig, PoisonedDataset, poison_dataset, triggered_test_set
from bki_tf.version import __version__

__all__ = [
    "BKIConfig",
    "BKIResult",
    "DetectionEvaluation",
    "DetectionResult",
    "PoisonConfig",
    "PoisonedDataset",
    "TextDataset",
    "__version__",
    "bki",
    "build_classifier",
    "detect",
    "evaluate",
    "export_saved_model",
    "load_dataset",
    "load_glove",
    "poison_dataset",
    "triggered_test_set",
]
