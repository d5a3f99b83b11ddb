"""Installs bki_tf: backdoor poisoning and Backdoor Keyword Identification."""

import os

import setuptools

_HERE = os.path.dirname(os.path.abspath(__file__))
_VERSION = {}
with open(os.path.join(_HERE, "bki_tf", "version.py"), encoding="utf-8") as f:
    exec(f.read(), _VERSION)  # pylint: disable=exec-used

setuptools.setup(
    name="bki_tf",
    version=_VERSION["__version__"],
    description=(
        "Trigger-sentence backdoor attacks on LSTM text classifiers and the "
        "Backdoor Keyword Identification (BKI) defence, in Keras 3 / TF 2."
    ),
    long_description=open(os.path.join(_HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # The binaries in experiments/ run from a checkout (python -m experiments.<name>);
    # only the library is installed, so no top-level `experiments` package is claimed.
    packages=setuptools.find_packages(include=["bki_tf", "bki_tf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.3,<4",
        "tensorflow-datasets>=4.9",
        # tensorflow-datasets imports it when it downloads, without declaring it.
        "importlib_resources>=5",
        "tensorboard>=2.16",
        "numpy>=1.26",
        "absl-py>=1.4",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": ["pytest>=7"],
        "dev": ["pytest>=7", "ruff>=0.5"],
        # The Adversarial Robustness Toolbox's poison detectors, run beside ours
        # (bki_tf.baselines.art; python -m experiments.compare --art). Imported lazily.
        "art": ["adversarial-robustness-toolbox>=1.20,<2", "scikit-learn>=1.3"],
        # The distributed scan (bki_tf.runs.beam_scan; python -m experiments.beam_scan).
        # Plain apache-beam: its [tensorflow]/[tft] extras pin older TensorFlow or numpy.
        "beam": ["apache-beam>=2.60"],
    },
)
