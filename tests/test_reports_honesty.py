"""The report is honest about sample counts, reads v1 and v2 records, shows roofline fractions and
flags, and cross-checks asv timings against the run records of the same work.

Fixtures: tests/fixtures/asv/store (asv runs with 5-10 samples per time_* figure, v1-style records) and
tests/fixtures/asv/quick (one `asv run --quick`: n=1; schema-v2 records), both from make_fixture.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from recsys_impls.errors import UsageError
from reports.__main__ import main

FIXTURES = Path(__file__).parent / "fixtures" / "asv"
STORE = FIXTURES / "store"
QUICK = FIXTURES / "quick"
TRAIN = "bench_core.TrainStep.time_train_step"
INFER = "bench_core.InferBatch.time_infer_batch"


def _build(results: Path, out: Path, records: Path | None = None) -> Path:
    args = ["build", "--results", str(results), "--out", str(out)]
    if records is not None:
        args += ["--records", str(records)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def quick_site(quick_report: Path) -> Path:
    return quick_report


@pytest.fixture(scope="module")
def store_site(store_report: Path) -> Path:
    return store_report


@pytest.fixture()
def quick_copy(tmp_path: Path) -> Path:
    shutil.copytree(QUICK, tmp_path / "quick")
    return tmp_path / "quick"


def _record_files(store: Path) -> dict[str, Path]:
    return {json.loads(p.read_text())["framework"]: p for p in sorted((store / "records").rglob("core--*.json"))}


def _asv_ms(store: Path, benchmark: str, framework: str) -> float:
    from reports.asv_results import load_store

    rows = load_store(store / "results").rows
    row = rows[(rows["benchmark"] == benchmark) & rows["params"].map(lambda p: p["framework"] == framework)]
    return 1e3 * float(row["value"].iloc[0])


def _plant(store: Path, framework: str, train_factor: float, infer_factor: float) -> Path:
    """Make a record's medians exactly factor x asv's figure for the same work."""
    path = _record_files(store)[framework]
    rec = json.loads(path.read_text())
    rec["train"]["step_ms"]["median"] = train_factor * _asv_ms(store, TRAIN, framework)
    rec["infer"]["batch_ms"]["median"] = infer_factor * _asv_ms(store, INFER, framework)
    rec["flags"] = [f for f in rec.get("flags", []) if f["kind"] != "asv-vs-record-disagree"]
    path.write_text(json.dumps(rec))
    return path


def _set_sample_count(results: Path, benchmark: str, n: int, ci: tuple[float, float] | None) -> None:
    """Rewrite asv's stats_repeat (and bounds) of one benchmark in a copied results file."""
    for f in results.glob("*/*-*.json"):
        d = json.loads(f.read_text())
        cols = d["result_columns"]
        entry = d["results"][benchmark]
        k = len(entry[0])
        while len(entry) < len(cols):
            entry.append(None)
        entry[cols.index("stats_repeat")] = [n] * k
        entry[cols.index("stats_number")] = [1] * k
        if ci is not None:
            entry[cols.index("stats_ci_99_a")] = [v * ci[0] for v in entry[0]]
            entry[cols.index("stats_ci_99_b")] = [v * ci[1] for v in entry[0]]
        f.write_text(json.dumps(d))


# --- sample counts -------------------------------------------------------------------------------

def test_sample_count_is_asv_repeat() -> None:
    from reports.asv_results import load_store

    quick = load_store(QUICK / "results").rows
    timed = quick[quick["metric"].str.startswith("time_")]
    assert len(timed) == 4 and (timed["n"] == 1).all()  # asv --quick: one call
    assert (timed["ci_lo"] == float("-inf")).all()
    full = load_store(STORE / "results").rows
    ok = full[full["metric"].str.startswith("time_") & (full["status"] == "ok")]
    assert (ok["n"] >= 5).all()
    assert (full[full["metric"].str.startswith("track_") & (full["status"] == "ok")]["n"] == 1).all()
    assert full[full["status"] != "ok"]["n"].isna().all()


