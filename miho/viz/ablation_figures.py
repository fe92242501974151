"""Figures, tables and a live explorer of the ablations chapter (the paper's §6.4 and Supp D.2).

Static plotly figures of the results files that :func:`miho.studies.run_ablations` writes (one per
field: PiCR's prediction and the ground truth, from the same starts), drawn from the per-sample
values the file keeps (means over its samples): the contact terms and the repulsive springs
(:func:`settings_figure`, :func:`contact_figure`, :func:`repulsion_figure`, Tables 2 and 3), k_rpl
(:func:`k_rpl_figure`, Table 5), the pose space (:func:`pose_space_figure`, Table 6), the flat
start with and without L_anat (:func:`abnormality_figure`, Fig. 7) and the twisted thumb
(:func:`twist_figure`, Fig. 15). :func:`study_tables` puts a study's Markdown table of each field
side by side, :func:`provenance_markdown` says where the files come from.

For small live runs (a :class:`miho.experiments.Ablation` made with ``keep_results=True``):
:func:`live_table` (some of its settings as a table), :func:`pose_table` (the pose measures of
Figs. 7 and 15), :func:`refined_hands_figure` (the start and each setting's refined grasp in 3D),
and :func:`ablation_explorer`, an ipywidgets panel that re-runs GeO on one sample whenever a
control changes (it needs a running kernel).

Every "results" argument is a results dict (what :func:`miho.studies.run_ablations` returns) or a
mapping of labels to several (:func:`load_results`). Inputs in metres; figures and tables in mm,
cm^3 (SIV), degrees and radians (L_anat), as their axis titles and headers say.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from miho import experiments as ex
from miho import geo
from miho import studies as st
from miho.hand.model import FINGERS, HandModel
from miho.tables import markdown_table
from miho.viz import plot

__all__ = ["CONTACTS", "FIELD_LABELS", "NAMES", "UNITS", "AblationExplorer", "StudyTables", "abnormality_figure",
           "ablation_explorer", "contact_figure", "k_rpl_figure", "live_table", "load_results", "mean",
           "pose_measures", "pose_space_figure", "pose_table", "provenance_markdown", "refined_hands_figure",
           "repulsion_figure", "settings_figure", "study_tables", "twist_figure"]  # fmt: skip

#: the unit of each quantity the figures and tables show
UNITS = {"HE": "mm", "OE": "mm", "PD": "mm", "SIV": "cm^3", "DD": "mm", "L_anat": "rad", "worst violation": "deg",
         "thumb twist": "deg", "finger twist": "deg", "time": "ms / iteration / sample"}  # fmt: skip
#: what each metric measures (panel titles)
NAMES = {"HE": "hand error", "OE": "object error", "PD": "penetration depth", "SIV": "intersection volume",
         "DD": "disjointedness", "time": "GeO's time"}  # fmt: skip
#: the label of a results file by its field (``settings["field"]``)
FIELD_LABELS = {"predicted": "PiCR's field", "truth": "true field"}
_FIELD_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2")
#: the contact terms of the explorer: label -> :data:`miho.geo.BASELINES` key
CONTACTS = {"CPF": "cpf", "CPF without E_rpl": "cpf without E_rpl", "vanilla": "vanilla", "ObMan": "obman"}
#: the start rows of a results file by the kind of start (:data:`miho.studies.START_OF_RUN`)
_START_ROW = {"estimate": "start", "flat": "flat hand", "twisted": "twisted thumb"}
_GREY = "#888888"
_REF = "means over the samples; dashed: the start, dotted: the ground truth"


# --------------------------------------------------------------------------------------------
# results files


def load_results(*paths: str | Path) -> dict[str, dict]:
    """Results files of :func:`miho.studies.run_ablations` (JSON), by label: the field's
    (:data:`FIELD_LABELS`), with the start kind added when two files would share one."""
    out: dict[str, dict] = {}
    for p in paths:
        r = json.loads(Path(p).read_text())
        if "per_sample" not in r or "settings" not in r:
            raise ValueError(f"{p} is not a results file of miho.studies.run_ablations")
        s = r["settings"]
        label = FIELD_LABELS.get(s["field"], s["field"])
        if label in out:
            label = f"{label} ({s['start']} start)"
        out[label] = r
    return out


def _as_results(results: Mapping) -> dict[str, dict]:
    """A mapping label -> results dict (a lone results dict gets its field's label)."""
    if "per_sample" in results:
        return {FIELD_LABELS.get(results["settings"]["field"], results["settings"]["field"]): results}
    return dict(results)


def mean(result: dict, row: str, metric: str) -> float:
    """The mean over the samples of ``metric`` in ``row`` of a results dict (its unit: :data:`UNITS`)."""
    values = result["per_sample"][row][metric]
    return sum(values) / len(values)


def _samples(result: dict) -> int:
    return len(next(iter(result["per_sample"].values()))["HE"])


def _ms(result: dict, run: str) -> float | None:
    """GeO's time on ``run``, ms per iteration per sample, its samples refined a chunk at a time."""
    s = result.get("seconds", {}).get(run)
    return None if s is None else s * 1e3 / (result["settings"]["iterations"] * _samples(result))


def _with_rows(results: dict[str, dict], rows) -> dict[str, dict]:
    """The results holding every one of ``rows``; a ValueError when none does."""
    have = {lab: r for lab, r in results.items() if all(x in r["per_sample"] for x in rows)}
    if not have:
        raise ValueError(f"no results file holds the rows {list(rows)}")
    return have


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def provenance_markdown(results: Mapping) -> str:
    """A Markdown table of where each results file comes from: its command, commit, machine,
    start time, settings and the SHA-256 (first 12 digits) of the networks' weights."""
    results = _as_results(results)

    def sha(d) -> str:
        return d.get("sha256", "?")[:12] if isinstance(d, dict) else "-"

    keys = ("command", "commit", "machine, device", "started", "start, split", "samples", "iterations",
            "SIV grid (voxels per axis)", "HoNet weights (sha256)", "PiCR weights (sha256)",
            "PiCR threshold t_vc")  # fmt: skip
    cols = []
    for r in results.values():
        p, s = r["provenance"], r["settings"]
        t = p.get("picr_threshold")
        cols.append([f"`{p.get('command') or '-'}`", p.get("commit", "?"),
                     f"{p.get('machine', '?')}, {p.get('device', '?')}", p.get("started", "?"),
                     f"{s['start']}, {s['split']}", str(_samples(r)), str(s["iterations"]), str(s["resolution"]),
                     sha(p.get("honet")), sha(p.get("picr")), "-" if t is None else f"{t:g}"])  # fmt: skip
    rows = [[k, *(_cell(c[i]) for c in cols)] for i, k in enumerate(keys)]
    return markdown_table(["", *results], rows)


def _md_table_html(md: str) -> str:
    """A Markdown table of :func:`miho.tables.markdown_table` as an HTML table."""
    lines = [ln.strip() for ln in md.strip().splitlines() if ln.strip()]

    def cells(line: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        return [html.escape(c.strip().replace("\\|", "|")) for c in parts]

    head = "".join(f"<th>{c}</th>" for c in cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(ln)) + "</tr>" for ln in lines[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class StudyTables:
    """One study's Markdown table for each results file (label -> table), shown side by side in
    HTML (a narrow page stacks them) and one under the other in Markdown."""

    def __init__(self, tables: dict[str, str], captions: dict[str, str]):
        self.tables, self.captions = tables, captions

    def _repr_markdown_(self) -> str:
        return "\n\n".join(f"**{lab}** ({self.captions[lab]})\n\n{t}" for lab, t in self.tables.items())

    def _repr_html_(self) -> str:
        boxes = "".join(
            f'<div style="flex: 1 1 22em; min-width: 0; overflow-x: auto"><p><b>{html.escape(lab)}</b> '
            f"({html.escape(self.captions[lab])})</p>{_md_table_html(t)}</div>"
            for lab, t in self.tables.items()
        )
        return f'<div style="display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start">{boxes}</div>'


def study_tables(results: Mapping, key: str) -> StudyTables:
    """The table ``key`` of :func:`miho.studies.study_tables` (``"table2"``, ``"table3"``,
    ``"table5"``, ``"table6"``, ``"fig7"``, ``"fig15"``; means over the samples, mm, cm^3,
    degrees) of each results file that holds the study's runs; a ValueError when none does."""
    if key not in st.TITLES:
        raise ValueError(f"key must be one of {tuple(st.TITLES)}, got {key!r}")
    tables, captions = {}, {}
    for lab, r in _as_results(results).items():
        t = st.study_tables(r).get(key)
        if t is not None:
            s = r["settings"]
            tables[lab] = t
            captions[lab] = f"{_samples(r)} {s['split']} samples, {s['iterations']} iterations"
    if not tables:
        raise ValueError(f"no results file holds the runs of {key}")
    return StudyTables(tables, captions)


# --------------------------------------------------------------------------------------------
# static figures of the results files


def _color(k: int) -> str:
    return _FIELD_COLORS[k % len(_FIELD_COLORS)]


def _reference_lines(fig: go.Figure, results: dict[str, dict], metric: str, col: int, start_row: str = "start",
                     row: int = 1) -> None:  # fmt: skip
    """The start's mean (dashed) and the ground truth's (dotted) of each results file as
    horizontal lines in panel (row, col); a value already drawn is not drawn again."""
    drawn: list[float] = []
    for r in results.values():
        for name, dash in ((start_row, "dash"), ("ground truth", "dot")):
            if name in r["per_sample"] and metric in r["per_sample"][name]:
                y = mean(r, name, metric)
                if not any(math.isclose(y, d, rel_tol=1e-9, abs_tol=1e-12) for d in drawn):
                    fig.add_hline(y=y, line_dash=dash, line_color=_GREY, row=row, col=col)
                    drawn.append(y)


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=70, b=10), barmode="group",
                      legend=dict(orientation="h", y=-0.25))  # fmt: skip
    return fig


def settings_figure(results: Mapping, runs: Mapping[str, str], metrics: Sequence[str] = ("HE", "PD", "SIV", "DD"),
                    timing: bool = False, title: str = "") -> go.Figure:  # fmt: skip
    """One panel per metric, a group of bars per setting, a bar per results file (its field):
    the means over the samples; the start's mean dashed and the ground truth's dotted.

    Args:
        results: a results dict or label -> results dict; files lacking a run are left out.
        runs: setting label (the x axis) -> run name in the file (:data:`miho.studies.RUNS`).
        metrics: among HE, OE, PD, DD (mm) and SIV (cm^3); each panel's y axis says its unit.
        timing: add a panel of GeO's time, ms per iteration per sample (each file's samples
            refined a chunk at a time, on the file's machine).
    """
    results = _with_rows(_as_results(results), runs.values())
    panels = [*metrics, *(("time",) if timing else ())]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[NAMES.get(m, m) for m in panels])
    labels = list(runs)
    for k, (lab, r) in enumerate(results.items()):
        for c, m in enumerate(panels, start=1):
            y = [_ms(r, runs[x]) if m == "time" else mean(r, runs[x], m) for x in labels]
            fig.add_trace(go.Bar(x=labels, y=y, name=lab, legendgroup=lab, showlegend=c == 1,
                                 marker_color=_color(k)), row=1, col=c)  # fmt: skip
    for c, m in enumerate(panels, start=1):
        fig.update_yaxes(title_text=f"{m} ({UNITS[m]})", row=1, col=c)
        if m != "time":
            _reference_lines(fig, results, m, c)
    fig.update_xaxes(tickangle=30)
    return _layout(fig, title or f"means over the samples ({_REF})", 420)


