"""Figures of MIHO end to end: the input image beside the coarse (HoNet) and refined (GeO) grasps,
the object painted with PiCR's vertex contact. Static plotly, so they work in the rendered book and
in the self-contained page ``miho reconstruct`` writes."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from miho.viz.plot import SKIN, mesh_trace

__all__ = ["reconstruction_figure"]

OBJECT = "#8fb3d9"


def _scene_traces(hand_verts, hand_faces, obj_verts, obj_faces, vc=None) -> list:
    obj = (mesh_trace(obj_verts, obj_faces, name="object", intensity=vc, cmax=1.0, unit="VC") if vc is not None
           else mesh_trace(obj_verts, obj_faces, color=OBJECT, name="object"))  # fmt: skip
    return [mesh_trace(hand_verts, hand_faces, color=SKIN, name="hand"), obj]


def reconstruction_figure(image, hand_faces, recon, sample: int = 0, title: str = "") -> go.Figure:
    """Three panels for one sample of a :class:`miho.pipeline.Reconstruction`: the (3, H, W) image
    in [0, 1], HoNet's coarse grasp with the object coloured by PiCR's vertex contact, and GeO's
    refined grasp (camera frame; axes in millimetres)."""
    b = sample
    n = int(recon.objects.vert_mask[b].sum())
    nf = int(recon.objects.face_mask[b].sum())
    faces = recon.objects.faces[b, :nf]
    rgb = (np.clip(image.detach().cpu().permute(1, 2, 0).numpy(), 0, 1) * 255).astype(np.uint8)
    fig = make_subplots(rows=1, cols=3, specs=[[{"type": "xy"}, {"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=("image", "HoNet (object: PiCR's contact)", "after GeO"),
                        column_widths=[0.3, 0.35, 0.35])  # fmt: skip
    fig.add_trace(go.Image(z=rgb), row=1, col=1)
    coarse = _scene_traces(recon.coarse["hand_verts"][b], hand_faces, recon.objects.verts[b, :n], faces,
                           recon.field.vc[b, :n])  # fmt: skip
    refined = _scene_traces(recon.refined.hand_verts[b], hand_faces, recon.refined.obj_verts[b, :n], faces)
    for col, traces in ((2, coarse), (3, refined)):
        for tr in traces:
            fig.add_trace(tr, row=1, col=col)
    axis = lambda a: dict(title=f"{a} (mm)", showbackground=False)  # noqa: E731
    camera = dict(eye=dict(x=0.0, y=-0.3, z=-2.0), up=dict(x=0, y=-1, z=0))  # looking along +z, as the camera
    fig.update_scenes(aspectmode="data", xaxis=axis("x"), yaxis=axis("y"), zaxis=axis("z"), camera=camera)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_layout(title=title, height=460, margin=dict(l=0, r=0, t=60, b=0), showlegend=False)
    return fig
