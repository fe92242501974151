"""The ablations chapter's figures and live explorer (:mod:`miho.viz.ablation_figures`): the static
figures of a hand-made results file (values, units, reference lines), and the chapter's own widget
cells (tagged ``widget-setup`` and ``widget``) run and driven like a user: changing a control
re-runs GeO and the readout moves the way the study says it should."""

import json
from pathlib import Path

import jupytext
import numpy as np
import pytest

from miho import studies
from miho.experiments import K_RPL_SWEEP
from miho.hand import FINGERS
from miho.viz import ablation_figures as af

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "ablations.md"
METRICS = ("HE", "OE", "PD", "SIV", "DD")


def _results(field: str, offset: float = 0.0) -> dict:
    """A results file of two samples with every run of :data:`miho.studies.RUNS`: each run's
    metrics distinct and easy to average (run k: metric m is [k + m + offset, k + m + offset + 2])."""
    per = {}
    rows = ["ground truth", "start", "flat hand", "twisted thumb", *studies.RUNS]
    for k, row in enumerate(rows):
        per[row] = {m: [k + i + offset, k + i + offset + 2.0] for i, m in enumerate(METRICS)}
        if row.startswith("flat"):
            per[row].update({"L_anat": [0.1 * k, 0.3 * k], "worst violation": [k, 3.0 * k]})
            per[row].update({f"{f} twist": [float(j), float(j + k)] for j, f in enumerate(FINGERS)})
        if row.startswith("twisted"):
            per[row]["thumb twist"] = [60.0 - k, 62.0 - k]
    per["twisted thumb"]["truth thumb twist"] = [-1.0, 1.0]
    settings = dict(field=field, start="honet", split="test-seen", samples=[0, 9], chunk=2, iterations=10,
                    resolution=16, runs=list(studies.RUNS), twist=30.0)  # fmt: skip
    provenance = dict(command=f"miho bench ablation --field {field}", commit="abc1234", machine="x86_64, 2 threads",
                      device="cpu", started="2026-01-01 00:00:00 UTC", honet={"sha256": "a" * 64},
                      picr={"sha256": "b" * 64}, picr_threshold=0.6 if field == "predicted" else None)  # fmt: skip
    seconds = {r: 0.04 * (k + 1) for k, r in enumerate(studies.RUNS)}
    return dict(settings=settings, provenance=provenance, chunks_done=1, per_sample=per, seconds=seconds,
                single_ms={"CPF (full)": 5.0})  # fmt: skip


@pytest.fixture(scope="module")
def results():
    return {"PiCR's field": _results("predicted"), "true field": _results("truth", offset=100.0)}


def _mean(values) -> float:
    return float(np.mean(values))


def test_settings_figures_show_the_files_means_with_units(results):
    fig = af.contact_figure(results)
    titles = [a.title.text for a in fig.select_yaxes()]
    assert titles == ["HE (mm)", "PD (mm)", "SIV (cm^3)", "DD (mm)", "time (ms / iteration / sample)"]
    bars = [t for t in fig.data if t.name == "PiCR's field"]
    assert len(bars) == 5 and list(bars[0].x) == ["CPF", "vanilla contact", "ObMan contact"]
    per = results["PiCR's field"]["per_sample"]
    assert list(bars[0].y) == [_mean(per[r]["HE"]) for r in ("CPF (full)", "vanilla contact", "ObMan contact")]
    assert list(bars[2].y) == [_mean(per[r]["SIV"]) for r in ("CPF (full)", "vanilla contact", "ObMan contact")]
    # time: seconds * 1e3 / (iterations * samples)
    assert bars[4].y[0] == pytest.approx(results["PiCR's field"]["seconds"]["CPF (full)"] * 1e3 / (10 * 2))
    truth_bars = [t for t in fig.data if t.name == "true field"]
    assert truth_bars[0].y[0] == _mean(results["true field"]["per_sample"]["CPF (full)"]["HE"])
    # the start (dashed) and the truth (dotted) of each file, on each metric panel: 2 files x 2 rows x 4 panels
    shapes = fig.layout.shapes
    assert len(shapes) == 16
    dashed = sorted(s.y0 for s in shapes if s.line.dash == "dash" and s.yref == "y")
    assert dashed == [_mean(per["start"]["HE"]), _mean(results["true field"]["per_sample"]["start"]["HE"])]
    # one file alone: its field's label, its reference lines only
    fig = af.repulsion_figure(results["PiCR's field"])
    assert {t.name for t in fig.data} == {"PiCR's field"} and list(fig.data[0].x) == ["with E_rpl", "without E_rpl"]
    assert fig.data[0].y[1] == _mean(per["CPF without E_rpl"]["HE"]) and len(fig.layout.shapes) == 8
    fig = af.pose_space_figure(results)
    assert list(fig.data[0].x) == ["full pose", "PCA pose"] and fig.data[0].y[1] == _mean(per["PCA pose"]["HE"])


def test_k_rpl_figure_is_log_scaled_with_the_default_run(results):
    fig = af.k_rpl_figure(results, metrics=("PD", "SIV"))
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.title.text == "k_rpl"
    assert [a.title.text for a in fig.select_yaxes()] == ["PD (mm)", "SIV (cm^3)"]
    line = fig.data[0]
    per = results["PiCR's field"]["per_sample"]
    assert list(line.x) == list(K_RPL_SWEEP)
    names = [f"k_rpl = {k:.1e}" if k != 1e-3 else "CPF (full)" for k in K_RPL_SWEEP]
    assert list(line.y) == [_mean(per[n]["PD"]) for n in names]


