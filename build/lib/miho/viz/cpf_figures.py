"""Figures of the CPF and GeO chapters. Energies are computed by :mod:`miho.cpf` itself."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from miho import cpf as C
from miho.anchors import HandRegions
from miho.viz import plot

#: Slider values of :func:`energy_curves_figure`: (name, label, values, default).
ENERGY_SLIDERS = (
    ("k_atr", "k_atr", (0.1, 0.25, 0.5, 0.75, 1.0), 0.5),
    ("k_rpl", "k_rpl", (2e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3), 1e-3),
    ("lateral", "lateral offset (mm)", (0.0, 2.0, 5.0, 10.0), 0.0),
    ("scale", "length scale of exp (m)", (1.0, 0.01, 0.005), 1.0),
)


def pair_energies(offset_mm, k_atr=0.5, k_rpl=C.K_RPL, lateral=0.0, scale=1.0):
    """Attraction and repulsion between one object vertex (at the origin, normal +z) and one
    hand point at height ``offset_mm`` along the normal and ``lateral`` mm beside it.

    The hand point is the vertex's anchor for the attraction (Eq. 1) and a hand vertex for the
    repulsion (Eq. 2), so both come from :func:`miho.cpf.attraction_energy` and
    :func:`miho.cpf.repulsion_energy`. Returns two (M,) arrays.
    """
    x = torch.as_tensor(np.asarray(offset_mm, dtype=float) / 1000.0)
    M = x.shape[0]
    pts = torch.stack((torch.full_like(x, lateral / 1000.0), torch.zeros_like(x), x), -1)[:, None]  # (M, 1, 3)
    obj = torch.zeros(M, 1, 3, dtype=x.dtype)
    normal = torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype).expand(M, 1, 3)
    field = C.CPF(torch.ones(M, 1, dtype=x.dtype), torch.zeros(M, 1, dtype=torch.long), torch.full((M, 1), k_atr))
    atr = C.attraction_energy(pts, obj, field, torch.zeros(1, dtype=torch.long))
    rpl = C.repulsion_energy(pts, obj, normal, k_rpl=k_rpl, scale=scale)
    return atr.numpy(), rpl.numpy()


def _curves(x, **params):
    atr, rpl = pair_energies(x, **params)
    tot = atr + rpl
    i = int(tot.argmin())
    return atr * 1e6, rpl * 1e6, tot * 1e6, x[i], tot[i] * 1e6


def energy_curves_figure(x_mm=None) -> go.Figure:
    """Fig. 12: attraction, repulsion and total energy against the hand point's height above the
    object surface, within the repulsion's 20 mm range, with a slider for each parameter (each
    slider varies one parameter from the defaults). The marker is the equilibrium (the total's
    minimum in that range)."""
    x = np.linspace(-10.0, 19.9, 300) if x_mm is None else np.asarray(x_mm, dtype=float)
    defaults = {name: default for name, _, _, default in ENERGY_SLIDERS}
    atr, rpl, tot, xe, ye = _curves(x, **defaults)
    fig = go.Figure([
        go.Scatter(x=x, y=atr, name="attraction", line=dict(color="#1f77b4")),
        go.Scatter(x=x, y=rpl, name="repulsion", line=dict(color="#d62728")),
        go.Scatter(x=x, y=tot, name="total", line=dict(color="black", width=3)),
        go.Scatter(x=[xe], y=[ye], name="equilibrium", mode="markers", marker=dict(size=10, color="black")),
    ])  # fmt: skip
    sliders = []
    for k, (name, label, values, default) in enumerate(ENERGY_SLIDERS):
        steps = []
        for v in values:
            a, r, t, xe, ye = _curves(x, **{**defaults, name: v})
            steps.append(dict(label=f"{v:g}", method="restyle",
                              args=[{"y": [a, r, t, [ye]], "x": [x, x, x, [xe]]}]))  # fmt: skip
        sliders.append(dict(active=values.index(default), steps=steps, currentvalue=dict(prefix=f"{label} = "),
                            y=-0.25 - 0.22 * k, pad=dict(t=10), len=0.9))  # fmt: skip
    fig.update_layout(
        sliders=sliders, height=720, margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="height of the hand point above the object surface, along the normal (mm)",
        yaxis_title="energy (10^-6, distances in m)", title="one attractive and one repulsive spring",
    )  # fmt: skip
    return fig


def elasticity_figure(s: float = C.S) -> go.Figure:
    """Eq. 4: the ground-truth elasticity against the anchor-vertex distance."""
    d = np.linspace(0.0, 1.25 * s, 126)
    k = C.elasticity(torch.as_tensor(d), s).numpy()
    fig = go.Figure(go.Scatter(x=d * 1000, y=k, line=dict(color="#1f77b4")))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), title="Eq. 4: k_atr = 0.5 cos(pi d / s) + 0.5",
                      xaxis_title="anchor-vertex distance d (mm)", yaxis_title="k_atr")  # fmt: skip
    return fig


def field_figure(hand_verts, hand_faces, obj_verts, obj_faces, field: C.CPF, t_vc: float = C.T_VC):
    """The object painted with the CPF (Fig. 4): a slider switches VC, CR and AE."""
    vc, cr, ae = field.vc[0].numpy(), field.cr[0].numpy(), field.ae[0].numpy()
    on = vc > t_vc
    views = {
        "VC": [("#d62728" if c else "#dddddd") for c in on],
        "CR": [(plot.REGION_COLORS[r] if c else "#dddddd") for c, r in zip(on, cr)],
        "AE": None,
    }
    steps = []
    for cols in views.values():
        hand = plot.mesh_trace(hand_verts, hand_faces, opacity=0.25)
        if cols is None:
            obj = plot.mesh_trace(obj_verts, obj_faces, intensity=ae, cmax=1.0, unit="AE", name="object")
        else:
            obj = plot.mesh_trace(obj_verts, obj_faces, vertex_colors=cols, name="object")
        steps.append([obj, hand])
    return plot.slider_figure(steps, list(views), title="the CPF on the object: VC, CR, AE", prefix="show: ")


def springs_figure(hand_verts, hand_faces, obj_verts, field: C.CPF, regions: HandRegions, every: int = 3):
    """Algorithm 1's attractive springs: a line from each contact vertex (every ``every``-th)
    to each anchor of its region, on the translucent hand."""
    anchors = regions.anchors(hand_verts[None])[0]
    on = field.contact()[0].nonzero()[:, 0][::every]
    starts, ends = [], []
    for j in on.tolist():
        for a in (regions.anchor_region == field.cr[0, j]).nonzero()[:, 0].tolist():
            starts.append(obj_verts[j])
            ends.append(anchors[a])
    traces = [
        plot.mesh_trace(hand_verts, hand_faces, opacity=0.3),
        plot.points_trace(obj_verts, color="#6baed6", size=1.5, name="object vertices"),
        plot.segments_trace(torch.stack(starts), torch.stack(ends), color="#2ca02c", width=2, name="springs"),
        plot.points_trace(anchors, color="#d62728", size=4, name="anchors"),
    ]
    return plot.figure(traces, title=f"attractive springs ({len(starts)} drawn)", height=560)