def test_single_sample_gets_no_ratio_ci_or_verdict(quick_site: Path) -> None:
    t = pd.read_csv(quick_site / "data" / "framework_ratios.csv")
    timed = t[t["benchmark"].isin([TRAIN, INFER])]
    assert len(timed) == 2
    assert timed["ratio_tf_over_torch"].isna().all()
    assert timed["ci99_low"].isna().all() and timed["ci99_high"].isna().all()
    assert timed["better"].str.startswith("single sample").all()
    assert (timed["torch_n"] == 1).all() and (timed["tf_n"] == 1).all()
    html = (quick_site / "framework.html").read_text()
    assert "single sample: no ratio" in html
    assert not (quick_site / "img" / "framework_time_ratio.png").exists()
    assert "No ratio plot: no time_* figure has &gt;= 5 samples" in html


def test_enough_samples_gives_ratio_with_its_interval(store_site: Path) -> None:
    t = pd.read_csv(store_site / "data" / "framework_ratios.csv")
    timed = t[t["benchmark"].str.contains(r"\.time_") & t["torch"].notna()]
    assert len(timed) and (timed["torch_n"] >= 5).all() and (timed["tf_n"] >= 5).all()
    assert (timed["ci99_low"] <= timed["ratio_tf_over_torch"]).all()
    assert (timed["ratio_tf_over_torch"] <= timed["ci99_high"]).all()
    assert not timed["better"].str.startswith("single sample").any()
    html = (store_site / "framework.html").read_text()
    assert "a_low/b_high .. a_high/b_low" in html  # the page says how the interval is derived
    assert "n=10/10" in html or "left out" in html or "Every time_* figure" in html


def test_track_figures_single_sample_but_byte_counts_compare(store_site: Path) -> None:
    t = pd.read_csv(store_site / "data" / "framework_ratios.csv")
    auc = t[t["benchmark"] == "bench_core.Quality.track_auc_gap"]
    assert auc["ratio_tf_over_torch"].isna().all() and auc["better"].str.startswith("single sample").all()
    size = t[t["benchmark"] == "bench_core.Quality.track_model_bytes"]
    assert size["ratio_tf_over_torch"].notna().all() and size["better"].str.contains("exact count").all()


def test_three_samples_too_few_for_a_ci(tmp_path: Path) -> None:
    shutil.copytree(QUICK / "results", tmp_path / "results")
    _set_sample_count(tmp_path / "results", TRAIN, 3, (0.9, 1.1))
    site = _build(tmp_path / "results", tmp_path / "site", QUICK / "records")
    t = pd.read_csv(site / "data" / "framework_ratios.csv")
    row = t[t["benchmark"] == TRAIN].iloc[0]
    assert row["torch_n"] == 3 and pd.isna(row["ratio_tf_over_torch"]) and pd.isna(row["ci99_low"])
    assert row["better"].startswith("n=3, too few for a CI")
    assert "n=3, too few for a CI" in (site / "framework.html").read_text()


def test_five_samples_on_the_quick_store_draw_the_ratio_plot(tmp_path: Path) -> None:
    shutil.copytree(QUICK / "results", tmp_path / "results")
    _set_sample_count(tmp_path / "results", TRAIN, 5, (0.9, 1.1))
    site = _build(tmp_path / "results", tmp_path / "site", QUICK / "records")
    t = pd.read_csv(site / "data" / "framework_ratios.csv").set_index("benchmark")
    r = t.loc[TRAIN]
    assert r["ratio_tf_over_torch"] == pytest.approx(_asv_ms(QUICK, TRAIN, "tf") / _asv_ms(QUICK, TRAIN, "torch"))
    # conservative: tf_low / torch_high .. tf_high / torch_low
    assert r["ci99_low"] == pytest.approx(r["ratio_tf_over_torch"] * 0.9 / 1.1)
    assert r["ci99_high"] == pytest.approx(r["ratio_tf_over_torch"] * 1.1 / 0.9)
    html = (site / "framework.html").read_text()
    assert 'src="img/framework_time_ratio.png"' in html
    assert "1 time_* figure(s) with fewer than 5 samples on a side are left out" in html


def test_labels_and_interval_helpers() -> None:
    from reports.page import enough_samples, n_label, ratio_interval, too_few_label

    assert n_label(1) == "single sample" and n_label(None) == "single sample"
    assert n_label(3) == "n=3, too few for a CI" and n_label(12) == "n=12"
    assert enough_samples(5, 9) and not enough_samples(5, 4) and not enough_samples(float("nan"), 9)
    assert too_few_label({"torch": 1, "tf": 10}).startswith("single sample: no ratio")
    assert ratio_interval(2.0, 4.0, 1.0, 2.0) == (1.0, 4.0)
    assert ratio_interval(float("-inf"), 4.0, 1.0, 2.0) == (None, None)


