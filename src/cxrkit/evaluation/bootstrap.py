"""The evaluation-facing name of the patient bootstrap; the code lives in :mod:`cxrkit._bootstrap`
(the bottom layer) so that ``cxrkit.lungs``, below training, can put a CI on its test Dice."""

from .._bootstrap import bootstrap_ci

__all__ = ["bootstrap_ci"]
