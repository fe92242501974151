"""Figures of the book's hand chapters: the hand model, A-MANO and anchors.

Each builder returns a plotly figure (sliders included) that works in the static book; the live
widgets of :mod:`miho.viz.widgets` call the same functions.
"""

from __future__ import annotations

import numpy as np
import torch

from miho import amano
from miho.amano import curl_pose
from miho.anchors import CARPAL, NUM_REGIONS, PALM, REGION_NAMES, HandRegions
from miho.hand.model import HandModel
from miho.viz import plot

#: MANO joint names, in MANO order.
JOINT_NAMES = (
    ("wrist",)
    + tuple(f"{f} {j}" for f in ("index", "middle", "little", "ring") for j in ("MCP", "PIP", "DIP"))
    + ("thumb CMC", "thumb MCP", "thumb IP")
)
AXES = ("twist", "splay", "bend")


def _shape(hand: HandModel, values: dict | None = None) -> torch.Tensor:
    s = torch.zeros(1, hand.num_shape, dtype=hand.dtype, device=hand.device)
    for name, v in (values or {}).items():
        s[0, hand.shape_names.index(name)] = v
    return s


def joint_pose(hand: HandModel, joint: int, degrees: tuple[float, float, float]) -> torch.Tensor:
    """(1, 16, 3) pose turning one joint (1-15) by (twist, splay, bend) degrees."""
    if not 1 <= joint <= 15:
        raise ValueError(f"joint must be in 1..15 (MANO order), got {joint}")
    tsb = torch.zeros(1, 15, 3, dtype=hand.dtype, device=hand.device)
    tsb[0, joint - 1] = torch.deg2rad(torch.tensor(degrees, dtype=hand.dtype))
    return amano.compose(tsb, amano.rest_frames(hand))


def hand_traces(hand: HandModel, pose=None, shape=None, skeleton=True, labels=False, opacity=1.0) -> list:
    """Mesh (+ skeleton, + joint labels) of a posed hand."""
    pose = hand.zero_pose() if pose is None else pose
    out = hand(pose, shape)
    traces = [plot.mesh_trace(out.vertices[0], hand.faces, opacity=opacity)]
    if skeleton:
        traces.append(plot.skeleton_trace(out.joints21[0]))
    if labels:
        traces.append(
            plot.points_trace(
                out.joints[0],
                size=5,
                color="black",
                name="joints",
                text=[f"{j}: {n}" for j, n in enumerate(JOINT_NAMES)],
            )
        )
    return traces


def hand_figure(hand: HandModel, pose=None, shape=None, title="", labels=True, opacity=0.5):
    """The hand mesh with its kinematic tree; hover a joint for its MANO id and name."""
    return plot.figure(
        hand_traces(hand, pose, shape, labels=labels, opacity=opacity), title=title, camera=plot.PALM_CAMERA
    )


def shape_slider_figure(hand: HandModel, name: str, values=None):
    """Slider over one shape coefficient (zero pose); ``values`` default -1..1 in 9 steps."""
    values = np.linspace(-1, 1, 9) if values is None else values
    steps = [hand_traces(hand, shape=_shape(hand, {name: float(v)}), opacity=0.8) for v in values]
    return plot.slider_figure(
        steps, [f"{v:+.2f}" for v in values], title=f"shape: {name}", prefix=f"{name} = ", camera=plot.PALM_CAMERA
    )


def curl_slider_figure(hand: HandModel, values=None):
    """Slider closing the hand: every joint bent by a fraction (``values``) of its bend limit."""
    values = np.linspace(0, 1, 6) if values is None else values
    steps = [hand_traces(hand, curl_pose(hand, float(c)), opacity=0.8) for c in values]
    return plot.slider_figure(
        steps,
        [f"{c:.1f}" for c in values],
        title="posing: curl",
        prefix="fraction of the bend limits = ",
        camera=plot.PALM_CAMERA,
    )


