"""Figures of MIHO end to end: the input image beside the coarse (HoNet) and refined (GeO) grasps,
the object painted with PiCR's vertex contact. Static plotly, so they work in the rendered book and
in the self-contained page ``miho reconstruct`` writes.

The chapter "MIHO end to end" also uses the helpers below: HoNet's grasp projected onto the image
(:func:`overlay_figure`), PiCR's field beside the ground truth (:func:`field_figure`), the metrics
before and after GeO (:func:`score`, :func:`metrics_markdown`), a slider over several samples
(:func:`samples_slider_figure`) and a live widget (:func:`pipeline_explorer`, :func:`run_sample`).
Inputs are in metres; axes and tables in millimetres (SIV in cm^3), image axes in pixels.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from miho import metrics
from miho.mesh import Meshes
from miho.tables import markdown_table
from miho.viz.plot import SKIN, mesh_trace

__all__ = ["CAMERA", "batch_objects", "field_figure", "metrics_markdown", "overlay_figure", "pipeline_explorer",
           "project", "reconstruction_figure", "run_sample", "sample_names", "samples_slider_figure", "score",
           "take"]  # fmt: skip

OBJECT = "#8fb3d9"
TRUTH = "#2ca02c"
#: Looking along +z with y down, as the camera that took the image does.
CAMERA = dict(eye=dict(x=0.0, y=-0.3, z=-2.0), up=dict(x=0, y=-1, z=0))
#: Colours of the layers of :func:`overlay_figure` in the chapter (HoNet's hand, object, the true hand).
LAYER_COLORS = {"hand": "#ff7f0e", "object": "#1f77b4", "truth": TRUTH}


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _rgb(image) -> np.ndarray:
    """(3, H, W) floats in [0, 1] -> (H, W, 3) uint8."""
    return (np.clip(_np(image).transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def _scene_axes(fig: go.Figure) -> None:
    axis = lambda a: dict(title=f"{a} (mm)", showbackground=False)  # noqa: E731
    fig.update_scenes(aspectmode="data", xaxis=axis("x"), yaxis=axis("y"), zaxis=axis("z"), camera=CAMERA)


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
    fig = make_subplots(rows=1, cols=3, specs=[[{"type": "xy"}, {"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=("image", "HoNet (object: PiCR's contact)", "after GeO"),
                        column_widths=[0.3, 0.35, 0.35])  # fmt: skip
    fig.add_trace(go.Image(z=_rgb(image)), row=1, col=1)
    coarse = _scene_traces(recon.coarse["hand_verts"][b], hand_faces, recon.objects.verts[b, :n], faces,
                           recon.field.vc[b, :n])  # fmt: skip
    refined = _scene_traces(recon.refined.hand_verts[b], hand_faces, recon.refined.obj_verts[b, :n], faces)
    for col, traces in ((2, coarse), (3, refined)):
        for tr in traces:
            fig.add_trace(tr, row=1, col=col)
    _scene_axes(fig)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_layout(title=title, height=460, margin=dict(l=0, r=0, t=60, b=0), showlegend=False)
    return fig


def project(points, K) -> np.ndarray:
    """(N, 3) camera-frame points (metres) through (3, 3) pinhole intrinsics -> (N, 2) pixel
    coordinates (u right, v down; pixel centres at integer + 0.5, as in :mod:`miho.pipeline`).
    Points not in front of the camera (z <= 0) give NaN."""
    p, K = _np(points).astype(np.float64), _np(K).astype(np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or K.shape != (3, 3):
        raise ValueError(f"project needs (N, 3) points and (3, 3) intrinsics, got {p.shape} and {K.shape}")
    h = p @ K.T
    depth = np.where(h[:, 2:3] > 0, h[:, 2:3], np.nan)
    return h[:, :2] / depth


def _thin(points: np.ndarray, most: int) -> np.ndarray:
    """At most ``most`` rows of ``points``, evenly spaced."""
    if len(points) <= most:
        return points
    return points[np.linspace(0, len(points) - 1, most).round().astype(int)]


def overlay_figure(image, K, layers: dict, title: str = "", max_points: int = 400, height: int = 380) -> go.Figure:
    """The (3, H, W) image in [0, 1] twice: as it is, and with point sets projected onto it.

    Args:
        image: (3, H, W) in [0, 1]. K: its (3, 3) intrinsics.
        layers: name -> ((N, 3) camera-frame points in metres, colour); each thinned evenly to at
            most ``max_points`` markers.
    The right panel reaches past the image where the points do (up to half an image each side);
    axes in pixels.
    """
    rgb = _rgb(image)
    H, W = rgb.shape[:2]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("image", "projected with the image's K"),
                        horizontal_spacing=0.06)  # fmt: skip
    uv_all = [np.zeros((0, 2))]
    for col in (1, 2):
        fig.add_trace(go.Image(z=rgb, x0=0.5, y0=0.5, dx=1, dy=1, hoverinfo="skip"), row=1, col=col)
    for name, (points, colour) in layers.items():
        uv = project(_thin(_np(points), max_points), K)
        uv = uv[np.isfinite(uv).all(1)]
        uv_all.append(uv)
        fig.add_trace(go.Scatter(x=uv[:, 0], y=uv[:, 1], mode="markers", name=name, hoverinfo="name",
                                 marker=dict(size=3, color=colour, opacity=0.7)), row=1, col=2)  # fmt: skip
    uv = np.concatenate(uv_all)
    lo = np.clip(np.minimum(uv.min(0) - 2, 0) if len(uv) else np.zeros(2), -0.5 * np.array([W, H]), 0)
    hi = np.clip(np.maximum(uv.max(0) + 2, [W, H]) if len(uv) else np.array([W, H]), [W, H], 1.5 * np.array([W, H]))
    fig.update_xaxes(range=[0, W], row=1, col=1)
    fig.update_yaxes(range=[H, 0], scaleanchor="x", row=1, col=1)
    fig.update_xaxes(range=[lo[0], hi[0]], row=1, col=2)
    fig.update_yaxes(range=[hi[1], lo[1]], scaleanchor="x2", row=1, col=2)
    fig.update_xaxes(title="u (pixels)", showgrid=False, zeroline=False)
    fig.update_yaxes(title="v (pixels)", showgrid=False, zeroline=False)
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=60 if title else 40, b=10),
                      legend=dict(itemsizing="constant"))  # fmt: skip
    return fig


def field_figure(obj_verts, obj_faces, vc, hand_verts=None, hand_faces=None, true_vc=None, title: str = "",
                 height: int = 460) -> go.Figure:  # fmt: skip
    """An object (camera frame, metres; its (F, 3) faces) painted with the vertex-contact
    probabilities ``vc`` (N,) in [0, 1], with the hand it was predicted beside as a faint ghost
    (optional); with ``true_vc`` (N,) a second panel paints the ground truth the same way."""
    panels = 1 if true_vc is None else 2
    titles = ("PiCR: vertex-contact probability", "ground truth (1: in contact)")[:panels]
    fig = make_subplots(rows=1, cols=panels, specs=[[{"type": "scene"}] * panels], subplot_titles=titles)
    for col, values in enumerate([vc, true_vc][:panels], start=1):
        tr = mesh_trace(obj_verts, obj_faces, name="object", intensity=values, cmax=1.0, unit="VC")
        tr.showscale = col == 1
        fig.add_trace(tr, row=1, col=col)
        if hand_verts is not None:
            fig.add_trace(mesh_trace(hand_verts, hand_faces, color=SKIN, opacity=0.3, name="hand"), row=1, col=col)
    _scene_axes(fig)
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=60 if title else 40, b=0), showlegend=False)
    return fig


def batch_objects(batch: dict) -> tuple[Meshes, Meshes]:
    """The objects of a :meth:`~miho.train.picr_data.PiCRData.batch`: in their own frame (what MIHO
    is given: the shape, not the pose) and at their true pose in the camera frame (the ground truth)."""
    canonical = Meshes(batch["obj_canonical"], batch["obj_faces"], batch["obj_mask"], batch["obj_face_mask"])
    return canonical, canonical.with_verts(batch["obj_verts"])


def score(hand, recon, batch: dict, resolution: int = 40, truth: bool = False) -> dict:
    """The paper's metrics (:func:`miho.metrics.evaluate`: HE, OE, PD, DD in mm, SIV in cm^3) of a
    :class:`~miho.pipeline.Reconstruction`'s coarse and refined grasps against the ground truth of
    the ``batch`` it was computed from: ``{"HoNet": table, "after GeO": table}``, and ``"truth"``
    (the data's own grasp: HE = OE = 0) with ``truth``."""
    true_hand = hand(batch["hand_pose"], batch["hand_shape"], batch["hand_trans"]).vertices
    common = dict(hand=hand, gt_hand_verts=true_hand, gt_obj_verts=batch["obj_verts"], resolution=resolution)
    tables = {
        "HoNet": metrics.evaluate(recon.coarse["hand_verts"], recon.objects, **common),
        "after GeO": metrics.evaluate(recon.refined.hand_verts, recon.objects.with_verts(recon.refined.obj_verts),
                                      **common),
    }  # fmt: skip
    if truth:
        tables["truth"] = metrics.evaluate(true_hand, batch_objects(batch)[1], **common)
    return tables


def take(table, samples) -> "metrics.MetricTable":
    """The rows ``samples`` (an int, a list or a slice) of a :class:`~miho.metrics.MetricTable`."""
    if isinstance(samples, int):
        samples = [samples]
    return metrics.MetricTable({k: v[samples] for k, v in table.columns.items()}, dict(table.units))


def metrics_markdown(tables: dict, sample: int | None = None, first: str = "grasp", floatfmt: str = ".1f") -> str:
    """A Markdown table of named :class:`~miho.metrics.MetricTable`s, one row each: the mean of each
    metric over the samples, or sample ``sample``'s value; the units (mm, cm^3) in the header."""
    if not tables:
        raise ValueError("tables is empty")
    head = next(iter(tables.values()))
    names = list(head.columns)
    rows = []
    for label, t in tables.items():
        values = t.mean() if sample is None else {k: float(t[k][sample]) for k in names}
        rows.append([label, *[values[k] for k in names]])
    return markdown_table([first, *[f"{k} ({head.units.get(k, 'mm')})" for k in names]], rows, floatfmt)


def samples_slider_figure(hand_faces, recon, true_hand_verts, labels=None, title: str = "",
                          height: int = 480) -> go.Figure:  # fmt: skip
    """HoNet's grasp (left) and GeO's (right) of each sample of a :class:`~miho.pipeline.Reconstruction`,
    the true hand as a green ghost in both; a slider (static plotly frames) over the samples.
    ``true_hand_verts``: (B, V, 3) metres; ``labels``: one per sample."""
    B = recon.objects.batch
    labels = [str(x) for x in (labels if labels is not None else range(B))]
    if len(labels) != B:
        raise ValueError(f"labels must name the {B} samples, got {len(labels)}")
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}] * 2],
                        subplot_titles=("HoNet (coarse)", "after GeO (refined)"))  # fmt: skip
    frames = []
    for b in range(B):
        n, nf = int(recon.objects.vert_mask[b].sum()), int(recon.objects.face_mask[b].sum())
        faces = recon.objects.faces[b, :nf]
        ghost = mesh_trace(true_hand_verts[b], hand_faces, color=TRUTH, opacity=0.25, name="true hand")
        left = [mesh_trace(recon.coarse["hand_verts"][b], hand_faces, name="hand"),
                mesh_trace(recon.objects.verts[b, :n], faces, color=OBJECT, name="object"), ghost]  # fmt: skip
        right = [mesh_trace(recon.refined.hand_verts[b], hand_faces, name="hand"),
                 mesh_trace(recon.refined.obj_verts[b, :n], faces, color=OBJECT, name="object"), ghost]  # fmt: skip
        frames.append(go.Frame(data=left + right, name=labels[b], traces=list(range(6))))
        if b == 0:
            for col, traces in ((1, left), (2, right)):
                for tr in traces:
                    fig.add_trace(tr, row=1, col=col)
    fig.frames = frames
    step = lambda lb: dict(label=lb, method="animate", args=[[lb], dict(  # noqa: E731
        mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))])  # fmt: skip
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=60 if title else 40, b=0), showlegend=False,
                      sliders=[dict(currentvalue=dict(prefix="sample: "), pad=dict(t=10),
                                    steps=[step(lb) for lb in labels])])  # fmt: skip
    _scene_axes(fig)
    return fig


