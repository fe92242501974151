"""Plotly figures of hands, frames, regions and anchors (static: they work in the rendered book
without a kernel). Inputs are in metres (tensors or arrays); every axis is drawn in millimetres.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from miho.anchors import NUM_REGIONS, REGION_NAMES
from miho.hand.model import FINGERS

MM = 1000.0
#: One colour per subregion (17): fingers in related hues, palm orange, carpal olive.
REGION_COLORS = (
    "#1f77b4", "#4c9fd6", "#9ecae1",  # index
    "#2ca02c", "#62c462", "#a1d99b",  # middle
    "#9467bd", "#b590d8", "#d4c4ec",  # little
    "#8c564b", "#b5816f", "#dcb8a8",  # ring
    "#d62728", "#f06262", "#fba3a3",  # thumb
    "#ff7f0e", "#bcbd22",  # palm, carpal
)  # fmt: skip
AXIS_COLORS = {"twist": "#d62728", "splay": "#2ca02c", "bend": "#1f77b4"}
SKIN = "#e8b896"


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def mesh_trace(
    vertices, faces, color=SKIN, vertex_colors=None, opacity=1.0, name="hand", intensity=None, cmax=None, unit=""
) -> go.Mesh3d:
    """(V, 3) vertices and (F, 3) faces as a shaded mesh.

    ``vertex_colors`` (V,) colour strings override ``color``; ``intensity`` (V,) values are
    drawn with a colour scale from 0 to ``cmax`` labelled ``unit``.
    """
    v, f = _np(vertices) * MM, _np(faces)
    if intensity is not None:
        kw = dict(intensity=_np(intensity), colorscale="Reds", cmin=0.0, cmax=cmax, colorbar=dict(title=unit))
    elif vertex_colors is not None:
        kw = dict(vertexcolor=list(vertex_colors))
    else:
        kw = dict(color=color)
    return go.Mesh3d(
        x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], opacity=opacity, name=name,
        flatshading=False, lighting=dict(ambient=0.55, diffuse=0.7, specular=0.15, roughness=0.6),
        lightposition=dict(x=100, y=200, z=300), hoverinfo="name", showlegend=True, **kw,
    )  # fmt: skip


def points_trace(points, color="black", size=4, name="points", text=None, symbol="circle") -> go.Scatter3d:
    """(N, 3) points as markers."""
    p = _np(points) * MM
    return go.Scatter3d(
        x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=name, text=text,
        marker=dict(size=size, color=color, symbol=symbol), hoverinfo="text+name" if text is not None else "name",
    )  # fmt: skip


def segments_trace(starts, ends, color="black", width=4, name="segments") -> go.Scatter3d:
    """(N, 3) starts and ends as N line segments in one trace."""
    a, b = _np(starts) * MM, _np(ends) * MM
    xyz = np.full((len(a) * 3, 3), np.nan)
    xyz[0::3], xyz[1::3] = a, b
    return go.Scatter3d(
        x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="lines", name=name, line=dict(color=color, width=width),
        hoverinfo="name", connectgaps=False,
    )  # fmt: skip


def skeleton_trace(joints21, color="#333333", name="skeleton") -> go.Scatter3d:
    """(21, 3) joints (:data:`miho.hand.JOINTS21_ORDER`) as the kinematic tree with markers."""
    j = _np(joints21)
    starts, ends = [], []
    for f in range(len(FINGERS)):
        chain = [0] + [1 + 4 * f + k for k in range(4)]
        starts += [j[a] for a in chain[:-1]]
        ends += [j[b] for b in chain[1:]]
    tr = segments_trace(np.array(starts), np.array(ends), color=color, width=5, name=name)
    tr.mode = "lines+markers"
    tr.marker = dict(size=3, color=color)
    return tr


def frame_traces(origins, frames, length=0.012) -> list[go.Scatter3d]:
    """Twist (red), splay (green) and bend (blue) axes of (N, 3, 3) frames at (N, 3) origins."""
    o, F = _np(origins), _np(frames)
    return [
        segments_trace(o, o + length * F[:, :, k], color=AXIS_COLORS[name], width=6, name=name)
        for k, name in enumerate(("twist", "splay", "bend"))
    ]


def region_vertex_colors(labels, palm_side=None, back="#f2f2f2") -> list[str]:
    """Per-vertex colours from (V,) region labels; vertices off ``palm_side`` drawn in ``back``."""
    lab = _np(labels)
    cols = [REGION_COLORS[r] for r in lab]
    if palm_side is not None:
        ps = _np(palm_side)
        cols = [c if s else back for c, s in zip(cols, ps)]
    return cols


def region_legend_traces() -> list[go.Scatter3d]:
    """Empty traces that put the 17 region colours in the legend."""
    return [
        go.Scatter3d(x=[None], y=[None], z=[None], mode="markers", name=REGION_NAMES[r],
                     marker=dict(size=8, color=REGION_COLORS[r]))
        for r in range(NUM_REGIONS)
    ]  # fmt: skip


def figure(traces, title="", height=520, camera=None) -> go.Figure:
    """A 3D figure with equal axis scales in millimetres."""
    fig = go.Figure(data=list(traces))
    axis = lambda n: dict(title=f"{n} (mm)", showbackground=False, gridcolor="#e5e5e5")  # noqa: E731
    fig.update_layout(
        title=title, height=height, margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        scene=dict(aspectmode="data", xaxis=axis("x"), yaxis=axis("y"), zaxis=axis("z")),
        legend=dict(itemsizing="constant"),
    )  # fmt: skip
    if camera is not None:
        fig.update_layout(scene_camera=camera)
    return fig


def slider_figure(steps, labels, title="", prefix="", height=520, camera=None, active=0) -> go.Figure:
    """A figure whose slider switches between precomputed sets of traces.

    Args:
        steps: list of lists of traces, one list per slider position (same length and types).
        labels: slider label of each position.
        active: the position shown first.
    """
    fig = figure(steps[active], title=title, height=height, camera=camera)
    fig.frames = [go.Frame(data=list(tr), name=str(lb)) for tr, lb in zip(steps, labels)]
    fig.update_layout(
        sliders=[dict(
            active=active, currentvalue=dict(prefix=prefix), pad=dict(t=10),
            steps=[dict(label=str(lb), method="animate",
                        args=[[str(lb)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                transition=dict(duration=0))])
                   for lb in labels],
        )]
    )  # fmt: skip
    return fig


def side_by_side(figures, titles, height=480, camera=None) -> go.Figure:
    """Place the traces of several 3D figures in one row of scenes."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(figures), specs=[[{"type": "scene"}] * len(figures)], subplot_titles=titles)
    for c, sub in enumerate(figures, start=1):
        for tr in sub.data:
            fig.add_trace(tr, row=1, col=c)
    axis = lambda n: dict(title=f"{n} (mm)", showbackground=False)  # noqa: E731
    fig.update_scenes(aspectmode="data", xaxis=axis("x"), yaxis=axis("y"), zaxis=axis("z"), camera=camera)
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=40, b=0), showlegend=False)
    return fig


#: Camera looking at the palm of the default (Anny) hand: its palm faces -x, fingers along +y.
PALM_CAMERA = dict(eye=dict(x=-1.6, y=0.2, z=0.6), up=dict(x=0, y=1, z=0))
