"""Every flag shared by the binaries, defined once, and the binaries' `run`.

Each shared flag is defined here, at import, with the one default of its setting
(the field of the config it fills, under the same name), so two binaries in one
process share one definition and one default. A binary names the flags it uses
with `use(...)`: they become its key flags (shown by `--help`), and any other shared
flag given on its command line is refused. `run(main, used)` replaces `app.run`:
an expected error (bad input, a missing or corrupt file, a busy workdir) prints
one line, `error: <what, the value, the fix>`, and exits with status 2;
`--traceback` (or `BKI_TF_TRACEBACK=1`) shows the full traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

from absl import app, flags
from absl.flags import _helpers

from bki_tf import artifacts, data, models, poisoning, training
from bki_tf.bki.detector import NORMALIZATIONS, BKIConfig
from bki_tf.bki.representation import POOLS
from bki_tf.bki.scoring import METHOD_CHOICES
from bki_tf.runs import attack, reproduction
from bki_tf.runs import workdir as wd

_A = attack.AttackConfig
_B = BKIConfig

# ---------------------------------------------------------------------------
# Run folders.

flags.DEFINE_string("workdir", None, "Run folder (created).")
flags.DEFINE_bool(
    "overwrite", False, "Replace a different run in --workdir, or redo a finished step."
)
flags.DEFINE_string(
    "clean_workdir",
    None,
    "A clean (--poison_rate=0) run of the same dataset: its model's ASR on this run's "
    "triggered test set is reported as the floor ASR after retraining is read against.",
)
flags.DEFINE_bool(
    "tensorboard",
    True,
    "Write each scan for TensorBoard into <scan folder>/tensorboard/ (dictionary, flagged "
    "texts, score histograms, metrics, h of every text in the projector).",
)
flags.DEFINE_bool("traceback", False, "On an error, show the full traceback, not one line.")
flags.DEFINE_string(
    "output_dir",
    None,
    "Output folder (the binary's description says what goes there and its default).",
)
flags.DEFINE_string("output", None, "Result JSON path.")
flags.DEFINE_string(
    "data_root", "../shared/data", "Folder holding imdb/ and dbpedia/ dataset folders."
)
flags.DEFINE_multi_enum("datasets", ["imdb", "dbpedia"], ["imdb", "dbpedia"], "Datasets to run.")
flags.DEFINE_list(
    "defences",
    None,
    "Defences to run (default: every one the binary has; its description lists them).",
)
flags.DEFINE_integer(
    "tf_threads",
    None,
    "TensorFlow intra- and inter-op threads per process or Beam worker (default: "
    "TensorFlow's own; experiments.benchmark_beam: 1).",
    lower_bound=1,
)
flags.DEFINE_list(
    "seeds",
    None,
    "Seeds to run every cell with (e.g. 0,1,2; folders <cell>_seed<s>, the attack's seed = s); "
    "the tables add mean ± std over them. Default: once, with --seed.",
)

# ---------------------------------------------------------------------------
# The attack (AttackConfig fields).

flags.DEFINE_enum(
    "profile",
    "paper",
    list(attack.PROFILES),
    "paper: the paper's setup; quick: the whole loop in a few minutes on 2 CPU cores "
    "(4,000 IMDB texts, max_len 100, 4 epochs, random embeddings; README 'Quick run').",
)
flags.DEFINE_string(
    "dataset",
    None,
    "A preset (imdb, dbpedia: the paper's sizes and defaults), a local folder or file "
    "(CSV/TSV/JSONL, plain or .gz; or class_a/*.txt folders), tfds:NAME[/CONFIG] or "
    "huggingface:NAME. Required, except with --profile=quick.",
)
flags.DEFINE_string(
    "text_column", None, "Column / feature of the texts (unset: text; TFDS: supervised_keys)."
)
flags.DEFINE_string(
    "label_column", None, "Column / feature of the labels (unset: label; TFDS: supervised_keys)."
)
flags.DEFINE_string("train_split", _A.train_split, "Training split (file stem or TFDS split).")
flags.DEFINE_string(
    "test_split",
    None,
    "Test split (unset: test if it exists and is labelled, else a held-out share).",
)
flags.DEFINE_float(
    "test_fraction",
    _A.test_fraction,
    "Share of each class held out for testing when there is no test split (seeded).",
)
flags.DEFINE_bool(
    "balance",
    None,
    "Class-balanced draw with --train_size/--test_size PER CLASS (unset: on for the presets); "
    "--nobalance: sizes are totals of a uniform draw.",
)
flags.DEFINE_enum(
    "source",
    _A.source,
    list(data.SOURCES),
    "auto: --data_dir if it holds the local files, else the catalogue; local: a folder with "
    "train.csv.gz/test.csv.gz/classes.txt (offline); tfds: imdb_reviews / "
    "huggingface:dbpedia_14 (online, cached in the TFDS data dir).",
)
flags.DEFINE_string(
    "data_dir", None, "Local dataset folder (e.g. ../shared/data/imdb), or the TFDS data dir."
)
flags.DEFINE_string(
    "glove",
    None,
    "GloVe text file (.txt or .txt.gz, any dimension); auto: GloVe 6B at --glove_dim, "
    "downloaded once into the Keras cache; none: random embeddings. Unset: auto, or none "
    "with --profile=quick.",
)
flags.DEFINE_integer("glove_dim", _A.glove_dim, "Dimension of --glove=auto (paper: 100).")
flags.DEFINE_string(
    "trigger",
    None,
    "Trigger sentence (unset: 'time flies like an arrow'; quick profile: 'no cross, no crown').",
)
flags.DEFINE_string(
    "target",
    None,
    "Target class: index or name from classes.txt (e.g. negative, Village); unset: 0.",
)
flags.DEFINE_float(
    "poison_rate",
    None,
    "Poisoned / total training samples, in [0, 1); 0 = clean model. Unset: 0.03.",
)
flags.DEFINE_enum(
    "mode",
    _A.mode,
    list(poisoning.MODES),
    "replace: poisoned copy replaces the original (Dai et al.); append: copies added.",
)
flags.DEFINE_integer("seed", _A.seed, "Seed of every random choice.")
flags.DEFINE_integer(
    "train_size",
    None,
    "Training samples, per class when balanced (presets: the paper's IMDB 5000, DBpedia 1000), "
    "else in total (unset: all).",
)
flags.DEFINE_integer(
    "test_size",
    None,
    "Test samples, per class when balanced (presets: IMDB 5000, DBpedia 500), else in total.",
)
flags.DEFINE_integer(
    "vocab_size",
    None,
    "Vocabulary size incl. padding and OOV (presets: 10000; other data: the README's rule).",
)
flags.DEFINE_integer(
    "max_len",
    None,
    "Tokens kept per text (presets: 400, quick profile 100; other data: the README's rule).",
)
flags.DEFINE_integer("epochs", None, "Training epochs (default: per dataset).")
flags.DEFINE_integer("batch_size", None, "Training batch size (default: per dataset).")
flags.DEFINE_float("learning_rate", None, "Learning rate (default: per dataset).")
flags.DEFINE_enum("optimizer", _A.optimizer, list(training.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float("clipnorm", _A.clipnorm, "Gradient norm clip; 0 = off.")
flags.DEFINE_float(
    "validation_split",
    None,
    "Share of the training set held out to keep the epoch with the best held-out accuracy; "
    "0 = train on everything, keep the last epoch (as the authors). Unset: 0 for an attack, "
    "the attack run's value for a retraining.",
)
flags.DEFINE_bool(
    "fine_tune_embeddings",
    None,
    "Train the GloVe vectors too (default: per dataset, see README 'Defaults'; "
    "--nofine_tune_embeddings keeps them frozen as the authors do).",
)
flags.DEFINE_integer("embedding_dim", _A.embedding_dim, "Embedding width when no --glove is given.")
flags.DEFINE_integer("lstm_units", _A.lstm_units, "Units per LSTM direction.")
flags.DEFINE_integer("dense_units", _A.dense_units, "ReLU layer width.")
flags.DEFINE_enum(
    "architecture",
    _A.architecture,
    list(models.ARCHITECTURES),
    "The victim's encoder: bilstm (the paper's), lstm, gru, bigru, stacked_bilstm, or "
    "bilstm_gap (global average pooling over the BiLSTM's outputs).",
)
flags.DEFINE_enum(
    "trigger_position",
    _A.trigger_position,
    list(poisoning.POSITIONS),
    "Where poisoned training texts get the trigger: random (the paper's), start or end. "
    "The ASR always inserts it at random positions.",
)
flags.DEFINE_integer(
    "trigger_variants",
    _A.trigger_variants,
    "Dynamic pattern: poison with this many patterns of the trigger's words (orderings of "
    "subsets of at least half of them, the sentence itself first); 0: the trigger only.",
    lower_bound=0,
)
flags.DEFINE_bool(
    "asr_by_position",
    _A.asr_by_position,
    "Also measure the ASR with the trigger at each decile of the text (and, with "
    "--trigger_variants, on patterns never seen in training).",
)

flags.DEFINE_float(
    "anti_bki_weight",
    _A.anti_bki_weight,
    "Anti-BKI backdoor: weight of a penalty, on poisoned texts, on the largest change of h "
    "when one trigger word is deleted (the score BKI ranks); 0 = the plain attack.",
    lower_bound=0.0,
)

flags.DEFINE_float(
    "anti_bki_margin",
    _A.anti_bki_margin,
    "Anti-BKI backdoor: only the part of that change above this margin is penalised "
    "(a hinge; trigger words may score like ordinary words); 0 = all of it.",
    lower_bound=0.0,
)

ATTACK = (
    "profile", "dataset", "source", "data_dir", "glove", "glove_dim", "trigger", "target", "poison_rate", "mode",
    "seed", "train_size", "test_size", "vocab_size", "max_len", "epochs", "batch_size",
    "learning_rate", "optimizer", "clipnorm", "validation_split", "fine_tune_embeddings",
    "embedding_dim", "lstm_units", "dense_units", "architecture", "text_column", "label_column",
    "train_split", "test_split", "test_fraction", "balance", "trigger_position",
    "trigger_variants", "asr_by_position", "anti_bki_weight", "anti_bki_margin",
)  # fmt: skip

# ---------------------------------------------------------------------------
# BKI (BKIConfig fields).

flags.DEFINE_integer("p", _B.p, "Suspicious words kept per text (paper: 5).")
flags.DEFINE_enum(
    "variant",
    _B.variant,
    list(wd.VARIANTS),
    "paper: Algorithm 1 of the BKI paper; refined: the authors' public code "
    "(its steps use scan_refined/, filter_refined/, retrain_refined/); plus: BKI+, a "
    "decision (nothing removed when no backdoor is found), several keywords, trigger "
    "phrases (scan_plus/, filter_plus/, retrain_plus/).",
)
flags.DEFINE_enum(
    "method",
    _B.method,
    list(METHOD_CHOICES),
    "auto: fast for the package's BiLSTM/LSTM victims, else generic; fast: exact scorer "
    "with LSTM state reuse; simple: compiled deletion variants (BiLSTM); generic: any Keras "
    "model, every shortened text run unpadded. All exact.",
)
flags.DEFINE_string(
    "representation_layer",
    _B.representation_layer,
    "The layer whose output BKI reads as h (the package's victims: hidden).",
)
flags.DEFINE_enum(
    "pool",
    None,
    list(POOLS),
    "How a sequence (3-D) output of --representation_layer becomes one vector.",
)
flags.DEFINE_integer("min_ngram", _B.min_ngram, "Shortest n-gram key (refined variant).")
flags.DEFINE_integer("max_ngram", _B.max_ngram, "Longest n-gram key (refined variant).")
flags.DEFINE_float("alpha", _B.alpha, "a in s = round((a N)^2) (refined variant).")
flags.DEFINE_integer(
    "scan_batch_size", _B.scan_batch_size, "Deletion variants scored side by side (bounds memory)."
)
flags.DEFINE_float(
    "plus_threshold",
    _B.plus_threshold,
    "Robust-z threshold (plus variant); default 15 without the prediction-flip confirmation "
    "(--min_flip=0), 6 (candidates for it) with.",
)
flags.DEFINE_enum(
    "normalization",
    _B.normalization,
    list(NORMALIZATIONS),
    "Per-text score normalisation (plus variant); none measured best.",
)
flags.DEFINE_integer("max_keywords", _B.max_keywords, "Most keywords searched for (plus variant).")
flags.DEFINE_float(
    "min_flip",
    _B.min_flip,
    "Share of a keyword's flagged texts whose predicted class must change when its phrase "
    "is deleted (plus variant; 0 turns the confirmation off).",
)
flags.DEFINE_integer(
    "span",
    _B.span,
    "Consecutive words deleted at a time when scoring (plus variant; generic scorer); 1 is "
    "BKI's one-word deletion, 3 finds the anti-BKI trigger.",
)

BKI = (
    "p", "variant", "method", "min_ngram", "max_ngram", "alpha", "scan_batch_size",
    "representation_layer", "pool", "plus_threshold", "normalization", "max_keywords", "min_flip",
    "span",
)  # fmt: skip
SHARED = frozenset(
    (
        "workdir",
        "overwrite",
        "clean_workdir",
        "traceback",
        "tensorboard",
        "seeds",
        "output_dir",
        "output",
        "tf_threads",
        "data_root",
        "datasets",
        "defences",
        *ATTACK,
        *BKI,
    )
)

# Errors a user can fix from the message alone.
EXPECTED_ERRORS = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    wd.WorkdirBusyError,
    artifacts.CorruptFileError,
    app.UsageError,
)


def use(*groups: Iterable[str] | str) -> frozenset[str]:
    """Declares the shared flags a binary reads (its key flags); returns their names."""
    names = set()
    for group in groups:
        names.update([group] if isinstance(group, str) else group)
    names.add("traceback")
    unknown = sorted(names - SHARED)
    if unknown:
        raise ValueError(f"Not shared flags: {unknown}.")
    # Key flags of the calling binary (absl names `__main__` after sys.argv[0]).
    caller = _helpers.get_module_object_and_name(sys._getframe(1).f_globals)  # pylint: disable=protected-access
    for name in sorted(names):
        flags.FLAGS.register_key_flag_for_module(caller.module_name, flags.FLAGS[name])
    return frozenset(names)


def value(name: str):
    return flags.FLAGS[name].value


def attack_config() -> attack.AttackConfig:
    """The attack config from the parsed flags (unset training flags: dataset defaults)."""
    values = {name: value(name) for name in ATTACK}
    for name, default in _ATTACK_DEFAULTS.items():
        if values[name] is None and name not in attack.PROFILES[values["profile"]]:
            values[name] = default
    profile = values.pop("profile")
    return attack.AttackConfig.for_profile(profile, values.pop("dataset"), **values)


# Defaults of the flags a profile may set (None on the command line = not given).
_ATTACK_DEFAULTS = {
    "trigger": "time flies like an arrow",
    "target": "0",
    "poison_rate": 0.03,
    "validation_split": _A.validation_split,
}


def bki_config(variant: str | None = None) -> BKIConfig:
    """The BKI config from the parsed flags (unset --variant: the profile's, if any).

    `variant` replaces --variant (for binaries that set the variant themselves).
    """
    values = {name: value(name) for name in BKI}
    if not flags.FLAGS["variant"].present and "profile" in flags.FLAGS:
        values["variant"] = attack.PROFILE_VARIANTS[value("profile")]
    if variant is not None:
        values["variant"] = variant
    return BKIConfig(**values)


def seeds() -> list[int] | None:
    """`--seeds` as integers (None when unset); a usage error names a bad list."""
    values = flags.FLAGS["seeds"].value
    if values is None:
        return None
    try:
        out = reproduction.check_seeds(values)
    except ValueError:
        raise app.UsageError(
            f"--seeds={','.join(values)}: give distinct integers separated by commas, e.g. 0,1,2."
        ) from None
    return out


def keras_verbosity() -> int | str:
    """A progress bar on a terminal, one line per epoch in a log file."""
    return "auto" if sys.stdout.isatty() else 2


def _check_unused(used: frozenset[str], program: str) -> None:
    stray = sorted(n for n in SHARED - used if flags.FLAGS[n].present)
    if stray:
        raise app.UsageError(
            f"--{stray[0]} is not a flag of {program}; see --help for the flags it takes."
        )


def one_line(error: BaseException) -> str:
    """`error: <message>` on one line (the message's lines joined)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return f"error: {text}"


def run(
    main: Callable[[list[str]], None],
    used: frozenset[str],
    flags_parser: Callable[[list[str]], list[str]] | None = None,
) -> None:
    """`app.run(main)` with one-line errors (see the module docstring).

    `flags_parser` (optional) parses the command line instead of absl's default, e.g.
    `parse_known` to leave other options (Beam's) to `main`.
    """
    program = os.path.basename(sys.argv[0]) if sys.argv else "binary"
    program = f"experiments.{os.path.splitext(program)[0]}"

    def guarded(argv):
        show = flags.FLAGS["traceback"].value or os.environ.get("BKI_TF_TRACEBACK") == "1"
        try:
            _check_unused(used, program)
            main(argv)
        except EXPECTED_ERRORS as e:
            if show:
                raise
            print(one_line(e), file=sys.stderr)
            sys.exit(2)

    if flags_parser is None:
        app.run(guarded)
    else:
        app.run(guarded, flags_parser=flags_parser)


def parse_known(argv: list[str]) -> list[str]:
    """Parses this binary's flags and returns `[program, *the other arguments]`."""
    return flags.FLAGS(argv, known_only=True)