def contact_figure(results: Mapping, metrics: Sequence[str] = ("HE", "PD", "SIV", "DD")) -> go.Figure:
    """Table 2: CPF, vanilla contact and ObMan contact (:func:`settings_figure`, with GeO's time)."""
    runs = {"CPF": "CPF (full)", "vanilla contact": "vanilla contact", "ObMan contact": "ObMan contact"}
    return settings_figure(results, runs, metrics, timing=True, title=f"Table 2: contact terms ({_REF})")


def repulsion_figure(results: Mapping, metrics: Sequence[str] = ("HE", "PD", "SIV", "DD")) -> go.Figure:
    """Table 3: CPF with and without the repulsive springs E_rpl (:func:`settings_figure`)."""
    runs = {"with E_rpl": "CPF (full)", "without E_rpl": "CPF without E_rpl"}
    return settings_figure(results, runs, metrics, title=f"Table 3: repulsive springs ({_REF})")


def pose_space_figure(results: Mapping, metrics: Sequence[str] = ("HE", "PD", "SIV", "DD")) -> go.Figure:
    """Table 6: GeO on the full pose (15 rotations, L_anat) and on 15 PCA coefficients."""
    runs = {"full pose": "CPF (full)", "PCA pose": "PCA pose"}
    return settings_figure(results, runs, metrics, title=f"Table 6: pose space ({_REF})")