def sample_names(data) -> list[str]:
    """ "<index>: <object name>" for every sample of a :class:`~miho.train.picr_data.PiCRData`."""
    return [f"{i}: {data.names[int(data.obj_of_grasp[g])]}" for i, g in enumerate(data.grasp.tolist())]


def run_sample(data, index: int, mode: str, honet, picr, hand, t_vc: float, iterations: int = 60,
               resolution: int = 40) -> tuple[go.Figure, str]:  # fmt: skip
    """Sample ``index`` of a :class:`~miho.train.picr_data.PiCRData` through MIHO (GeO in ``mode``,
    ``iterations``, VC threshold ``t_vc``): the :func:`reconstruction_figure` and a Markdown table
    of the metrics before and after GeO (mm, cm^3)."""
    from miho.pipeline import reconstruct

    if not 0 <= index < len(data):
        raise ValueError(f"index must be in [0, {len(data)}), got {index}")
    b = data.batch(torch.tensor([index]))
    objects, _ = batch_objects(b)
    recon = reconstruct(b["image"], b["K"], objects, mode=mode, honet=honet, picr=picr, hand=hand, t_vc=t_vc,
                        iterations=iterations)  # fmt: skip
    title = f"sample {sample_names(data)[index]}: GeO in {mode} mode, {iterations} iterations"
    fig = reconstruction_figure(b["image"][0], hand.faces, recon, 0, title=title)
    note = " (GeO skipped it: too few vertices above t_vc)" if bool(recon.refined.skipped[0]) else ""
    return fig, f"{title}{note}\n\n{metrics_markdown(score(hand, recon, b, resolution))}"