def test_abnormality_and_twist_figures(results):
    fig = af.abnormality_figure(results)
    titles = [a.title.text for a in fig.select_yaxes()]
    assert titles == ["finger twist (deg)", "L_anat (rad)", "worst violation (deg)"] * 2
    per = results["PiCR's field"]["per_sample"]
    without = next(t for t in fig.data if t.name == "without L_anat" and t.xaxis == "x")
    assert list(without.x) == list(FINGERS)
    assert list(without.y) == [_mean(per["flat, without L_anat"][f"{f} twist"]) for f in FINGERS]
    anat = next(t for t in fig.data if t.name == "L_anat" and t.xaxis == "x2")
    assert list(anat.y) == [_mean(per[r]["L_anat"]) for r in ("flat hand", "flat, with L_anat", "flat, without L_anat")]
    fig = af.twist_figure(results)
    assert [a.title.text for a in fig.select_yaxes()] == ["thumb twist (deg)", "HE (mm)", "PD (mm)"]
    twist = fig.data[0]
    assert list(twist.x) == ["ground truth", "twisted start", "with L_anat", "without L_anat"]
    assert list(twist.y) == [0.0, *(_mean(per[r]["thumb twist"]) for r in
                                    ("twisted thumb", "twisted, with L_anat", "twisted, without L_anat"))]  # fmt: skip


def test_tables_and_provenance(results, tmp_path):
    paths = []
    for name, r in (("p", results["PiCR's field"]), ("t", results["true field"])):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(r))
    loaded = af.load_results(*paths)
    assert list(loaded) == ["PiCR's field", "true field"]
    text = af.provenance_markdown(loaded)
    assert "`miho bench ablation --field predicted`" in text and "| PiCR threshold t_vc | 0.6 | - |" in text
    assert "aaaaaaaaaaaa" in text and "| samples | 2 | 2 |" in text
    tables = af.study_tables(loaded, "table5")
    assert tables.tables["PiCR's field"] == studies.study_tables(results["PiCR's field"])["table5"]
    md, page = tables._repr_markdown_(), tables._repr_html_()
    assert md.startswith("**PiCR's field** (2 test-seen samples, 10 iterations)") and "**true field**" in md
    assert page.count("<table>") == 2 and "<th>SIV (cm^3)</th>" in page and "display: flex" in page
    with pytest.raises(ValueError, match="table9"):
        af.study_tables(loaded, "table9")


def _chapter_cells(tag: str) -> list[str]:
    nb = jupytext.read(CHAPTER)
    return [c.source for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]


@pytest.fixture(scope="module")
def explorer():
    """The chapter's explorer, made by its own ``widget-setup`` and ``widget`` cells."""
    pytest.importorskip("ipywidgets")
    setup, widget = _chapter_cells("widget-setup"), _chapter_cells("widget")
    assert setup and widget, "the chapter has no cells tagged widget-setup / widget"
    namespace: dict = {}
    for source in (*setup, *widget):
        exec(compile(source, str(CHAPTER), "exec"), namespace)
    return namespace["explorer"]


def test_chapter_explorer_reruns_geo_when_a_control_changes(explorer):
    import ipywidgets as W

    assert isinstance(explorer.widget, W.VBox)
    assert set(explorer.controls) == {"sample", "start", "contact", "k_rpl", "anat", "pose"}
    assert [v for _, v in explorer.controls["k_rpl"].options] == list(K_RPL_SWEEP)
    # the chapter builds it idle (no GeO, nothing drawn while the book executes); the button runs it
    assert explorer.runs == 0 and explorer.figure is None and "Run GeO" in explorer.readout.value
    explorer.button.click()
    assert explorer.runs == 1 and explorer.controls["k_rpl"].value == 1e-3
    assert "HE (mm)" in explorer.readout.value and "SIV (cm^3)" in explorer.readout.value
    assert len(explorer.figure.data) == 4  # start ghost, refined hand, object, true hand

    # a softer and a stiffer repulsion (Table 5): less intersection, fingertips farther away
    explorer.controls["k_rpl"].value = 2e-4
    soft = dict(explorer.metrics)
    explorer.controls["k_rpl"].value = 8e-3
    stiff = dict(explorer.metrics)
    assert explorer.runs == 3
    assert stiff["SIV"] < soft["SIV"] and stiff["DD"] > soft["DD"]
    assert f"{stiff['SIV']:.2f}" in explorer.readout.value and "k_rpl 8.0e-03" in explorer.readout.value

    # vanilla contact has no repulsive springs: the slider is off
    explorer.controls["contact"].value = "vanilla"
    assert explorer.controls["k_rpl"].disabled and explorer.runs == 4
    explorer.controls["contact"].value = "CPF"
    assert not explorer.controls["k_rpl"].disabled

    # a flat start with and without L_anat (Fig. 7): without it the pose leaves the limits
    explorer.controls["k_rpl"].value = 1e-3
    explorer.controls["start"].value = "flat hand"
    assert explorer.start_metrics["L_anat"] == 0.0  # a flat hand is anatomical
    with_anat = dict(explorer.metrics)
    explorer.controls["anat"].value = False
    without = dict(explorer.metrics)
    assert without["L_anat"] > with_anat["L_anat"] and without["worst violation"] > with_anat["worst violation"]
    assert "without L_anat" in explorer.readout.value
    runs = explorer.runs
    explorer.controls["anat"].value = True  # a setting seen before: from the cache
    assert explorer.runs == runs and explorer.metrics == with_anat
