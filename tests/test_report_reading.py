"""What a reader sees: human units in cells, the index's verdicts, the left-out line, one-module pages."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

import reports.pages
from reports.__main__ import main
from reports.fmt import MISSING, human, unit_of

FIXTURES = Path(__file__).parent / "fixtures" / "asv"


@pytest.mark.parametrize(("value", "unit", "text"), [
    (0.0123, "s", "12.3 ms"), (2.392e-06, "seconds", "2.39 \u00b5s"), (1.426e5, "samples/s", "143 k samples/s"),
    (4.1e6, "bytes", "4.10 MB"), (512, "bytes", "512 B"), (12.34, "J", "12.3 J"), (1.5, "x", "1.50x"),
    (3.2, "ms", "3.20 ms"), (float("nan"), "s", MISSING), (None, "", MISSING), ("nan", "", MISSING),
    (True, "", "yes"), (0.93, "frac", "0.930"),
])
def test_human_units(value: object, unit: str, text: str) -> None:
    assert human(value, unit) == text


def test_units_follow_column_names() -> None:
    assert unit_of("throughput.train_samples_per_s") == "samples/s"
    assert unit_of("size.model_bytes") == "bytes"
    assert unit_of("train.step_ms.median") == "ms"
    assert unit_of("energy.joules_per_1k_samples") == "J"
    assert unit_of("train.step_ms.n") == "int"
    assert unit_of("ratio_tf_over_torch") == "x"
    assert unit_of("peak_rss_bytes_max_over_mean") == "x"


@pytest.fixture(scope="module")
def store_site(store_report: Path) -> Path:
    return store_report


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_index_leads_with_the_newest_runs_verdicts(store_site: Path) -> None:
    html = (store_site / "index.html").read_text()
    verdicts = html[:html.index("<h2>Pages</h2>")]
    text = _text(verdicts)
    # The fixture's newest commit on toy-2threads plants a 3 ms sleep in the train step.
    assert re.search(r"Changes on toy-2threads: f58ae845 vs d26f8d4c \d+ regression\(s\)", text), text
    assert "time_train_step" in text
    assert "TensorFlow / PyTorch time" in text and "core " in text
    assert "Best compression within the 99% AUC gate" in text and "Best compression within the 99.9% AUC gate" in text
    assert "Energy per 1k samples" in text
    for href in re.findall(r'href="([^"]+)"', verdicts[verdicts.index('<ul class="verdicts">'):]):
        assert (store_site / href).is_file(), href


def test_cells_have_units_and_no_nan(store_site: Path) -> None:
    for page in store_site.glob("*.html"):
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", page.read_text())
        assert not [c for c in cells if c.strip() in ("nan", "None", "NaN")], page.name
        assert not [c for c in cells if re.fullmatch(r"-?\d\.\d+e[-+]\d+", c.strip())], page.name
    fw = (store_site / "framework.html").read_text()
    assert re.search(r'<td class="num" data-v="[^"]+">[\d.]+ (?:\u00b5s|ms)</td>', fw)
    assert "samples/s</td>" in fw


def test_skipped_combinations_are_one_line_not_rows(store_site: Path) -> None:
    text = _text((store_site / "framework.html").read_text())
    m = re.search(r"(\d+) scenario\(s\) not shown: (\d+) torch skipped, tf skipped", text)
    assert m and m.group(1) == m.group(2), text
    shown = (store_site / "framework.html").read_text().split('<table', 3)[2]
    assert "skipped" not in shown.split("</table>")[0]
    # ...and the full table, skipped rows included, is still downloadable.
    assert (store_site / "data" / "framework_ratios_all.csv").read_text().count("skipped") >= int(m.group(1))


def test_a_page_is_one_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "pkg"
    extra.mkdir()
    (extra / "zz_extra_page.py").write_text(
        "from reports.page import Page, Section, Table, Verdict\n"
        "import pandas as pd\n"
        "ORDER = 95\n"
        "def build(ctx):\n"
        "    page = Page('extra', 'Extra page', 'added as one module')\n"
        "    t = Table('extra', pd.DataFrame({'step_ms': [1.5, float('nan')]}))\n"
        "    page.sections.append(Section('s', tables=[t]))\n"
        "    page.verdicts.append(Verdict('Extra verdict', '42', href='extra.html', rank=99))\n"
        "    return page\n")
    monkeypatch.setattr(reports.pages, "__path__", [*reports.pages.__path__, str(extra)])
    out = tmp_path / "site"
    assert main(["build", "--results", str(FIXTURES / "quick" / "results"), "--out", str(out),
                 "--base-url", "https://bench.example.org/recsys"]) == 0
    assert [m.ORDER for m in reports.pages.discover()] == sorted(m.ORDER for m in reports.pages.discover())
    page = (out / "extra.html").read_text()
    assert "1.50 ms" in page and MISSING in page
    index = (out / "index.html").read_text()
    assert "Extra verdict" in index
    assert 'href="https://bench.example.org/recsys/extra.html"' in index
    assert 'href="https://bench.example.org/recsys/static/style.css"' in page


def test_asv_site_is_copied_and_linked(tmp_path: Path) -> None:
    asv_html = tmp_path / "asvhtml"
    asv_html.mkdir()
    (asv_html / "index.html").write_text("<p>asv</p>")
    out = tmp_path / "site"
    assert main(["build", "--results", str(FIXTURES / "quick" / "results"), "--out", str(out),
                 "--asv-html", str(asv_html)]) == 0
    assert (out / "asv" / "index.html").read_text() == "<p>asv</p>"
    assert 'href="asv/index.html"' in (out / "index.html").read_text()


@pytest.mark.parametrize("args", [["--base-url", "bench.example.org"], ["--asv-html", "/nonexistent/asv"]])
def test_bad_publishing_input_exits_2(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "--results", str(FIXTURES / "quick" / "results"), "--out", str(tmp_path / "s"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and args[0] in err


def test_one_world_size_is_drawn_as_bars() -> None:
    import pandas as pd

    from reports.pages.parallel import _scaling_plot

    df = pd.DataFrame({"machine": ["m", "m"], "framework": ["torch", "tf"], "sharding": ["table-wise"] * 2,
                       "world_size": [2, 2], "train_samples_per_s": [1e5, 2e5], "scaling_efficiency": [0.9, 0.8]})
    ax1, ax2 = _scaling_plot(df).figure.axes
    assert len(ax1.patches) == 2 and not ax1.lines
    assert not math.isclose(*ax1.get_xlim())


def test_failed_runs_are_counted_with_their_reason() -> None:
    import pandas as pd

    from reports.asv_results import COLUMNS, ResultStore
    from reports.context import Context, not_ok_reasons
    from reports.page import left_out_line

    recs = pd.DataFrame([
        {"machine": "m", "commit": "c1", "suite": "compression", "status": "ok", "record": {}},
        {"machine": "m", "commit": "c1", "suite": "compression", "status": "failed",
         "record": {"error": "int2 codec raised\ntraceback..."}},
        {"machine": "m", "commit": "c1", "suite": "compression", "status": "failed",
         "record": {"error": "int2 codec raised"}},
        {"machine": "m", "commit": "c1", "suite": "parallel", "status": "skipped", "record": {"error": "no GPU"}},
    ])
    ctx = Context(store=ResultStore(path=Path("."), rows=pd.DataFrame(columns=COLUMNS)), records=recs)
    assert left_out_line(not_ok_reasons(ctx, "compression"), "run") == \
        "2 run(s) not shown: 2 failed (int2 codec raised)."
    assert not_ok_reasons(ctx, "parallel") == ["skipped (no GPU)"]