def pipeline_explorer(data, honet, picr, hand, t_vc: float, iterations: int = 60, resolution: int = 40):
    """An ipywidgets panel (needs a running kernel): pick a sample of ``data`` and GeO's mode and
    iterations, press *Run MIHO* to see :func:`run_sample`'s figure and metrics. Returns the
    ``VBox``; its ``run()`` attribute does what the button does."""
    import ipywidgets as W
    from IPython.display import Markdown, display

    from miho.pipeline import MODES

    sample = W.Dropdown(options=[(name, i) for i, name in enumerate(sample_names(data))], value=0, description="sample")
    mode = W.ToggleButtons(options=list(MODES), value="hand-object", description="GeO mode")
    steps = W.IntSlider(value=iterations, min=0, max=400, step=20, description="iterations", continuous_update=False)
    button = W.Button(description="Run MIHO", button_style="primary", icon="play")
    out = W.Output()

    def run(_=None):
        with out:
            out.clear_output(wait=True)
            print("running HoNet, PiCR and GeO ...")
            fig, text = run_sample(data, sample.value, mode.value, honet, picr, hand, t_vc, steps.value, resolution)
            out.clear_output(wait=True)
            display(fig)
            display(Markdown(text))

    button.on_click(run)
    box = W.VBox([W.HBox([sample, mode]), W.HBox([steps, button]), out])
    box.run = run
    return box
