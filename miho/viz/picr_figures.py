"""Figures of the PiCR chapter: the architecture, what the network sees, training curves, the
precision-recall curve, and predicted against true fields painted on objects."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from miho.anchors import NUM_REGIONS
from miho.cpf import CPF, T_VC
from miho.viz import plot

__all__ = ["architecture_figure", "field_colors", "field_pair_traces", "fields_slider_figure", "hand_features_figure",
           "hand_study_figure", "inputs_figure", "pr_figure", "training_figure"]  # fmt: skip

NO_CONTACT = "#dddddd"


def architecture_figure(config) -> go.Figure:
    """PiCR as a row of boxes with the tensor shapes of ``config`` (a :class:`miho.nets.picr.PiCRConfig`)."""
    S, c, h = config.image_size, config.channels, config.image_size // 4
    per_point = (sum(config.point_widths) if config.concat_all else config.point_widths[-1]) + config.point_widths[-1]
    boxes = [
        ("image", f"3 x {S} x {S}"),
        (f"stacked hourglass\n{config.stacks} stacks", f"{config.stacks} x {c} x {h} x {h}"),
        ("bilinear samples at\nprojected vertices + depth,\nin-image flag (Eq. 8)", f"N x {c + 2}"),
        ("PointNet\n(shared MLP, max-pool)", f"N x {per_point}"),
        ("h_vc", "N x 1: VC"),
        ("h_cr([VC, F])", "N x 17: CR"),
        ("h_ae([CR, F])", "N x 1: AE"),
    ]
    fig = go.Figure()
    w, gap = 1.0, 0.35
    for i, (name, shape) in enumerate(boxes):
        x0 = i * (w + gap)
        colour = "#cfe2f3" if i < 4 else "#f9cb9c"
        fig.add_shape(type="rect", x0=x0, x1=x0 + w, y0=0, y1=1, fillcolor=colour, line=dict(color="#555555"))
        fig.add_annotation(x=x0 + w / 2, y=0.62, text=name.replace("\n", "<br>"), showarrow=False, font=dict(size=11))
        fig.add_annotation(x=x0 + w / 2, y=0.15, text=f"<i>{shape}</i>", showarrow=False, font=dict(size=10))
        if i:
            fig.add_annotation(x=x0, y=0.5, ax=x0 - gap, ay=0.5, xref="x", yref="y", axref="x", ayref="y",
                               showarrow=True, arrowhead=2, text="")  # fmt: skip
    fig.add_annotation(x=(4 * (w + gap) + 6 * (w + gap) + w) / 2, y=1.12, showarrow=False,
                       text="the heads, cascaded (Eq. 9); the vertices: the object at its coarse pose")  # fmt: skip
    fig.update_xaxes(visible=False, range=[-0.1, len(boxes) * (w + gap)])
    fig.update_yaxes(visible=False, range=[-0.1, 1.25])
    fig.update_layout(height=230, margin=dict(l=10, r=10, t=30, b=10), plot_bgcolor="white",
                      title=f"PiCR, configuration '{config.name}' (N object vertices)")  # fmt: skip
    return fig


def inputs_figure(image: torch.Tensor, uv: torch.Tensor, in_image: torch.Tensor, vc: torch.Tensor,
                  fmap: torch.Tensor) -> go.Figure:  # fmt: skip
    """What PiCR reads: the (3, S, S) image with the projected (N, 2) object vertices (pixels; those
    ``in_image``), coloured by their true contact ``vc``, beside the (C, h, w) feature map of the
    last stack drawn as its first three principal components."""
    img = (image.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    f = fmap.detach().float().cpu()
    C, h, w = f.shape
    x = f.reshape(C, -1).T
    x = x - x.mean(0)
    _, _, V = torch.linalg.svd(x, full_matrices=False)
    pcs = (x @ V[:3].T).reshape(h, w, 3)
    lo, hi = pcs.amin((0, 1)), pcs.amax((0, 1))
    rgb = ((pcs - lo) / (hi - lo).clamp_min(1e-9) * 255).numpy().astype(np.uint8)
    titles = ("image and projected object vertices", f"feature map, {C} channels: 3 principal components")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles)
    fig.add_trace(go.Image(z=img, x0=0.5, y0=0.5, dx=1, dy=1), row=1, col=1)  # pixel centres at integer + 0.5
    m = in_image.cpu()
    p, c = uv[m].cpu().numpy(), vc[m].cpu().numpy()
    for touch, colour, name in ((False, "#4a86e8", "no contact (truth)"), (True, "#e06666", "contact (truth)")):
        sel = (c > 0.5) == touch
        fig.add_trace(go.Scatter(x=p[sel, 0], y=p[sel, 1], mode="markers", marker=dict(size=3, color=colour),
                                 name=name), row=1, col=1)  # fmt: skip
    S = image.shape[-1]
    fig.add_trace(go.Image(z=rgb, x0=S / w / 2, y0=S / h / 2, dx=S / w, dy=S / h), row=1, col=2)
    for col in (1, 2):
        fig.update_xaxes(range=[0, S], showticklabels=False, row=1, col=col)
        fig.update_yaxes(range=[S, 0], showticklabels=False, scaleanchor=f"x{'' if col == 1 else col}", row=1, col=col)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def training_figure(history: list[dict], title: str = "training") -> go.Figure:
    """Per-epoch training loss terms and the validation F1 of a run's history (the ``epoch`` records
    of ``log.jsonl`` or a model card)."""
    e = [r["epoch"] for r in history]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss (both stacks)", "validation"))
    for k in ("loss", "vc", "cr", "ae"):
        if k in history[0]:
            fig.add_trace(go.Scatter(x=e, y=[r[k] for r in history], mode="lines+markers", name=k), row=1, col=1)
    for k, name in (("val_f1", f"VC F1 at t_vc = {T_VC}"), ("val_score", "VC F1, best threshold"),
                    ("val_cr_accuracy", "CR accuracy"), ("val_ae_mae", "AE mean abs. error")):  # fmt: skip
        if k in history[0]:
            fig.add_trace(go.Scatter(x=e, y=[r[k] for r in history], mode="lines+markers", name=name), row=1, col=2)
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(height=360, title=title, margin=dict(t=60))
    return fig


def pr_figure(curves: dict[str, list], title: str = "Vertex Contact: precision and recall") -> go.Figure:
    """Precision-recall curves: name -> rows (threshold, precision, recall, F1) of
    :func:`miho.train.picr.field_figures`; the paper's t_vc = 0.8 marked."""
    fig = go.Figure()
    for name, rows in curves.items():
        t, p, r, _ = (list(c) for c in zip(*rows))
        fig.add_trace(go.Scatter(x=r, y=p, mode="lines+markers", name=name, text=[f"t = {x}" for x in t],
                                 hoverinfo="text+x+y"))  # fmt: skip
        if T_VC in t:
            i = t.index(T_VC)
            fig.add_trace(go.Scatter(x=[r[i]], y=[p[i]], mode="markers", marker=dict(size=12, symbol="x"),
                                     name=f"{name}, t = {T_VC}"))  # fmt: skip
    fig.update_layout(title=title, xaxis_title="recall", yaxis_title="precision", height=400,
                      xaxis_range=[0, 1.02], yaxis_range=[0, 1.02])  # fmt: skip
    return fig