def _k_rpl_runs(result: dict) -> dict[float, str]:
    """k_rpl -> run name of the values of :data:`miho.experiments.K_RPL_SWEEP` the file holds
    (the default, 1e-3, is "CPF (full)")."""
    out = {}
    for k in ex.K_RPL_SWEEP:
        name = "CPF (full)" if math.isclose(k, geo.GeOConfig.k_rpl) else f"k_rpl = {k:.1e}"
        if name in result["per_sample"]:
            out[k] = name
    return out


def k_rpl_figure(results: Mapping, metrics: Sequence[str] = ("HE", "PD", "SIV", "DD")) -> go.Figure:
    """Table 5 as curves: each metric's mean against k_rpl (log axis, no unit: the energy's
    scale), one line per results file; the start's mean dashed, the ground truth's dotted."""
    results = {lab: r for lab, r in _as_results(results).items() if len(_k_rpl_runs(r)) >= 2}
    if not results:
        raise ValueError("no results file holds two k_rpl runs")
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[NAMES.get(m, m) for m in metrics])
    for k, (lab, r) in enumerate(results.items()):
        runs = _k_rpl_runs(r)
        for c, m in enumerate(metrics, start=1):
            fig.add_trace(go.Scatter(x=list(runs), y=[mean(r, n, m) for n in runs.values()], mode="lines+markers",
                                     name=lab, legendgroup=lab, showlegend=c == 1, line=dict(color=_color(k))),
                          row=1, col=c)  # fmt: skip
    for c, m in enumerate(metrics, start=1):
        fig.update_xaxes(type="log", title_text="k_rpl", row=1, col=c)
        fig.update_yaxes(title_text=f"{m} ({UNITS[m]})", row=1, col=c)
        _reference_lines(fig, results, m, c)
    title = f"Table 5: the elasticity k_rpl of the repulsive springs (default 1e-3; {_REF})"
    return _layout(fig, title, 380)


