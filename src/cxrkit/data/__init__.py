"""Data layer: read datasets in any supported layout, decode images, split them honestly.

Public face::

    ds = load_dataset("data/cxr", classes="covid,viral_pneumonia,normal")
    prep = prepare("data/cxr")            # decode + hash + patient/duplicate-aware split
    write_split("split.csv", prep.dataset, prep.split)
"""

from .classes import DEFAULT_CLASSES, LABEL_ALIASES, normalise_label, parse_classes
from .dataset import CxrDataset, Record, Skipped
from .files import FoundFile, iter_image_files, sniff_dicom
from .images import ImageReadError, read_image
from .inspect import inspect_dataset
from .prepare import Prepared, prepare
from .scan import ImageInfo, scan_dataset
from .sources import DatasetError, Source, load_dataset, register_source
from .splits import SPLITS, Split, SplitError, make_split, read_split, split_fingerprint, write_split

__all__ = [
    "DEFAULT_CLASSES",
    "LABEL_ALIASES",
    "normalise_label",
    "parse_classes",
    "CxrDataset",
    "Record",
    "Skipped",
    "ImageReadError",
    "read_image",
    "inspect_dataset",
    "Prepared",
    "prepare",
    "ImageInfo",
    "scan_dataset",
    "DatasetError",
    "load_dataset",
    "SPLITS",
    "Split",
    "SplitError",
    "make_split",
    "read_split",
    "split_fingerprint",
    "write_split",
    "FoundFile",
    "iter_image_files",
    "sniff_dicom",
    "Source",
    "register_source",
]