def test_single_samples_on_history_and_hardware_pages(tmp_path: Path) -> None:
    """A 3 ms slowdown seen through single samples is not called a regression, nor normalised."""
    results = tmp_path / "results"
    shutil.copytree(STORE / "results", results)
    for f in (results / "toy-2threads").glob("*-*.json"):
        d = json.loads(f.read_text())
        cols = d["result_columns"]
        for name, entry in d["results"].items():
            if ".time_" in name and len(entry) > cols.index("stats_repeat") and entry[cols.index("stats_repeat")]:
                entry[cols.index("stats_repeat")] = [1] * len(entry[0])
                entry[cols.index("stats_ci_99_a")] = [float("-inf")] * len(entry[0])
                entry[cols.index("stats_ci_99_b")] = [float("inf")] * len(entry[0])
                entry[cols.index("samples")] = [[v] for v in entry[0]]
        f.write_text(json.dumps(d))
    site = _build(results, tmp_path / "site")
    data = site / "data"
    regs = data / "history_regressions_toy_2threads.csv"
    if regs.exists():
        assert not pd.read_csv(regs)["benchmark"].str.contains(r"\.time_").any()
    aside = pd.read_csv(data / "history_unjudged_toy_2threads.csv")
    assert aside["benchmark"].str.endswith("time_train_step").sum() == 4
    assert aside["why"].str.startswith("single sample").all()
    assert "red crosses mark" in (site / "history.html").read_text()
    norm = pd.read_csv(data / "hardware_normalised.csv")
    timed = norm[norm["benchmark"].str.contains(r"\.time_train_step") & norm["benchmark"].str.startswith("bench_core")]
    assert len(timed) == 4 and timed["toy-2threads"].isna().all() and timed["toy-1thread"].isna().all()
    assert timed["note"].str.contains("toy-2threads single sample").all()
    assert (timed["n toy-2threads"] == 1).all() and (timed["n toy-1thread"] >= 5).all()
    summary = pd.read_csv(data / "hardware_geomean.csv").set_index("machine")
    assert (summary["n (time_* benchmarks)"] == 0).all()


# --- records v1 and v2 ---------------------------------------------------------------------------

def test_v1_and_v2_records_load_into_one_table(tmp_path: Path) -> None:
    from reports.records import load_records

    v1 = next((STORE / "records" / "toy-1thread").rglob("core-torch-synthetic.json"))
    v2 = _record_files(QUICK)["tf"]
    for name, src in (("m1/c1", v1), ("m2/c2", v2)):
        (tmp_path / name).mkdir(parents=True)
        shutil.copy2(src, tmp_path / name / src.name)
    recs = load_records(tmp_path)
    recs = recs.set_index(recs["file"].map(lambda f: Path(f).parent.parent.name))
    assert recs.loc["m1", "schema_version"] == 1 and recs.loc["m2", "schema_version"] == 2
    assert pd.isna(recs.loc["m1", "train.step_ms.n"]) and pd.isna(recs.loc["m1", "roofline.train.fraction"])
    assert recs.loc["m1", "quality.auc"] > 0.5
    v2rec = json.loads(v2.read_text())
    row = recs.loc["m2"]
    assert row["train.step_ms.n"] == v2rec["train"]["step_ms"]["n"] == 40
    for col in ("median", "ci_low", "ci_high"):
        assert row[f"train.step_ms.{col}"] == v2rec["train"]["step_ms"][col]
    assert row["infer.batch_ms.median"] == v2rec["infer"]["batch_ms"]["median"]
    assert row["latency_ms.stats.n"] == 30
    assert row["roofline.train.fraction"] == 0.93 and row["roofline.train.bound"] == "compute"
    assert row["roofline.infer.fraction"] == 1.21 and row["roofline.infer.bound"] == "memory"
    assert row["threads.intra_op"] == 1 and row["threads.framework"] == "tf"
    assert row["threads.env.OMP_NUM_THREADS"] == "1"
    assert row["roofline.train"] == "0.93 of compute bound"
    assert "roofline-above-1.05" in row["flags"] and recs.loc["m1", "flags"] == ""