#: Fig. 7's rows: label -> row of a results file
FLAT_ROWS = {"flat start": "flat hand", "with L_anat": "flat, with L_anat", "without L_anat": "flat, without L_anat"}
_SETTING_COLORS = {"flat start": "#bbbbbb", "with L_anat": "#4c78a8", "without L_anat": "#e45756"}


def abnormality_figure(results: Mapping) -> go.Figure:
    """Fig. 7 measured: GeO from a flat hand with and without L_anat. One row per results file:
    each finger's twist (sum over its three joints of the absolute twist angle, degrees), L_anat
    (rad) and the worst violation of a joint limit (degrees); means over the samples, a bar
    colour per setting (the flat start's are all 0)."""
    results = _with_rows(_as_results(results), FLAT_ROWS.values())
    panels = ("finger twist", "L_anat", "worst violation")
    titles = [f"{lab}: {p}" for lab in results for p in panels]
    fig = make_subplots(rows=len(results), cols=3, subplot_titles=titles, column_widths=[0.5, 0.25, 0.25],
                        vertical_spacing=0.25 / max(len(results), 1))  # fmt: skip
    labels = list(FLAT_ROWS)
    for i, r in enumerate(results.values(), start=1):
        for lab, row in FLAT_ROWS.items():
            fig.add_trace(go.Bar(x=list(FINGERS), y=[mean(r, row, f"{f} twist") for f in FINGERS], name=lab,
                                 legendgroup=lab, showlegend=i == 1, marker_color=_SETTING_COLORS[lab]),
                          row=i, col=1)  # fmt: skip
        for c, m in ((2, "L_anat"), (3, "worst violation")):
            fig.add_trace(go.Bar(x=labels, y=[mean(r, FLAT_ROWS[x], m) for x in labels], showlegend=False, name=m,
                                 marker_color=[_SETTING_COLORS[x] for x in labels]), row=i, col=c)  # fmt: skip
        for c, m in enumerate(panels, start=1):
            fig.update_yaxes(title_text=f"{m} ({UNITS[m]})", row=i, col=c)
    title = "Fig. 7: GeO from a flat hand, with and without L_anat (means over the samples)"
    return _layout(fig, title, 360 * len(results) + 60)


