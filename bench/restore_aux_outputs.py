"""Give a run trained with auxiliary classes before they were kept its auxiliary outputs back.

Runs saved before ``model.aux_outputs`` existed dropped the auxiliary rows of the classifier
(their softmax renormalised "abnormal, not a class" into the classes). Their best checkpoint
still holds every output: this rebuilds ``model.safetensors`` from ``checkpoints/best.ckpt``
(read without unpickling code) with the classes first and the auxiliary outputs after, and
records them in the card, so ``cxr evaluate`` fits the other-abnormal flag and reports it.
The class logits are the same tensors as before: class predictions do not change.

Usage: python bench/restore_aux_outputs.py RUN [RUN ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrkit.models import build_classifier, save_weights
from cxrkit.run import read_card, write_card
from cxrkit.training.checkpoint_io import SafeCheckpointIO


def restore(run: Path) -> str:
    card = read_card(run)
    aux = list(card.model.extra.get("aux_classes") or [])
    if not aux:
        return f"{run}: no auxiliary classes"
    if card.aux_outputs:
        return f"{run}: already keeps {', '.join(card.aux_outputs)}"
    state = SafeCheckpointIO().load_checkpoint(run / "checkpoints" / "best.ckpt")["state_dict"]
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    model, _ = build_classifier(
        card.model.name, len(card.classes) + len(aux), in_chans=card.model.in_chans, pretrained=False
    )
    model.load_state_dict(weights, strict=True)
    save_weights(run, model)
    card.model.extra["aux_outputs"] = aux
    card.model.extra["aux_rule"] = "classes renormalised; auxiliary mass reported as other_abnormal (restored)"
    write_card(run, card)
    return f"{run}: keeps {', '.join(aux)} after {', '.join(card.classes)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    for run in ap.parse_args().runs:
        print(restore(run))


if __name__ == "__main__":
    main()
