"""Report pages with more than one model: the compression and GPU pages keep each model apart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports.__main__ import main

STORE = Path(__file__).parent / "fixtures" / "asv" / "store" / "records" / "toy-1thread" / "be584beb"


def _write(folder: Path, name: str, record: dict) -> None:
    (folder / name).write_text(json.dumps(record))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A records-only report of the fixture's compression grid for dlrm plus the same grid as dcnv2 (AUCs
    shifted by -0.1), and one GPU-suite record per model."""
    tmp = tmp_path_factory.mktemp("models")
    folder = tmp / "records" / "toy" / "c0ffee00"
    folder.mkdir(parents=True)
    for path in sorted(STORE.glob("compression-*.json")):
        record = json.loads(path.read_text())
        shutil.copy(path, folder / path.name)
        record["scenario"]["model"] = {"arch": "dcnv2"}
        record["quality"]["auc"] -= 0.1
        _write(folder, path.name.replace("compression-", "compression-dcnv2-"), record)
    core = json.loads((STORE / "core-torch-synthetic.json").read_text())
    for arch in ("dlrm", "dcnv2"):
        rec = dict(core, scenario={**core["scenario"], "model": {"arch": arch}, "device": {"name": "cpu"}},
                   asv={"suite": "gpu", "machine": "toy", "commit": "c0ffee00"})
        _write(folder, f"gpu--model={arch}.json", rec)
    out = tmp / "site"
    assert main(["build", "--records-only", "--records", str(tmp / "records"), "--results", str(tmp / "none"),
                 "--out", str(out)]) == 0
    return out


def test_compression_gates_are_relative_to_each_models_own_baseline(site: Path) -> None:
    g = pd.read_csv(site / "data" / "compression_gates.csv")
    assert set(g["model"]) == {"dlrm", "dcnv2"}
    for _, r in g.iterrows():
        base = g[(g["framework"] == r["framework"]) & (g["model"] == r["model"]) & (g["method"] == "none")]
        assert len(base) == 1
        assert r["relative_auc"] == pytest.approx(r["auc"] / base["auc"].iloc[0])
    assert "dcnv2" in (site / "compression.html").read_text()


def test_gpu_settings_table_names_the_model_when_there_are_several(site: Path) -> None:
    t = pd.read_csv(site / "data" / "gpu_settings.csv")
    assert sorted(t["model"]) == ["dcnv2", "dlrm"]