def field_colors(field: CPF, b: int, n: int, t_vc: float = T_VC) -> list[str]:
    """Per-vertex colours of sample ``b`` (its ``n`` real vertices): the region colour where the
    field says contact (``vc > t_vc``), grey elsewhere."""
    vc, cr = field.vc[b, :n].cpu(), field.cr[b, :n].cpu()
    return [plot.REGION_COLORS[int(r)] if (v > t_vc and 0 <= r < NUM_REGIONS) else NO_CONTACT
            for v, r in zip(vc.tolist(), cr.tolist())]  # fmt: skip


def field_pair_traces(verts, faces, predicted: CPF, truth: CPF, b: int, n: int, t_vc: float) -> tuple[list, list]:
    """Traces of one object painted by the predicted field (at ``t_vc``) and by the true field."""
    left = plot.mesh_trace(verts, faces, vertex_colors=field_colors(predicted, b, n, t_vc), name="PiCR")
    right = plot.mesh_trace(verts, faces, vertex_colors=field_colors(truth, b, n, 0.5), name="ground truth")
    return [left], [right]


def fields_slider_figure(batch: dict, predicted: CPF, t_vc: float = T_VC, names=None) -> go.Figure:
    """Objects painted by PiCR's field (left) and the ground truth (right), a slider over the samples
    of ``batch`` (a :meth:`~miho.train.picr_data.PiCRData.batch`; the objects at their coarse pose)."""
    truth = CPF(batch["vc"], batch["cr"], batch["ae"])
    B = batch["obj_verts"].shape[0]
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}] * 2],
                        subplot_titles=(f"PiCR (VC > {t_vc}: region colour)", "ground truth"))  # fmt: skip
    labels = names or [str(i) for i in range(B)]
    frames = []
    for b in range(B):
        n, nf = int(batch["obj_mask"][b].sum()), int(batch["obj_face_mask"][b].sum())
        left, right = field_pair_traces(batch["obj_verts"][b, :n], batch["obj_faces"][b, :nf], predicted, truth, b, n,
                                        t_vc)  # fmt: skip
        frames.append(go.Frame(data=[*left, *right], name=labels[b], traces=[0, 1]))
        if b == 0:
            fig.add_trace(left[0], row=1, col=1)
            fig.add_trace(right[0], row=1, col=2)
    fig.frames = frames
    fig.update_layout(
        height=480, margin=dict(l=0, r=0, t=40, b=0), showlegend=False,
        sliders=[dict(currentvalue=dict(prefix="sample: "), pad=dict(t=10), steps=[
            dict(label=lb, method="animate", args=[[lb], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                                 transition=dict(duration=0))])
            for lb in labels])],
    )  # fmt: skip
    fig.update_scenes(aspectmode="data", xaxis_title="x (mm)", yaxis_title="y (mm)", zaxis_title="z (mm)")
    return fig


