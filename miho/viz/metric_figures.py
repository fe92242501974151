"""Figures of the metrics chapter: each metric drawn on a grasp. Inputs one sample, metres."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from miho import metrics
from miho.geometry import closest_points, point_triangle_distance
from miho.mesh import Meshes
from miho.viz import plot
from miho.voxels import intersection_voxels


def _object_traces(obj_verts, obj_faces, opacity=0.35):
    return plot.mesh_trace(obj_verts, obj_faces, color="#6baed6", opacity=opacity, name="object")


def _one_object(obj_verts, obj_faces, dtype) -> Meshes:
    return Meshes.from_list([(obj_verts, obj_faces)], dtype=dtype)


def penetration_figure(hand_verts, hand_faces, obj_verts, obj_faces):
    """Hand vertices inside the object, coloured by their depth (distance to the surface), as
    :func:`miho.metrics.vertex_penetration` finds them; the title gives PD."""
    inside, depth = metrics.vertex_penetration(hand_verts[None], _one_object(obj_verts, obj_faces, hand_verts.dtype))
    inside = inside[0]
    d = (depth[0, inside] * metrics.M_TO_MM).detach().cpu()
    pts = (hand_verts[inside] * plot.MM).detach().cpu().numpy()
    traces = [
        plot.mesh_trace(hand_verts, hand_faces, opacity=0.25),
        _object_traces(obj_verts, obj_faces),
        go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", name="inside vertices",
                     marker=dict(size=3, color=d.numpy(), colorscale="Reds", colorbar=dict(title="depth (mm)")),
                     text=[f"{x:.1f} mm" for x in d.tolist()], hoverinfo="text"),
    ]  # fmt: skip
    pd = float(depth.amax() * metrics.M_TO_MM)
    return plot.figure(traces, title=f"penetration depth: {pd:.1f} mm ({int(inside.sum())} vertices inside)")


def intersection_figure(hand, hand_verts, obj_verts, obj_faces, resolution=40):
    """The object voxels inside the closed hand (their centres), and the SIV they make
    (:func:`miho.voxels.intersection_voxels`)."""
    cv, cf = hand.closed(hand_verts[None])
    found = intersection_voxels(cv, cf, _one_object(obj_verts, obj_faces, hand_verts.dtype), resolution=resolution)
    siv = float(found.volumes()[0] * metrics.M3_TO_CM3)
    v = (found.centres()[0] * plot.MM).detach().cpu().numpy()
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
    """Fingertip-region vertices joined to their closest object surface points; the title gives DD."""
    tris = obj_verts[obj_faces][None].to(hand_verts.dtype)
    tips = hand_verts[tip_mask][None]
    dist, face = point_triangle_distance(tips, tris)
    closest = closest_points(tips, tris, face)[0]
    sel = slice(None, None, every)
    traces = [
        plot.mesh_trace(hand_verts, hand_faces, opacity=0.3),
        _object_traces(obj_verts, obj_faces, opacity=0.5),
        plot.segments_trace(tips[0, sel], closest[sel], color="#2ca02c", width=3, name="to the surface"),
    ]
    dd = float(dist.mean() * metrics.M_TO_MM)
    return plot.figure(traces, title=f"disjointedness: {dd:.1f} mm (mean over {tips.shape[1]} "
                                     f"fingertip vertices, every {every}th drawn)")  # fmt: skip


def simulation_figure(trace: np.ndarray, time_step: float = 1 / 240):
    """The object's centre of mass over a simulation: displacement against time."""
    d = np.linalg.norm(trace - trace[0], axis=1) * metrics.M_TO_MM
    t = np.arange(len(trace)) * time_step * 1000
    fig = go.Figure(go.Scatter(x=t, y=d, mode="lines+markers", name="displacement"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="time (ms)",
                      yaxis_title="displacement of the centre (mm)",
                      title=f"simulation displacement: {d[-1]:.1f} mm after {len(trace) - 1} steps")  # fmt: skip
    return fig