def test_roofline_above_limit_is_flagged_even_when_the_record_did_not() -> None:
    from reports.records import flatten

    rec = {"framework": "torch", "roofline": {"train": {"fraction": 1.3, "bound": "compute"},
                                              "infer": {"fraction": 0.5, "bound": "memory"}}}
    row = flatten(rec)
    assert row["roofline.train"].startswith("1.30 of compute bound - FLAG")
    assert row["roofline.infer"] == "0.50 of memory bound"
    assert [f["figure"] for f in row["flag_list"]] == ["roofline.train.fraction"]


def test_roofline_and_flags_render(quick_site: Path) -> None:
    html = (quick_site / "framework.html").read_text()
    assert "0.93 of compute bound" in html and "0.42 of compute bound" in html
    flagged = [r for r in html.split("<tr") if r.startswith(' class="flag"')]
    assert any("1.21 of memory bound - FLAG: above 1.05" in r for r in flagged)
    assert not any("0.42 of compute bound" in r for r in flagged)  # torch's record carries no flag
    rec = pd.read_csv(quick_site / "data" / "framework_records.csv")
    assert {"roofline.train", "roofline.infer", "train.step_ms.n", "infer.batch_ms.n", "flags"} <= set(rec.columns)
    index = (quick_site / "index.html").read_text()
    assert "roofline-above-1.05" in index and "roofline.infer.fraction" in index
    gpu = (quick_site / "gpu.html").read_text()
    assert "1.21 of memory bound" in gpu


# --- consistency ---------------------------------------------------------------------------------

def test_work_key_matches_the_suite_scenario_and_nothing_else() -> None:
    from recsys_impls.benchsupport import scenario_for
    from reports.consistency import asv_work_key, work_key

    rec = json.loads(_record_files(QUICK)["torch"].read_text())
    assert work_key(rec["scenario"]) == asv_work_key(TRAIN, {"framework": "torch", "preset": "tiny"})
    assert work_key(rec["scenario"]) != asv_work_key(TRAIN, {"framework": "tf", "preset": "tiny"})
    assert work_key(rec["scenario"]) != work_key(scenario_for("torch", "synthetic", "dlrm-ref").to_dict())
    bigger = json.loads(json.dumps(rec["scenario"]))
    bigger["train"]["batch_size"] = 512
    assert work_key(bigger) != work_key(rec["scenario"])
    other_data = json.loads(json.dumps(rec["scenario"]))
    other_data["data"]["source"] = "movielens"  # same shape and batch: the same work per step
    assert work_key(other_data) == work_key(rec["scenario"])
    assert asv_work_key(TRAIN, {"framework": "torch", "data": "synthetic"}) is None  # toy store: no preset


@pytest.mark.parametrize("factor", [2.5, 1 / 2.5])
def test_disagreement_beyond_2x_is_flagged(quick_copy: Path, factor: float) -> None:
    from reports.consistency import KIND, annotate_records

    _plant(quick_copy, "torch", factor, 1.0)
    _plant(quick_copy, "tf", 1.0, 1.0)
    commit = json.loads((quick_copy / "commits.json").read_text())["base"]
    flags = annotate_records(quick_copy / "results", quick_copy / "records", "toy-quick", commit)
    assert [(f["kind"], f["figure"].split(" ")[0]) for f in flags] == [(KIND, "train.step_ms")]
    assert "framework=torch" in flags[0]["figure"] and "single sample" in flags[0]["detail"]


def test_disagreement_within_2x_is_not_flagged(quick_copy: Path) -> None:
    from reports.consistency import annotate_records

    _plant(quick_copy, "torch", 1.5, 1 / 1.5)
    _plant(quick_copy, "tf", 1 / 1.5, 1.5)
    commit = json.loads((quick_copy / "commits.json").read_text())["base"]
    before = {fw: p.read_text() for fw, p in _record_files(quick_copy).items()}
    assert annotate_records(quick_copy / "results", quick_copy / "records", "toy-quick", commit) == []
    assert {fw: p.read_text() for fw, p in _record_files(quick_copy).items()} == before