#: Fig. 15's rows: label -> row of a results file ("ground truth" reads the twisted row's "truth thumb twist")
TWIST_ROWS = {"ground truth": "ground truth", "twisted start": "twisted thumb", "with L_anat": "twisted, with L_anat",
              "without L_anat": "twisted, without L_anat"}  # fmt: skip


def twist_figure(results: Mapping, metrics: Sequence[str] = ("HE", "PD")) -> go.Figure:
    """Fig. 15 measured: the thumb's twist (MCP + IP, degrees) of the true hand, of the start
    (the truth with 30 degrees more at each joint) and after GeO with and without L_anat, with
    ``metrics`` (mm); a bar per results file, means over the samples."""
    results = _with_rows(_as_results(results), TWIST_ROWS.values())
    panels = ("thumb twist", *metrics)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[NAMES.get(p, p) for p in panels])
    labels = list(TWIST_ROWS)

    def value(r: dict, lab: str, m: str) -> float:
        if lab == "ground truth" and m == "thumb twist":
            return mean(r, "twisted thumb", "truth thumb twist")
        return mean(r, TWIST_ROWS[lab], m)

    for k, (lab, r) in enumerate(results.items()):
        for c, m in enumerate(panels, start=1):
            fig.add_trace(go.Bar(x=labels, y=[value(r, x, m) for x in labels], name=lab, legendgroup=lab,
                                 showlegend=c == 1, marker_color=_color(k)), row=1, col=c)  # fmt: skip
    for c, m in enumerate(panels, start=1):
        fig.update_yaxes(title_text=f"{m} ({UNITS[m]})", row=1, col=c)
    fig.update_xaxes(tickangle=30)
    return _layout(fig, "Fig. 15: twist correction (means over the samples)", 420)


# --------------------------------------------------------------------------------------------
# small live runs


def live_table(study: ex.Ablation, names: Mapping[str, str] | Sequence[str]) -> str:
    """Some settings of a live :class:`miho.experiments.Ablation` as its Markdown table (ground
    truth, start, then ``names``: run names, or label -> run name; mm, cm^3, ms)."""
    names = dict(names) if isinstance(names, Mapping) else {n: n for n in names}
    missing = sorted(set(names.values()) - set(study.runs))
    if missing:
        raise ValueError(f"the study has no runs {missing}; it has {list(study.runs)}")
    runs = {lab: study.runs[n] for lab, n in names.items()}
    ms = {lab: study.ms_per_iteration[n] for lab, n in names.items()}
    return ex.Ablation(study.truth, study.start, runs, ms, start_name=study.start_name).to_markdown()