def frames_traces(hand: HandModel, pose=None, length=0.012) -> list:
    """Translucent posed mesh with the twist-splay-bend frame of every joint."""
    pose = hand.zero_pose() if pose is None else pose
    out = hand(pose)
    F = amano.posed_frames(amano.rest_frames(hand), out.transforms)
    return [
        plot.mesh_trace(out.vertices[0], hand.faces, opacity=0.35),
        *plot.frame_traces(out.joints[0], F[0], length=length),
    ]


def frames_figure(hand: HandModel, pose=None, title="twist (red), splay (green), bend (blue)"):
    return plot.figure(frames_traces(hand, pose), title=title, camera=plot.PALM_CAMERA)


def joint_slider_figure(hand: HandModel, joint: int, axis: str, degrees=None):
    """Slider turning one joint about one of its A-MANO axes, with L_anat in the labels."""
    degrees = np.linspace(-60, 120, 13) if degrees is None else np.asarray(degrees, dtype=float)
    k = AXES.index(axis)
    steps, labels = [], []
    rest = amano.rest_frames(hand)
    for d in degrees:
        angles = [0.0, 0.0, 0.0]
        angles[k] = float(d)
        pose = joint_pose(hand, joint, tuple(angles))
        steps.append(frames_traces(hand, pose))
        labels.append(f"{d:+.0f} deg, L_anat {amano.anatomical_loss(pose, rest).item():.2f}")
    return plot.slider_figure(
        steps,
        labels,
        title=f"{JOINT_NAMES[joint]}: {axis}",
        prefix="",
        camera=plot.PALM_CAMERA,
        active=int(np.abs(degrees).argmin()),
    )


def fit_comparison_figure(hand: HandModel, target, free_pose, constrained_pose, trans_free, trans_kept, titles):
    """Unconstrained versus L_anat-constrained fits to the same target joints, side by side.

    Each vertex is coloured by the twist (degrees) of the joint it mostly follows.
    """
    rest = amano.rest_frames(hand)
    owner = hand.weights.argmax(1)
    figs = []
    for pose, trans in ((free_pose, trans_free), (constrained_pose, trans_kept)):
        out = hand(pose[:1], trans=trans[:1])
        twist = torch.cat((torch.zeros(1), amano.angles(pose[:1], rest)[0, :, 0].abs().rad2deg()))
        figs.append(plot.figure([
            plot.mesh_trace(out.vertices[0], hand.faces, intensity=twist[owner], cmax=30.0, unit="twist (deg)"),
            plot.points_trace(target[0], color="black", size=3, name="target joints"),
        ]))  # fmt: skip
    return plot.side_by_side(figs, titles, camera=plot.PALM_CAMERA)


def region_traces(hand: HandModel, regions: HandRegions, highlight: int | None = None) -> list:
    """Mesh coloured by subregion (back of the hand grey); one region highlighted if given."""
    cols = plot.region_vertex_colors(regions.labels, regions.palm_side)
    if highlight is not None:
        lab = regions.labels.cpu().numpy()
        cols = [c if r == highlight else "#eeeeee" for c, r in zip(cols, lab)]
    traces = [plot.mesh_trace(hand.template, hand.faces, vertex_colors=cols, name="subregions")]
    anchors = regions.anchors(hand.template[None])[0]
    sel = slice(None) if highlight is None else (regions.anchor_region == highlight)
    traces.append(plot.points_trace(anchors[sel], color="black", size=5, name="anchors"))
    return traces


def regions_figure(hand: HandModel, regions: HandRegions):
    """The 17 subregions (palm side in colour) and the 32 anchors."""
    return plot.figure(
        region_traces(hand, regions) + plot.region_legend_traces(),
        title="17 subregions and 32 anchors",
        height=600,
        camera=plot.PALM_CAMERA,
    )


def region_picker_figure(hand: HandModel, regions: HandRegions):
    """Slider picking one region at a time (its vertices and anchors)."""
    ids = list(range(NUM_REGIONS))
    steps = [region_traces(hand, regions, highlight=r) for r in ids]
    return plot.slider_figure(
        steps, [REGION_NAMES[r] for r in ids], title="pick a region", prefix="region: ", camera=plot.PALM_CAMERA
    )


