"""`fastface demo`: trains offline, prints how well it did, writes the PNGs, says where."""

from __future__ import annotations

import os

import pytest

from fastface.cli import main


def test_demo_end_to_end(tmp_path, capsys, monkeypatch):
    pytest.importorskip("skimage", reason="the demo needs scikit-image (fastface[data])")
    pytest.importorskip("sklearn", reason="the demo needs scikit-learn (fastface[data])")
    pytest.importorskip("matplotlib", reason="the demo's pictures need matplotlib (fastface[data])")
    monkeypatch.setenv("FASTFACE_DATA", str(tmp_path / "no-data-here"))  # Olivetti absent: skipped, not fatal
    out = tmp_path / "pics"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "face vs non-face" in text and "accuracy" in text and "digits" in text
    assert "Olivetti skipped" in text
    lfw_acc = float(text.split("-> accuracy ")[1].split(",")[0])
    assert lfw_acc >= 0.85
    for name in ("units_layer1.png", "units_layer2.png", "saliency_layer1.png", "saliency_layer2.png"):
        assert os.path.getsize(out / name) > 1000
    assert os.path.abspath(out) in text


def test_demo_reports_missing_extra(monkeypatch, capsys):
    import fastface.faces.datasets as ds

    def missing():
        return ds._need("no_such_module_xyz.data", "load_lfw_subset")

    monkeypatch.setattr(ds, "load_lfw_subset", missing)
    monkeypatch.setattr("fastface.faces.load_lfw_subset", missing)
    assert main(["demo", "--out", "unused"]) == 2
    assert 'pip install "fastface[data]"' in capsys.readouterr().err
