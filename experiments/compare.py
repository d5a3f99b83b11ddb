r"""Compares BKI with Activation Clustering, Spectral Signatures, STRIP and l_inf pruning.

Runs every defence on the victim and data of one pipeline workdir and writes
comparison.json (one row per defence), comparison.md and PNG plots into
<workdir>/compare (or --output_dir):

    python -m experiments.compare --workdir=runs/imdb_tfla
    python -m experiments.compare --workdir=runs/imdb_tfla --noretrain \
      --defences=activation_clustering,spectral_signatures,strip,linf_pruning

With --art (needs `pip install -e '.[art]'`), the Adversarial Robustness Toolbox's
Activation Clustering and Spectral Signatures run beside ours (rows
art_activation_clustering and art_spectral_signatures, with the --ac_* / --ss_* settings):

    python -m experiments.compare --workdir=runs/imdb_tfla --art

BKI's row is read from the pipeline's scan/scan.json and report.json (with
--variant=refined: scan_refined/ and report_refined.json; --variant=plus: scan_plus/
and report_plus.json, with BKI+'s decision and phrases in the row's details), so run
`python -m experiments.pipeline` first, or leave bki out of --defences.
"""

import os

from absl import app, flags, logging

from bki_tf import artifacts
from bki_tf.baselines import activation_clustering, spectral_signatures, strip
from bki_tf.baselines import art as art_baselines
from bki_tf.runs import attack, comparison
from bki_tf.runs import workdir as wd
from experiments import common_flags as cf

_USED = cf.use("workdir", "seed", "variant", "output_dir", "defences")

_d = comparison.CompareConfig
_ac = activation_clustering.ActivationClusteringConfig
_ss = spectral_signatures.SpectralSignaturesConfig
_st = strip.StripConfig

_RETRAIN = flags.DEFINE_bool(
    "retrain", _d.retrain, "Retrain the victim on what AC / SS keep (a full training each)."
)
_ART = flags.DEFINE_bool(
    "art",
    _d.art,
    "Also run ART's ActivationDefence and SpectralSignatureDefense (the extra: pip install "
    "-e '.[art]'), measured like our AC / SS.",
)
_SEGMENT_BY = flags.DEFINE_enum(
    "segment_by",
    _d.segment_by,
    list(comparison.SEGMENTS),
    "Class of a sample for AC / SS: the victim's prediction or the training label.",
)
_AC_REDUCTION = flags.DEFINE_enum(
    "ac_reduction", _ac.reduction, list(activation_clustering.REDUCTIONS), "AC: ICA or PCA."
)
_AC_DIMS = flags.DEFINE_integer("ac_dims", _ac.num_dims, "AC: dimensions after reduction.")
_AC_ANALYSIS = flags.DEFINE_enum(
    "ac_analysis",
    _ac.analysis,
    list(activation_clustering.ANALYSES),
    "AC: relative size only, or size and silhouette.",
)
_AC_SIZE_THRESHOLD = flags.DEFINE_float(
    "ac_size_threshold", _ac.size_threshold, "AC: largest relative size of a poison cluster."
)
_AC_SILHOUETTE_THRESHOLD = flags.DEFINE_float(
    "ac_silhouette_threshold", _ac.silhouette_threshold, "AC: smallest silhouette of poison."
)
_SS_EPS = flags.DEFINE_float(
    "ss_poison_rate_bound", _ss.poison_rate_bound, "SS: eps, upper bound on the poisoning rate."
)
_SS_MULTIPLIER = flags.DEFINE_float(
    "ss_eps_multiplier", _ss.eps_multiplier, "SS: remove the top multiplier * eps * n_y."
)
_STRIP_PERTURBATIONS = flags.DEFINE_integer(
    "strip_perturbations", _st.num_perturbations, "STRIP: perturbed copies per text (N)."
)
_STRIP_SWAP_RATIO = flags.DEFINE_float(
    "strip_swap_ratio", _st.swap_ratio, "STRIP: share of a text's tokens replaced per copy."
)
_STRIP_REPLACEMENT = flags.DEFINE_enum(
    "strip_replacement",
    _st.replacement,
    list(strip.REPLACEMENTS),
    "STRIP: donor text's top TF-IDF words (OpenBackdoor) or unigram-frequency words.",
)
_STRIP_FRR = flags.DEFINE_float("strip_frr", _st.frr, "STRIP: target false rejection rate.")
_STRIP_MAX_TEXTS = flags.DEFINE_integer(
    "strip_max_texts", _d.strip_max_texts, "STRIP: cap on calibration/clean/triggered texts each."
)
_CALIBRATION_SHARE = flags.DEFINE_float(
    "calibration_share", _d.calibration_share, "Share of the test set held out for STRIP."
)
_PRUNING_ASR_THRESHOLD = flags.DEFINE_float(
    "pruning_asr_threshold",
    _d.pruning_asr_threshold,
    "Pruning: report the fewest pruned units with ASR below this.",
)
flags.mark_flags_as_required(["workdir"])


def _config() -> comparison.CompareConfig:
    return comparison.CompareConfig(
        defences=tuple(cf.value("defences") or comparison.DEFENCES),
        retrain=_RETRAIN.value,
        segment_by=_SEGMENT_BY.value,
        ac=_ac(
            num_dims=_AC_DIMS.value,
            reduction=_AC_REDUCTION.value,
            analysis=_AC_ANALYSIS.value,
            size_threshold=_AC_SIZE_THRESHOLD.value,
            silhouette_threshold=_AC_SILHOUETTE_THRESHOLD.value,
            seed=cf.value("seed"),
        ),
        ss=_ss(poison_rate_bound=_SS_EPS.value, eps_multiplier=_SS_MULTIPLIER.value),
        strip_config=_st(
            num_perturbations=_STRIP_PERTURBATIONS.value,
            swap_ratio=_STRIP_SWAP_RATIO.value,
            replacement=_STRIP_REPLACEMENT.value,
            frr=_STRIP_FRR.value,
            seed=cf.value("seed"),
        ),
        strip_max_texts=_STRIP_MAX_TEXTS.value,
        calibration_share=_CALIBRATION_SHARE.value,
        pruning_asr_threshold=_PRUNING_ASR_THRESHOLD.value,
        seed=cf.value("seed"),
        variant=cf.value("variant"),
        art=_ART.value,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _config()  # Validates every flag before anything is loaded.
    if config.art:
        art_baselines.require_art()  # Says how to install ART before any work.
    workdir = cf.value("workdir")
    output_dir = cf.value("output_dir") or os.path.join(workdir, comparison.COMPARE_DIR)
    comparison.check_bki_files(workdir, config)
    run = attack.load_run(workdir)
    wd.check_writable(output_dir)
    with wd.lock(workdir):
        result = comparison.run_comparison(run, config, verbose=0, log=logging.info)
        artifacts.write_json(
            os.path.join(output_dir, comparison.CONFIG_FILE),
            {"workdir": workdir, **config.to_dict()},
        )
        paths = comparison.write_comparison(result, output_dir)
    print(result.summary())
    print(f"\nWrote {paths[comparison.COMPARISON_JSON]} and {len(paths) - 1} other files.")


if __name__ == "__main__":
    cf.run(main, _USED)
