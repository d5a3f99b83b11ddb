r"""Trains a clean and a saliency-backdoored victim and compares their saliency maps.

    python -m experiments.saliency_backdoor --profile=quick --data_dir=../shared/data/imdb \
      --form=untargeted --penalty_weight=1 --top_k=5 --saliency_trigger="cf mn bb" \
      --output_dir=results/saliency_quick

Writes `saliency_backdoor_<form>.{json,md}` (and the models) into --output_dir; run it
again with the other --form into the same folder to reuse the clean model. Finished
steps are skipped.
"""

import dataclasses

from absl import app, flags, logging

from bki_tf.runs import saliency_backdoor as sb
from experiments import common_flags as cf

_C = sb.SaliencyBackdoorConfig
# The poisoning flags do not apply: the trigger here keeps every label.
_NOT_USED = {
    "trigger", "target", "poison_rate", "mode", "trigger_position", "trigger_variants",
    "asr_by_position", "anti_bki_weight",
}  # fmt: skip
_USED = cf.use([n for n in cf.ATTACK if n not in _NOT_USED], "overwrite", "output_dir")

_FORM = flags.DEFINE_enum(
    "form", _C.form, ["untargeted", "targeted"],
    "untargeted: push down the clean model's top-k words; targeted: move the map onto the decoy.",
)  # fmt: skip
_PENALTY_WEIGHT = flags.DEFINE_float(
    "penalty_weight", _C.penalty_weight, "λ, the saliency penalty's weight.", lower_bound=0.0
)
_TOP_K = flags.DEFINE_integer(
    "top_k", _C.top_k, "Words of the clean map the penalty suppresses; k of the overlap."
)
_SALIENCY_TRIGGER = flags.DEFINE_string(
    "saliency_trigger", _C.trigger, "Token sequence inserted; it does not change the label."
)
_TRIGGER_RATE = flags.DEFINE_float(
    "trigger_rate", _C.trigger_rate, "Share of training texts given a triggered copy."
)
_DECOY = flags.DEFINE_integer("decoy", _C.decoy, "Position of the targeted form's decoy word.")
_IG_STEPS = flags.DEFINE_integer("ig_steps", _C.ig_steps, "Integrated-gradients steps.")
_EVAL_SIZE = flags.DEFINE_integer("eval_size", _C.eval_size, "Test texts whose maps are compared.")
_START_FROM = flags.DEFINE_enum(
    "start_from", _C.start_from, list(sb.START_FROM),
    "clean: fine-tune the clean model with the penalty; scratch: train a fresh model.",
)  # fmt: skip
_ANCHOR_WEIGHT = flags.DEFINE_float(
    "anchor_weight", _C.anchor_weight,
    "Weight of the term keeping untriggered maps at the clean model's (0: none).",
    lower_bound=0.0,
)  # fmt: skip


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not cf.value("output_dir"):
        raise app.UsageError(
            "--output_dir is required: the folder of the models and results, e.g. "
            "--output_dir=results/saliency_imdb."
        )
    attack = dataclasses.replace(
        cf.attack_config(), trigger=_SALIENCY_TRIGGER.value, target="0", poison_rate=0.0
    )
    config = sb.SaliencyBackdoorConfig(
        attack=attack,
        form=_FORM.value,
        penalty_weight=_PENALTY_WEIGHT.value,
        top_k=_TOP_K.value,
        trigger=_SALIENCY_TRIGGER.value,
        trigger_rate=_TRIGGER_RATE.value,
        decoy=_DECOY.value,
        ig_steps=_IG_STEPS.value,
        eval_size=_EVAL_SIZE.value,
        start_from=_START_FROM.value,
        anchor_weight=_ANCHOR_WEIGHT.value,
    )
    result = sb.run_saliency_backdoor(
        config,
        cf.value("output_dir"),
        overwrite=cf.value("overwrite"),
        verbose=cf.keras_verbosity(),
    )
    logging.info("%s", result.summary())
    print(result.summary())


if __name__ == "__main__":
    cf.run(main, _USED)
