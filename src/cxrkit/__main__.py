"""``python -m cxrkit ...`` is ``cxr ...`` (e.g. under ``torchrun -m cxrkit train ...``)."""

from .cli.main import main

main()