def test_annotate_records_writes_once(quick_copy: Path) -> None:
    from reports.consistency import KIND, annotate_records

    path = _plant(quick_copy, "tf", 1.0, 3.0)
    _plant(quick_copy, "torch", 1.0, 1.0)
    commit = json.loads((quick_copy / "commits.json").read_text())["base"]
    first = annotate_records(quick_copy / "results", quick_copy / "records", "toy-quick", commit[:8])
    assert len(first) == 1 and first[0]["record"] == str(path)
    rec = json.loads(path.read_text())
    kinds = [f["kind"] for f in rec["flags"]]
    assert kinds.count(KIND) == 1 and "roofline-above-1.05" in kinds  # its own flag stays
    assert rec["flags"][-1] == {k: first[0][k] for k in ("figure", "kind", "detail")}
    second = annotate_records(quick_copy / "results", quick_copy / "records", "toy-quick", commit)
    assert second == first
    assert json.loads(path.read_text())["flags"] == rec["flags"]


def test_no_record_of_the_same_work_says_nothing(quick_copy: Path) -> None:
    from reports.consistency import annotate_records

    for path in _record_files(quick_copy).values():
        rec = json.loads(path.read_text())
        rec["scenario"]["train"]["batch_size"] = 1024
        rec["train"]["step_ms"]["median"] = 1e6
        path.write_text(json.dumps(rec))
    commit = json.loads((quick_copy / "commits.json").read_text())["base"]
    assert annotate_records(quick_copy / "results", quick_copy / "records", "toy-quick", commit) == []
    assert annotate_records(quick_copy / "results", quick_copy / "records", "toy-quick", "0" * 40) == []
    site = _build(quick_copy / "results", quick_copy / "site")
    assert "<td>asv-vs-record-disagree</td>" not in (site / "index.html").read_text()
    assert "Consistency:" not in (site / "framework.html").read_text()


def test_v1_record_is_checked_by_its_mean_step_time(quick_copy: Path) -> None:
    from reports.consistency import annotate_records

    path = _record_files(quick_copy)["torch"]
    rec = json.loads(path.read_text())
    asv = _asv_ms(quick_copy, TRAIN, "torch")
    rec.pop("schema_version")
    del rec["train"]["step_ms"], rec["infer"]
    rec["train"]["step_ms_mean"] = 4 * asv
    rec["throughput"]["infer_samples_per_s"] = 256 / (_asv_ms(quick_copy, INFER, "torch") / 1e3)
    path.write_text(json.dumps(rec))
    _plant(quick_copy, "tf", 1.0, 1.0)
    commit = json.loads((quick_copy / "commits.json").read_text())["base"]
    flags = annotate_records(quick_copy / "results", quick_copy / "records", "toy-quick", commit)
    assert len(flags) == 1 and flags[0]["figure"].startswith("train.step_ms") and "v1 record" in flags[0]["detail"]


def test_flags_shown_on_framework_page_and_index(quick_copy: Path) -> None:
    _plant(quick_copy, "torch", 2.5, 1.0)
    _plant(quick_copy, "tf", 1.0, 1.0)
    site = _build(quick_copy / "results", quick_copy / "site")
    pairs = pd.read_csv(site / "data" / "framework_consistency.csv")
    assert len(pairs) == 4 and (pairs["flag"].notna()).sum() == 1
    assert pairs["ratio_record_over_asv"].isna().all()  # asv side is a single sample: no ratio shown
    html = (site / "framework.html").read_text()
    flagged = [r for r in html.split("<tr") if r.startswith(' class="flag"')]
    assert any("DISAGREE" in r and "framework=torch" in r for r in flagged)
    index = (site / "index.html").read_text()
    assert index.count("<td>asv-vs-record-disagree</td>") == 1
    assert "TrainStep.time_train_step(framework=torch" in index


def test_unreadable_record_is_a_usage_error(quick_copy: Path) -> None:
    from reports.consistency import annotate_records

    _record_files(quick_copy)["torch"].write_text("{broken")
    commit = json.loads((quick_copy / "commits.json").read_text())["base"]
    with pytest.raises(UsageError, match="not a readable JSON record"):
        annotate_records(quick_copy / "results", quick_copy / "records", "toy-quick", commit)


def test_records_only_build_shows_roofline_flags(tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert main(["build", "--records-only", "--records", str(QUICK / "records"), "--results", str(tmp_path / "none"),
                 "--out", str(out)]) == 0
    index = (out / "index.html").read_text()
    assert "<td>roofline-above-1.05</td>" in index and "<td>asv-vs-record-disagree</td>" not in index
