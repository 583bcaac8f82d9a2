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


def test_compression_page_shows_retrieval_points_with_their_gate_metric(tmp_path: Path) -> None:
    """asv results of the compression suite for two-tower and NeuMF (no AUC): each model gets a table and a
    plot of the embedding bytes ratio against the change in its own gate metric, named on the axis."""
    from tests.asv_synth import ENV, commit_hash
    from tests.asv_synth import store as empty_store

    results = empty_store(tmp_path, "synth")
    names = ["method", "framework", "data", "model"]
    params = [["'int8'", "'hash:0.1'"], ["'torch'"], ["'movielens'"], ["'two-tower'", "'neumf'"]]
    key = "bench_compression.CompressedModel.{}"
    loss = [0.01, 0.02, 0.03, 0.05]  # (int8, two-tower), (int8, neumf), (hash, two-tower), (hash, neumf)
    inverse = [0.25, 0.26, 0.1, 0.11]
    bench = json.loads((results / "benchmarks.json").read_text())
    for metric, unit in (("track_quality_loss", "gate metric (baseline - compressed)"),
                         ("track_inverse_embedding_ratio", "stored/fp32")):
        bench[key.format(metric)] = {"name": key.format(metric), "param_names": names, "params": params,
                                     "type": "track", "unit": unit, "version": "v1"}
    (results / "benchmarks.json").write_text(json.dumps(bench))
    commit = commit_hash(0)
    doc = {"commit_hash": commit, "env_name": ENV, "date": 1_700_000_000_000,
           "params": {"machine": "synth", "python": "3.11"}, "python": "3.11", "requirements": {}, "env_vars": {},
           "result_columns": ["result", "params", "version", "started_at", "duration"],
           "results": {key.format("track_quality_loss"): [loss, params, "v1", 0, 1.0],
                       key.format("track_inverse_embedding_ratio"): [inverse, params, "v1", 0, 1.0]},
           "durations": {}, "version": 2}
    (results / "synth" / f"{commit[:8]}-{ENV}.json").write_text(json.dumps(doc))
    from reports.asv_results import load_store
    from reports.context import Context
    from reports.pages import compression

    page = compression.build(Context(store=load_store(results), records=pd.DataFrame()))
    assert not page.empty_reason
    sections = {s.title: s for s in page.sections}
    for model, metric, idx in (("two-tower", "recall@10", (0, 2)), ("neumf", "hr@10", (1, 3))):
        sec = sections[f"{model}: {metric} change vs embedding bytes ratio"]
        t = sec.tables[0].frame
        assert set(t["gate_metric"]) == {metric} and set(t["model"]) == {model}
        got = t.set_index("method")
        for method, i in zip(("int8", "hash:0.1"), idx, strict=True):
            assert got.loc[method, "quality_change"] == pytest.approx(-loss[i])
            assert got.loc[method, "embedding_ratio"] == pytest.approx(1 / inverse[i])
        ax = sec.plots[0].figure.axes[0]
        assert ax.get_ylabel() == f"{metric} change (compressed - fp32)"
        assert len(ax.collections[0].get_offsets()) == 2
    # The whole site from these results alone (one machine, track_ figures only) shows the same sections.
    (tmp_path / "records").mkdir()
    out = tmp_path / "site"
    assert main(["build", "--results", str(results), "--records", str(tmp_path / "records"), "--out", str(out)]) == 0
    html = (out / "compression.html").read_text()
    assert "two-tower: recall@10 change vs embedding bytes ratio" in html and "neumf: hr@10 change" in html
