"""Figures of the metrics chapter: each metric drawn on a grasp. Inputs one sample, metres."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from miho import metrics
from miho.geometry import point_triangle_distance, winding_number
from miho.mesh import Meshes
from miho.viz import plot


def _object_traces(obj_verts, obj_faces, opacity=0.35):
    return plot.mesh_trace(obj_verts, obj_faces, color="#6baed6", opacity=opacity, name="object")


def penetration_figure(hand_verts, hand_faces, obj_verts, obj_faces):
    """Hand vertices inside the object, coloured by their depth (distance to the surface)."""
    tris = obj_verts[obj_faces][None]
    inside = winding_number(hand_verts[None], tris)[0].abs() > 0.5
    depth, _ = point_triangle_distance(hand_verts[None][:, inside], tris)
    d = depth[0] * 1000
    pts = hand_verts[inside] * plot.MM
    traces = [
        plot.mesh_trace(hand_verts, hand_faces, opacity=0.25),
        _object_traces(obj_verts, obj_faces),
        go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", name="inside vertices",
                     marker=dict(size=3, color=d.numpy(), colorscale="Reds", colorbar=dict(title="depth (mm)")),
                     text=[f"{x:.1f} mm" for x in d.tolist()], hoverinfo="text"),
    ]  # fmt: skip
    pd = float(d.max()) if d.numel() else 0.0
    return plot.figure(traces, title=f"penetration depth: {pd:.1f} mm ({int(inside.sum())} vertices inside)")


def intersection_figure(hand, hand_verts, obj_verts, obj_faces, resolution=40):
    """The object voxels inside the closed hand (their centres), and the SIV they make."""
    cv, cf = hand.closed(hand_verts[None])
    objs = Meshes.from_list([(obj_verts, obj_faces)], dtype=hand_verts.dtype)
    voxels = []
    siv = float(metrics.solid_intersection_volume(cv, cf, objs, resolution=resolution, voxels=voxels)[0])
    v = voxels[0] * plot.MM
    traces = [
        plot.mesh_trace(hand_verts, hand.faces, opacity=0.2),
        _object_traces(obj_verts, obj_faces, opacity=0.2),
        go.Scatter3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], mode="markers", name="intersecting voxels",
                     marker=dict(size=2.5, color="#d62728", symbol="square")),
    ]  # fmt: skip
    return plot.figure(
        traces, title=f"solid intersection volume: {siv:.2f} cm^3 ({len(v)} voxels, {resolution}^3 grid)"
    )


def disjointedness_figure(hand_verts, hand_faces, tip_mask, obj_verts, obj_faces, every=4):
    """Fingertip-region vertices joined to their closest object surface points."""
    tris = obj_verts[obj_faces]
    tips = hand_verts[tip_mask]
    dist, face = point_triangle_distance(tips[None], tris[None])
    closest = _closest_points(tips, tris[face[0]])
    sel = slice(None, None, every)
    traces = [
        plot.mesh_trace(hand_verts, hand_faces, opacity=0.3),
        _object_traces(obj_verts, obj_faces, opacity=0.5),
        plot.segments_trace(tips[sel], closest[sel], color="#2ca02c", width=3, name="to the surface"),
    ]
    return plot.figure(traces, title=f"disjointedness: {float(dist.mean()) * 1000:.1f} mm (mean over {len(tips)} "
                                     f"fingertip vertices, every {every}th drawn)")  # fmt: skip


def _closest_points(points: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
    """Closest point of each (N, 3) point on its (N, 3, 3) triangle, by dense sampling of the
    triangle's barycentric grid refined once (drawing only; metrics use exact distances)."""
    n = 24
    u, v = torch.meshgrid(torch.linspace(0, 1, n + 1, dtype=points.dtype), torch.linspace(0, 1, n + 1,
                          dtype=points.dtype), indexing="ij")  # fmt: skip
    keep = (u + v) <= 1
    w = torch.stack((1 - u[keep] - v[keep], u[keep], v[keep]), -1)  # (S, 3)
    samples = torch.einsum("sk,nkc->nsc", w, tris)
    best = (samples - points[:, None]).norm(dim=-1).argmin(1)
    return samples[torch.arange(len(points)), best]


def simulation_figure(trace: np.ndarray, time_step: float = 1 / 240):
    """The object's centre of mass over a simulation: displacement against time."""
    d = np.linalg.norm(trace - trace[0], axis=1) * 1000
    t = np.arange(len(trace)) * time_step * 1000
    fig = go.Figure(go.Scatter(x=t, y=d, mode="lines+markers", name="displacement"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="time (ms)",
                      yaxis_title="displacement of the centre (mm)",
                      title=f"simulation displacement: {d[-1]:.1f} mm after {len(trace) - 1} steps")  # fmt: skip
    return fig
