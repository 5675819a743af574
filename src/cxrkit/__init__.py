"""cxrkit: train, evaluate and explain chest X-ray classifiers, honestly.

For research, not diagnosis: no output of this package is a medical device.
"""

__version__ = "0.1.0"

RESEARCH_NOTICE = "For research use only. Not for diagnosis or clinical decisions."
