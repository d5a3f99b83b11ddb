"""Spectral Signatures (Tran, Li & Madry, NeurIPS 2018) on the victim's hidden state.

Brandon Tran, Jerry Li & Aleksander Madry, "Spectral Signatures in Backdoor
Attacks", NeurIPS 2018, Algorithm 1. For each class y, with `R_i` the learned
representation of the n_y training samples of that class:

1. `R_hat = mean_i R_i` and `M = [R_i - R_hat]` (n_y x d);
2. `v` = the top right singular vector of `M`;
3. outlier score `tau_i = ((R_i - R_hat) . v)^2`;
4. remove the samples with the top `1.5 * eps * n_y` scores, `eps` an upper bound on
   the share of poisoned samples.

Here `R_i` is the victim's 256-d BiLSTM state (`bki_tf.models.HIDDEN`) and the caller
chooses the class of each sample (`bki_tf.runs.comparison` passes the predicted class, as
the issue asks; the paper uses the training label). The number removed per class is
`min(n_y, round(eps_multiplier * eps * n_y))`, ties in score going to the earlier
sample.

Beside ART's `SpectralSignatureDefense` (`bki_tf.baselines.art`, checked with ART
1.20.1 in `tests/art_test.py`): it projects the *uncentred* representations on `v` and
scores `|<R_i, v>|`, which ranks samples differently from the paper's
`((R_i - R_hat) . v)^2` whenever `R_hat . v != 0` (on the test's data it flags the clean
samples with the largest projection; centring each class first makes the two agree); and
it removes by a `np.quantile` cut-off, at least one sample per class, rather than a count.

Per-sample suspicion score (for AUROC across classes): `tau_i` divided by its class's
mean `tau` (that is, by `sigma_1^2 / n_y`). Within a class this is monotone in
`tau_i`, so the per-class decisions are the paper's; the scaling makes scores of
different classes comparable when pooled.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bki_tf import detection

METHOD = "spectral_signatures"


@dataclasses.dataclass(frozen=True)
class SpectralSignaturesConfig:
    """Hyper-parameters of Spectral Signatures.

    Attributes:
      poison_rate_bound: `eps`, an upper bound on the poisoned share of a class.
      eps_multiplier: The paper removes the top `1.5 * eps * n_y` scores.
    """

    poison_rate_bound: float = 0.05
    eps_multiplier: float = 1.5

    def __post_init__(self):
        if not 0.0 < self.poison_rate_bound < 1.0:
            raise ValueError(
                f"poison_rate_bound (eps) must lie in (0, 1), got {self.poison_rate_bound}; "
                "pass an upper bound on the poisoning rate, e.g. 0.05."
            )
        if not self.eps_multiplier > 0:
            raise ValueError(
                f"eps_multiplier must be > 0 (the paper uses 1.5), got {self.eps_multiplier}."
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def outlier_scores(representations: np.ndarray) -> np.ndarray:
    """Tran et al.'s `tau_i = ((R_i - R_hat) . v)^2` for one class.

    Args:
      representations: `float [n, d]` representations of one class.

    Returns:
      `float64 [n]` squared projections on the top right singular vector of the
      centred matrix (zeros when the class has no variance).
    """
    r = np.asarray(representations, dtype=np.float64)
    centered = r - r.mean(axis=0)
    if len(r) < 2 or not np.any(centered):
        return np.zeros(len(r))
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    return (centered @ vt[0]) ** 2


def detect(
    representations: np.ndarray,
    classes: np.ndarray,
    config: SpectralSignaturesConfig | None = None,
) -> detection.DetectionResult:
    """Runs Spectral Signatures (Tran et al. 2018, Algorithm 1) per class.

    Args:
      representations: `float [N, D]` hidden representations of the training samples.
      classes: `int [N]` class of each sample (predicted class or training label).
      config: `eps` and the 1.5 multiplier.

    Returns:
      A `DetectionResult`; `report["classes"]` holds, per class, its size, the number
      removed, the top singular value and the score cut-off.
    """
    config = config or SpectralSignaturesConfig()

    def analyse(x: np.ndarray, c: int):
        del c  # Every class is treated alike.
        tau = outlier_scores(x)
        n = len(x)
        k = min(n, int(round(config.eps_multiplier * config.poison_rate_bound * n)))
        mean_tau = float(tau.mean())
        order = np.lexsort((np.arange(n), -tau))  # Score descending, earlier first.
        stats = {
            "size": n,
            "removed": k,
            "top_singular_value": float(np.sqrt(tau.sum())),
            "cutoff_score": float(tau[order[k - 1]]) if k else None,
        }
        return (tau / mean_tau if mean_tau > 0 else np.zeros(n)), order[:k], stats

    return detection.detect_per_class(representations, classes, METHOD, analyse, config.to_dict())
