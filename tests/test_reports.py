"""The static report: built from a real (small) asv results store, every page, table and image."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports.__main__ import main

STORE = Path(__file__).parent / "fixtures" / "asv" / "store"
PAGES = ("framework", "compression", "parallel", "gpu", "hardware", "history")


@pytest.fixture(scope="module")
def site(store_report: Path) -> Path:
    return store_report


def test_every_page_written_and_linked_from_index(site: Path) -> None:
    index = (site / "index.html").read_text()
    for page in PAGES:
        assert (site / f"{page}.html").is_file()
        assert f'href="{page}.html"' in index


def test_no_external_urls_anywhere(site: Path) -> None:
    for path in [*site.glob("*.html"), *site.glob("static/*")]:
        text = path.read_text()
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text), path
        assert "http://" not in text and "https://" not in text, path


def test_every_linked_file_exists_and_images_are_png(site: Path) -> None:
    for page in site.glob("*.html"):
        for ref in re.findall(r'(?:src|href)="([^"#]+)"', page.read_text()):
            if ref.startswith("data:"):  # inline favicon: keeps the browser from requesting one
                continue
            assert (site / ref).is_file(), f"{page.name} links to missing {ref}"
            if ref.endswith(".png"):
                assert (site / ref).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_table_has_csv_and_json_twins(site: Path) -> None:
    csvs = sorted((site / "data").glob("*.csv"))
    assert csvs
    for csv in csvs:
        frame = pd.read_csv(csv)
        rows = json.loads(csv.with_suffix(".json").read_text())
        assert len(rows) == len(frame)


def test_populated_pages_from_fixture(site: Path) -> None:
    for page in ("framework", "compression", "parallel", "hardware", "history"):
        html = (site / f"{page}.html").read_text()
        assert "No data:" not in html, page
        assert "<img" in html, page
    gpu = (site / "gpu.html").read_text()
    # The fixture's GPU benchmarks are skipped (no GPU): the page must say so, not show zeros.
    assert "skipped" in gpu


def test_framework_ratio_matches_asv_values(site: Path) -> None:
    from reports.asv_results import latest_per_machine, load_store

    rows = latest_per_machine(load_store(STORE / "results").rows)
    t = pd.read_csv(site / "data" / "framework_ratios.csv")
    r = t[(t["benchmark"] == "bench_core.TrainStep.time_train_step") & (t["scenario"] == "data=synthetic")
          & (t["machine"] == "toy-1thread")].iloc[0]
    sel = rows[(rows["benchmark"] == "bench_core.TrainStep.time_train_step") & (rows["machine"] == "toy-1thread")
               & (rows["param_key"].str.endswith("data=synthetic"))]
    torch = sel[sel["params"].map(lambda p: p["framework"] == "torch")].iloc[0]
    tf = sel[sel["params"].map(lambda p: p["framework"] == "tf")].iloc[0]
    assert r["ratio_tf_over_torch"] == pytest.approx(tf["value"] / torch["value"])
    assert r["ci99_low"] == pytest.approx(tf["ci_lo"] / torch["ci_hi"])
    assert r["ci99_low"] <= r["ratio_tf_over_torch"] <= r["ci99_high"]


def test_hardware_geomean_is_geometric_mean_of_time_ratios(site: Path) -> None:
    norm = pd.read_csv(site / "data" / "hardware_normalised.csv")
    summary = pd.read_csv(site / "data" / "hardware_geomean.csv").set_index("machine")
    baseline = summary.index[0]
    other = summary.index[1]
    times = norm[norm["benchmark"].str.contains(r"\.time_")][other].dropna()
    expect = math.exp(sum(math.log(v) for v in times) / len(times))
    col = f"geomean ratio vs {baseline}: time_* benchmarks"
    assert summary.loc[other, col] == pytest.approx(expect)
    assert summary.loc[baseline, col] == pytest.approx(1.0)


def test_compression_gates_recomputed_from_auc(site: Path) -> None:
    g = pd.read_csv(site / "data" / "compression_gates.csv")
    for _, r in g.iterrows():
        base = g[(g["machine"] == r["machine"]) & (g["framework"] == r["framework"]) & (g["method"] == "none")]
        rel = r["auc"] / base["auc"].iloc[0]
        assert bool(r["gate_99"]) == (rel >= 0.99)
        assert bool(r["gate_99_9"]) == (rel >= 0.999)


def test_history_lists_the_planted_slowdown(site: Path) -> None:
    commits = json.loads((STORE / "commits.json").read_text())
    reg = pd.read_csv(site / "data" / "history_regressions_toy_2threads.csv")
    slow = reg[(reg["head"] == commits["slow"][:8]) & reg["benchmark"].str.endswith("time_train_step")]
    assert len(slow) == 4  # both frameworks x both datasets


def test_baseline_machine_choice(tmp_path: Path) -> None:
    out = tmp_path / "s"
    assert main(["build", "--results", str(STORE / "results"), "--out", str(out),
                 "--baseline-machine", "toy-2threads"]) == 0
    summary = pd.read_csv(out / "data" / "hardware_geomean.csv").set_index("machine")
    assert summary.loc["toy-2threads"].iloc[0] == pytest.approx(1.0)


def test_pages_without_records_say_so(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(STORE / "results", results)
    for f in results.rglob("*.json"):  # keep only bench_core so other pages have nothing
        if f.name not in ("machine.json",):
            d = json.loads(f.read_text())
            if "results" in d:
                d["results"] = {k: v for k, v in d["results"].items() if k.startswith("bench_core.")}
                f.write_text(json.dumps(d))
    out = tmp_path / "site"
    assert main(["build", "--results", str(results), "--out", str(out)]) == 0
    for page in ("compression", "parallel", "gpu"):
        assert "No data:" in (out / f"{page}.html").read_text(), page


def test_profiles_are_copied_and_linked(tmp_path: Path) -> None:
    prof = tmp_path / "profiles"
    prof.mkdir()
    (prof / "train_torch.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    out = tmp_path / "site"
    assert main(["build", "--results", str(STORE / "results"), "--out", str(out), "--profiles", str(prof)]) == 0
    assert 'href="profiles/train_torch.svg"' in (out / "index.html").read_text()
    assert (out / "profiles" / "train_torch.svg").is_file()


@pytest.mark.parametrize("case", ["missing", "corrupt", "baseline", "empty"])
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    args = ["build", "--results", str(results), "--out", str(tmp_path / "o")]
    if case == "missing":
        pass
    elif case == "empty":
        results.mkdir()
    else:
        shutil.copytree(STORE / "results", results)
        if case == "corrupt":
            victim = next((results / "toy-1thread").glob("*-*.json"))
            victim.write_text("{not json")
        else:
            args += ["--baseline-machine", "nope"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert {"missing": "no such directory", "corrupt": "unreadable", "baseline": "available: toy-1thread",
            "empty": "no asv results"}[case] in err


def test_hardware_table_has_one_row_per_benchmark_scenario(site: Path) -> None:
    from reports.asv_results import latest_per_machine, load_store

    rows = latest_per_machine(load_store(STORE / "results").rows)
    expected = rows[rows["status"] == "ok"][["benchmark", "param_key"]].drop_duplicates()
    norm = pd.read_csv(site / "data" / "hardware_normalised.csv")
    assert len(norm) == len(expected)