def pose_measures(hand: HandModel, pose: torch.Tensor, shape: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Fig. 7's and Fig. 15's measures of B poses (B, 16, 3): ``"L_anat"`` (B,) rad, ``"worst
    violation"`` (B,) degrees, ``"<finger> twist"`` (B,) degrees each, ``"thumb MCP+IP twist"``
    (B,) degrees (signed: :func:`miho.experiments.twist_degrees`)."""
    pose = pose.to(hand.device, hand.dtype)
    shape = None if shape is None else shape.to(hand.device, hand.dtype)
    with torch.no_grad():
        a = ex.pose_abnormality(hand, pose, shape)
        out = {"L_anat": a["L_anat"], "worst violation": a["worst violation"]}
        out.update({f"{f} twist": a["finger twist"][:, k] for k, f in enumerate(FINGERS)})
        out["thumb MCP+IP twist"] = ex.twist_degrees(hand, pose, shape=shape)
    return {k: v.detach().double().cpu() for k, v in out.items()}


def pose_table(hand: HandModel, study: ex.Ablation, starts: ex.Starts, names: Sequence[str] | None = None) -> str:
    """A Markdown table of :func:`pose_measures` (means over the samples) of the true hands, the
    starts and each run ``names`` (default all) of a live study made with ``keep_results=True``."""
    names = list(study.results) if names is None else list(names)
    rows = {"ground truth": pose_measures(hand, starts.truth_pose, starts.shape),
            starts.name: pose_measures(hand, starts.pose, starts.shape)}  # fmt: skip
    for n in names:
        res = study.results[n]
        rows[n] = pose_measures(hand, res.pose, res.shape)
    keys = list(next(iter(rows.values())))
    heads = ["pose", *(f"{k} ({'rad' if k == 'L_anat' else 'deg'})" for k in keys)]
    return markdown_table(heads, [(n, *(float(m[k].mean()) for k in keys)) for n, m in rows.items()])


def _object(objects, sample: int) -> tuple[int, torch.Tensor]:
    n, nf = int(objects.vert_mask[sample].sum()), int(objects.face_mask[sample].sum())
    return n, objects.faces[sample, :nf]


def refined_hands_figure(hand: HandModel, study: ex.Ablation, starts: ex.Starts, sample: int = 0,
                         names: Sequence[str] | None = None, truth: bool = True, height: int = 440,
                         camera: dict | None = None) -> go.Figure:  # fmt: skip
    """Sample ``sample`` of a live study side by side in 3D (mm): the start (hand and object
    where GeO starts) and, for each run ``names`` (default all; kept with ``keep_results=True``),
    the refined hand and object; the true hand as a green ghost when ``truth``."""
    names = list(study.results) if names is None else list(names)
    n, faces = _object(starts.objects, sample)
    with torch.no_grad():
        start = hand(starts.pose[sample : sample + 1], starts.shape[sample : sample + 1],
                     starts.trans[sample : sample + 1]).vertices[0]  # fmt: skip
    ghost = [plot.mesh_trace(starts.truth_hand[sample], hand.faces, color="#2ca02c", opacity=0.25,
                             name="true hand")] if truth else []  # fmt: skip
    panels = [(start, starts.objects.verts[sample, :n])]
    panels += [(study.results[x].hand_verts[sample], study.results[x].obj_verts[sample, :n]) for x in names]
    figs = [plot.figure([plot.mesh_trace(h, hand.faces, name="hand"),
                         plot.mesh_trace(o, faces, color="#6baed6", opacity=0.85, name="object"), *ghost])
            for h, o in panels]  # fmt: skip
    return plot.side_by_side(figs, [starts.name, *names], height=height, camera=camera)


# --------------------------------------------------------------------------------------------
# the live explorer


def _readout_html(start: dict, refined: dict, settings: str) -> str:
    keys = ("HE", "OE", "PD", "SIV", "DD", "L_anat", "worst violation", "thumb MCP+IP twist")
    unit = {**UNITS, "thumb MCP+IP twist": "deg"}
    head = "".join(f"<th>{k} ({unit[k]})</th>" for k in keys)
    rows = "".join(f"<tr><td>{lab}</td>" + "".join(f"<td>{m[k]:.2f}</td>" for k in keys) + "</tr>"
                   for lab, m in (("start", start), ("after GeO", refined)))  # fmt: skip
    return f"<p>{html.escape(settings)}</p><table><tr><th></th>{head}</tr>{rows}</table>"


class AblationExplorer:
    """Live GeO on one sample under the settings its controls pick (see :func:`ablation_explorer`).

    Attributes:
        widget: the ipywidgets ``VBox`` to display (controls, metrics readout, 3D view).
        controls: name -> control: ``sample``, ``start`` ("HoNet" or "flat hand"), ``contact``
            (:data:`CONTACTS`), ``k_rpl`` (:data:`miho.experiments.K_RPL_SWEEP`; only CPF has
            repulsive springs: disabled otherwise), ``anat`` (L_anat on), ``pose`` ("full pose",
            "PCA pose": disabled without a basis).
        button: *Run GeO*: refine with the current controls (:meth:`update`), e.g. the first time.
        readout: the ipywidgets ``HTML`` with the start's and the refined metrics.
        metrics, start_metrics: the last run's refined and start values (HE, OE, PD, DD mm;
            SIV cm^3; L_anat rad; worst violation, thumb MCP+IP twist degrees).
        figure: the last run's 3D figure (start ghost grey, refined hand, object, true hand green).
        runs: how many GeO runs were made (a repeated setting is read from a cache).
    """

    def __init__(self, hand: HandModel, starts: ex.Starts, pose_pca=None, iterations: int = 40,
                 resolution: int = 32, names: Sequence[str] | None = None, run: bool = False):  # fmt: skip
        import ipywidgets as W

        self.hand, self.starts, self.flat = hand, starts, ex.flat_starts(starts)
        self.pose_pca, self.iterations, self.resolution = pose_pca, iterations, resolution
        names = list(names) if names is not None else [f"sample {i}" for i in range(len(starts))]
        if len(names) != len(starts):
            raise ValueError(f"{len(names)} names for {len(starts)} samples")
        self._cache: dict[tuple, tuple] = {}
        self.runs = 0
        self.metrics: dict[str, float] = {}
        self.start_metrics: dict[str, float] = {}
        self.figure: go.Figure | None = None
        k_opts = [(f"{k:.1e}", k) for k in ex.K_RPL_SWEEP]
        default_k = min(ex.K_RPL_SWEEP, key=lambda k: abs(k - geo.GeOConfig.k_rpl))
        self.controls = {
            "sample": W.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0, description="sample"),
            "start": W.ToggleButtons(options=["HoNet", "flat hand"], value="HoNet", description="start"),
            "contact": W.ToggleButtons(options=list(CONTACTS), value="CPF", description="contact"),
            "k_rpl": W.SelectionSlider(options=k_opts, value=default_k, description="k_rpl", continuous_update=False),
            "anat": W.Checkbox(value=True, description="L_anat"),
            "pose": W.ToggleButtons(options=["full pose", "PCA pose"], value="full pose", description="pose",
                                    disabled=pose_pca is None),
        }  # fmt: skip
        self.readout = W.HTML(
            f"<p>Change a control or press <i>Run GeO</i> to refine the sample ({iterations} iterations).</p>"
        )
        self.button = W.Button(description="Run GeO", button_style="primary", icon="play")
        self.button.on_click(lambda _: self.update())
        self.output = W.Output()
        c = self.controls
        rows = [W.HBox([c["sample"], c["anat"], self.button]), c["start"], c["contact"],
                W.HBox([c["k_rpl"], c["pose"]])]  # fmt: skip
        self.widget = W.VBox([*rows, self.readout, self.output])
        for control in c.values():
            control.observe(self._changed, names="value")
        if run:
            self.update()

    def _changed(self, _change) -> None:
        self.update()

    def overrides(self, contact: str = "CPF", k_rpl: float = geo.GeOConfig.k_rpl, anat: bool = True,
                  pose: str = "full pose") -> dict:  # fmt: skip
        """The :class:`miho.geo.GeOConfig` overrides of a choice of the controls (k_rpl only
        where the repulsion is CPF's)."""
        if contact not in CONTACTS:
            raise ValueError(f"contact must be one of {tuple(CONTACTS)}, got {contact!r}")
        o = dict(geo.BASELINES[CONTACTS[contact]])
        if o.get("repulsion", "cpf") == "cpf":
            o["k_rpl"] = float(k_rpl)
        if not anat:
            o["w_anat"] = 0.0
        if pose == "PCA pose":
            if self.pose_pca is None:
                raise ValueError("the PCA pose needs the explorer's pose_pca")
            o["pose_pca"] = self.pose_pca
        return o

    def run(self, sample: int = 0, start: str = "HoNet", contact: str = "CPF", k_rpl: float = geo.GeOConfig.k_rpl,
            anat: bool = True, pose: str = "full pose") -> tuple[dict, dict, go.Figure]:  # fmt: skip
        """GeO (hand-object mode, :attr:`iterations`) on sample ``sample`` from HoNet's estimate or
        a flat hand: (start metrics, refined metrics, 3D figure); repeated settings from a cache."""
        o = self.overrides(contact, k_rpl, anat, pose)
        key = (int(sample), start, tuple(sorted((k, v) for k, v in o.items() if k != "pose_pca")), "pose_pca" in o)
        if key not in self._cache:
            starts = {"HoNet": self.starts, "flat hand": self.flat}[start].take(torch.tensor([int(sample)]))
            study = ex.ablation_study(self.hand, starts, {"run": o}, iterations=self.iterations,
                                      resolution=self.resolution, keep_results=True)  # fmt: skip
            res = study.results["run"]
            first = {k: float(v[0]) for k, v in pose_measures(self.hand, starts.pose, starts.shape).items()}
            after = {k: float(v[0]) for k, v in pose_measures(self.hand, res.pose, res.shape).items()}
            with torch.no_grad():
                ghost = self.hand(starts.pose, starts.shape, starts.trans).vertices[0]
            n, faces = _object(starts.objects, 0)
            fig = plot.figure([plot.mesh_trace(ghost, self.hand.faces, color="#bbbbbb", opacity=0.3, name="start"),
                               plot.mesh_trace(res.hand_verts[0], self.hand.faces, name="after GeO"),
                               plot.mesh_trace(res.obj_verts[0, :n], faces, color="#6baed6", opacity=0.85,
                                               name="object"),
                               plot.mesh_trace(starts.truth_hand[0], self.hand.faces, color="#2ca02c", opacity=0.25,
                                               name="true hand")], height=460)  # fmt: skip
            self._cache[key] = ({**study.start.mean(), **first}, {**study.runs["run"].mean(), **after}, fig)
            self.runs += 1
        return self._cache[key]

    def settings(self) -> dict:
        """The controls' current values, by name."""
        return {k: c.value for k, c in self.controls.items()}

    def update(self) -> None:
        """Run :meth:`run` with the controls' values and refresh the readout and the 3D view."""
        v = self.settings()
        self.controls["k_rpl"].disabled = geo.BASELINES[CONTACTS[v["contact"]]].get("repulsion", "cpf") != "cpf"
        self.readout.value = "<p>running GeO ...</p>"
        self.start_metrics, self.metrics, self.figure = self.run(**v)
        k = f", k_rpl {v['k_rpl']:.1e}" if not self.controls["k_rpl"].disabled else ""
        text = (f"{self.controls['sample'].label}, from {'HoNet' if v['start'] == 'HoNet' else 'a flat hand'}: "
                f"{v['contact']}{k}, {'with' if v['anat'] else 'without'} L_anat, {v['pose']}; "
                f"{self.iterations} iterations")  # fmt: skip
        self.readout.value = _readout_html(self.start_metrics, self.metrics, text)
        from IPython import get_ipython

        if get_ipython() is not None:  # in a kernel; a script or a test keeps only .figure
            from IPython.display import display

            with self.output:
                self.output.clear_output(wait=True)
                display(self.figure)


def ablation_explorer(hand: HandModel, starts: ex.Starts, pose_pca=None, iterations: int = 40, resolution: int = 32,
                      names: Sequence[str] | None = None, run: bool = False) -> AblationExplorer:  # fmt: skip
    """An :class:`AblationExplorer` over ``starts`` (e.g. :func:`miho.experiments.honet_starts`,
    PiCR's field): pick a sample, HoNet's or a flat start, the contact term, k_rpl, L_anat and
    (with HoNet's ``pose_pca``) the pose space; GeO re-runs on that sample (``iterations``, SIV
    on a ``resolution``^3 grid) at every change or press of *Run GeO*. Display its ``.widget`` in
    JupyterLab. ``run``: refine once now, with the default controls, and draw into the widget's
    ``Output``; leave it off in a notebook executed headless (the book build, the chapter tests):
    nbclient, which mirrors an ``Output`` widget written to during a cell, can then stall until
    the cell's timeout (jupyter/nbclient#312)."""
    return AblationExplorer(hand, starts, pose_pca, iterations, resolution, names, run)
