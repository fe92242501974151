"""Figures of the GeO chapter: the optimisation animated, its energy terms, and comparisons."""

from __future__ import annotations

import plotly.graph_objects as go

from miho.geo import GeOResult
from miho.mesh import Meshes
from miho.viz import plot


def trajectory_figure(hand_faces, objects: Meshes, result: GeOResult, sample: int = 0, every: int = 1, title=""):
    """The refinement of one sample animated (needs ``record_every`` > 0): a play button and a
    slider over the recorded iterations; the starting hand stays as a grey ghost."""
    hands, objs = result.trajectory["hand"][:, sample], result.trajectory["object"][:, sample]
    obj_faces = objects.mesh(sample)[1]  # the real vertices come first (Meshes.from_list)
    n_obj = int(objects.vert_mask[sample].sum())
    ghost = plot.mesh_trace(hands[0], hand_faces, color="#bbbbbb", opacity=0.25, name="start")
    steps = [[plot.mesh_trace(h, hand_faces, name="hand"), plot.mesh_trace(o[:n_obj], obj_faces, color="#6baed6",
              name="object", opacity=0.85), ghost] for h, o in zip(hands[::every], objs[::every])]  # fmt: skip
    labels = list(range(0, len(hands), every))
    fig = plot.slider_figure(steps, [f"{i}" for i in labels], title=title, prefix="recorded step ")
    timing = dict(frame=dict(duration=150, redraw=True), fromcurrent=True)
    play = dict(label="play", method="animate", args=[None, timing])
    fig.update_layout(updatemenus=[dict(type="buttons", showactive=False, x=0.05, y=0.05, buttons=[play])])
    return fig


def history_figure(results: dict, sample: int = 0, terms=("total", "contact", "repulsion", "anat", "offset")):
    """Loss terms against the iteration, one line style per run in ``results`` (name -> result)."""
    fig = go.Figure()
    dashes = ("solid", "dash", "dot", "dashdot")
    colours = {"total": "black", "contact": "#2ca02c", "repulsion": "#d62728", "anat": "#9467bd", "offset": "#8c564b"}
    for k, (name, res) in enumerate(results.items()):
        for term in terms:
            y = res.history[term][:, sample].numpy()
            if (y > 0).any():
                fig.add_trace(
                    go.Scatter(y=y, name=f"{name}: {term}", line=dict(color=colours[term], dash=dashes[k % 4]))
                )
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), yaxis_type="log", title="GeO loss terms",
                      xaxis_title="iteration", yaxis_title="term value (before weighting)")  # fmt: skip
    return fig


def comparison_figure(hand_faces, obj_faces, hands: dict, obj_verts, titles=None):
    """Several hands (name -> (V, 3)) on the same object, side by side."""
    figs = [plot.figure([plot.mesh_trace(h, hand_faces, name=name), plot.mesh_trace(obj_verts, obj_faces,
            color="#6baed6", name="object", opacity=0.85)]) for name, h in hands.items()]  # fmt: skip
    return plot.side_by_side(figs, titles or list(hands), height=420)


def ablation_figure(study, metrics=("HE", "OE", "PD", "SIV", "DD")):
    """One panel per metric, a bar per setting (means over the batch; the ground truth and the
    disturbed start as dashed reference lines) of a :class:`miho.experiments.Ablation`."""
    from plotly.subplots import make_subplots

    units = study.start.units
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[f"{m} ({units[m]})" for m in metrics])
    names = list(study.runs)
    for c, m in enumerate(metrics, start=1):
        y = [study.runs[n].mean()[m] for n in names]
        fig.add_trace(go.Bar(x=names, y=y, marker_color="#4c78a8", showlegend=False, name=m), row=1, col=c)
        for ref, dash in ((study.start, "dash"), (study.truth, "dot")):
            fig.add_hline(y=ref.mean()[m], line_dash=dash, line_color="#888888", row=1, col=c)
    fig.update_xaxes(tickangle=45)
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=40, b=10),
                      title="means over the batch (dashed: disturbed start, dotted: ground truth)")  # fmt: skip
    return fig


def k_rpl_figure(study, metrics=("HE", "PD", "SIV", "DD")):
    """Table 5 as curves: each metric's mean against k_rpl (log axis) for the runs of a
    :class:`miho.experiments.Ablation` made with :func:`miho.experiments.k_rpl_settings`."""
    from plotly.subplots import make_subplots

    runs = {float(name.split("=")[1]): t for name, t in study.runs.items() if name.startswith("k_rpl")}
    ks = sorted(runs)
    units = study.start.units
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[f"{m} ({units[m]})" for m in metrics])
    for c, m in enumerate(metrics, start=1):
        fig.add_trace(go.Scatter(x=ks, y=[runs[k].mean()[m] for k in ks], mode="lines+markers", showlegend=False),
                      row=1, col=c)  # fmt: skip
        fig.update_xaxes(type="log", title_text="k_rpl", row=1, col=c)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig
