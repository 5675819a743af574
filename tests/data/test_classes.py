"""classes: one canonical name per finding, and parsing of --classes."""

from __future__ import annotations

import pytest

from cxrkit.data.classes import DEFAULT_CLASSES, LABEL_ALIASES, normalise_label, parse_classes


@pytest.mark.parametrize(
    "raw,canonical",
    [
        ("COVID-19", "covid"),  # Kaggle v1
        ("COVID", "covid"),  # Kaggle v4
        ("covid19", "covid"),
        ("Covid 19", "covid"),
        ("SARS-CoV-2", "covid"),
        ("NORMAL", "normal"),  # Kermany
        ("Normal", "normal"),
        ("No Finding", "normal"),  # ieee8023 / NIH
        ("healthy", "normal"),
        ("Viral Pneumonia", "viral_pneumonia"),
        ("viral-pneumonia", "viral_pneumonia"),
        ("  viral__pneumonia ", "viral_pneumonia"),
        ("virus", "viral_pneumonia"),
        ("bacteria", "bacterial_pneumonia"),
        ("Bacterial Pneumonia", "bacterial_pneumonia"),
        ("Lung_Opacity", "lung_opacity"),
        ("PNEUMONIA", "pneumonia"),
        ("TB", "tuberculosis"),
        ("Pleural Effusion", "pleural_effusion"),  # unknown names: lower-case, underscores
        ("-Cardiomegaly-", "cardiomegaly"),
    ],
)
def test_normalise_label(raw, canonical):
    assert normalise_label(raw) == canonical


def test_aliases_map_to_fixed_points():
    for alias, canonical in LABEL_ALIASES.items():
        assert normalise_label(alias) == canonical
        assert normalise_label(canonical) == canonical


@pytest.mark.parametrize("raw", ["", "   ", "--", "_"])
def test_normalise_label_rejects_empty(raw):
    with pytest.raises(ValueError, match="empty class name"):
        normalise_label(raw)


def test_parse_classes_default_and_order():
    assert parse_classes(None) == DEFAULT_CLASSES == ("covid", "viral_pneumonia", "normal")
    assert parse_classes("normal,COVID-19") == ("normal", "covid")
    assert parse_classes(" Viral Pneumonia , normal ,") == ("viral_pneumonia", "normal")
    assert parse_classes(["No Finding", "covid", "bacteria"]) == ("normal", "covid", "bacterial_pneumonia")
    assert parse_classes(("a", "b")) == ("a", "b")


@pytest.mark.parametrize(
    "spec,match",
    [
        ("covid", "at least two classes"),
        ("", "at least two classes"),
        (",,", "at least two classes"),
        ([], "at least two classes"),
        ("covid,COVID-19", "named twice"),
        ("normal,no finding,covid", "named twice"),
    ],
)
def test_parse_classes_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_classes(spec)