def hand_features_figure(obj_verts, obj_faces, features, hand_verts, hand_faces, title: str = "") -> go.Figure:
    """What the hand-aware PiCR reads from the coarse hand, for one sample: the object painted by the
    distance to the hand's nearest palm-side vertex (mm, feature column 1; Eq. 4's contact test is
    this below 20 mm) beside the object painted by the nearest anchor's region (columns 2-18), the
    coarse hand drawn translucent in both.

    Args: obj_verts (N, 3), obj_faces (F, 3), features (N, 21) of
    :func:`miho.nets.hand_features.hand_features`, hand_verts (V, 3), hand_faces (F_h, 3); metres.
    """
    from miho.cpf import S
    from miho.nets.hand_features import CLIP

    dist_mm = features[:, 1].clamp(0, CLIP) * S * 1e3
    region = features[:, 2 : 2 + NUM_REGIONS].argmax(-1)
    colors = [plot.REGION_COLORS[int(r)] for r in region.tolist()]
    ghost = plot.mesh_trace(hand_verts, hand_faces, opacity=0.25, name="coarse hand")
    left = [plot.mesh_trace(obj_verts, obj_faces, intensity=dist_mm, cmax=float(CLIP * S * 1e3),
                            unit="mm", name="object"), ghost]  # fmt: skip
    right = [plot.mesh_trace(obj_verts, obj_faces, vertex_colors=colors, name="object"), ghost]
    return plot.side_by_side([plot.figure(left), plot.figure(right)],
                             ["distance to the palm side (mm)", "nearest anchor's region"], height=420)  # fmt: skip


def hand_study_figure(study: dict, title: str = "") -> go.Figure:
    """:func:`miho.train.picr.hand_study`'s results: VC F1, CR accuracy and AE mean absolute error
    against the coarse hand's disturbance (times the official jitter: 1 is a rotation of up to 7.5
    degrees about the wrist and an offset of 10 mm on average), one line a predictor and split
    (solid ``test-seen``, dashed ``test``)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("VC F1 (at its threshold)", "CR accuracy",
                                                        "AE mean abs. error (lower is better)"))  # fmt: skip
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa"]
    for s, (split, res) in enumerate(study.items()):
        names = list(dict.fromkeys(r["predictor"] for r in res["rows"]))
        for p, name in enumerate(names):
            rows = sorted((r for r in res["rows"] if r["predictor"] == name), key=lambda r: r["scale"])
            x = [r["scale"] for r in rows]
            for c, key in enumerate(("f1", "cr_accuracy", "ae_mae")):
                fig.add_trace(go.Scatter(x=x, y=[r[key] for r in rows], mode="lines+markers", name=f"{name}, {split}",
                                         legendgroup=f"{name}, {split}", showlegend=c == 0,
                                         line=dict(color=palette[p % len(palette)], dash="dash" if s else "solid")),
                              row=1, col=c + 1)  # fmt: skip
    fig.update_xaxes(title="coarse hand's disturbance (x official jitter)")
    fig.update_layout(height=420, title=title or "the field's predictors as the coarse hand gets worse",
                      margin=dict(t=80), legend=dict(orientation="h", y=-0.25))  # fmt: skip
    return fig
