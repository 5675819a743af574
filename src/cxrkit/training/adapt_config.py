"""The settings of ``cxr adapt`` (:mod:`cxrkit.training.adapt`), free of heavy imports so that
``cxr adapt --help`` shows at once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

DROP = "drop"  # --map LABEL=drop: leave a site label out
SITE_WEIGHTS = ("labels", "films")


@dataclass
class AdaptSettings:
    """How the base is fine-tuned. Defaults: the recipe chosen on site/'s patient folds and the
    base's val split (docs/adapting.md, bench/results/site_adapt_choice.json). Normals / viral films
    called right on 3 held-out folds of site/ (base: 81.2 / 98.6): lr 1e-4, bacterial films trained
    as the auxiliary `pneumonia`, class weights: 91.1 / 94.3; bacterial films left out: 92.9 /
    97.1; lr 3e-4 and site films weighted alike: 94.6 / 98.6. lr 5e-4, 6 or 8 epochs, and site
    films twice per epoch did no better.
    """

    epochs: int = 4
    lr: float = 3e-4
    replay: int = 800  # at most this many films of the base run's training split in every epoch
    replay_ratio: float = 4.0  # ... and at most this many per site film: few site films, few steps to undo
    site_repeats: int = 1  # each site film is seen this many times per epoch
    anchor: float = 0.0  # L2-SP weight pulling every parameter toward the base's
    site_weights: str = "films"  # "labels": each site label weighs as its class; "films": each site film alike
    batch_size: int = 32
    seed: int = 0
    precision: str = "32"
    label_map: dict[str, str] = field(default_factory=dict)  # site label -> output name or "drop"

    def to_dict(self) -> dict:
        return asdict(self)