def anchor_rays_figure(hand: HandModel, regions: HandRegions):
    """Control points, the rays cast from them and the anchors they hit."""
    anchors = regions.anchors(hand.template[None])[0]
    cps = regions.control_points
    origin = cps[regions.anchor_control_point]
    carpal_unused = [c for c in range(cps.shape[0]) if c not in set(regions.anchor_control_point.tolist())]
    cols = plot.region_vertex_colors(regions.labels, regions.palm_side)
    traces = [
        plot.mesh_trace(hand.template, hand.faces, vertex_colors=cols, opacity=0.35, name="hand"),
        plot.points_trace(cps, color="black", size=4, name="control points", symbol="x",
                          text=[f"control point {i}: {REGION_NAMES[int(r)]}"
                                for i, r in enumerate(regions.control_region)]),
        plot.points_trace(cps[carpal_unused], color="white", size=5, name="control points without anchor"),
        plot.segments_trace(origin, anchors, color="#d62728", width=5, name="rays"),
        plot.points_trace(anchors, color="#d62728", size=5, name="anchors",
                          text=[f"anchor {i}: {REGION_NAMES[int(r)]}" for i, r in enumerate(regions.anchor_region)]),
    ]  # fmt: skip
    return plot.figure(traces, title="ray casting from the control points", height=600, camera=plot.PALM_CAMERA)


def anchor_table(regions: HandRegions) -> list[tuple[str, int, int]]:
    """(region name, number of vertices, number of anchors) for the 17 regions."""
    nv = torch.bincount(regions.labels, minlength=NUM_REGIONS).tolist()
    na = torch.bincount(regions.anchor_region, minlength=NUM_REGIONS).tolist()
    return [(REGION_NAMES[r], nv[r], na[r]) for r in range(NUM_REGIONS)]


__all__ = [
    "AXES", "JOINT_NAMES", "PALM", "CARPAL", "curl_pose", "joint_pose", "hand_traces", "hand_figure",
    "shape_slider_figure", "curl_slider_figure", "frames_traces", "frames_figure", "joint_slider_figure",
    "fit_comparison_figure", "region_traces", "regions_figure", "region_picker_figure",
    "anchor_rays_figure", "anchor_table",
]  # fmt: skip


def anat_curve_figure(hand: HandModel, joint: int, degrees=None):
    """L_anat of one joint turned about each of its axes alone, against the angle (degrees)."""
    degrees = np.linspace(-90, 120, 211) if degrees is None else degrees
    import plotly.graph_objects as go

    rest = amano.rest_frames(hand)
    fig = go.Figure()
    for k, axis in enumerate(AXES):
        tsb = torch.zeros(len(degrees), 15, 3, dtype=hand.dtype)
        tsb[:, joint - 1, k] = torch.deg2rad(torch.as_tensor(degrees, dtype=hand.dtype))
        cost = amano.anatomical_loss(amano.compose(tsb, rest.expand(len(degrees), -1, -1, -1)), rest)
        fig.add_trace(go.Scatter(x=degrees, y=cost.numpy(), name=axis, line=dict(color=plot.AXIS_COLORS[axis])))
    fig.update_layout(
        title=f"L_anat of the {JOINT_NAMES[joint]} turned about one axis", height=360,
        xaxis_title="angle (deg)", yaxis_title="L_anat (rad)", margin=dict(l=10, r=10, t=40, b=10),
    )  # fmt: skip
    return fig


def limits_rows() -> list[tuple]:
    """(joint, twist, splay, bend) limit strings in degrees for the 15 joints."""
    lim = amano.ANATOMICAL_LIMITS_DEG
    fmt = lambda lo, hi: "0" if lo == hi == 0 else f"[{lo:+.0f}, {hi:+.0f}]"  # noqa: E731
    return [(f"{j}: {JOINT_NAMES[j]}", *(fmt(*lim[j - 1, k].tolist()) for k in range(3))) for j in range(1, 16)]
