"""Live ipywidgets explorers (they need a running kernel, e.g. JupyterLab).

Each explorer redraws a figure of :mod:`miho.viz.hand_figures` on every change; the rendered
book shows the static plotly equivalents instead.
"""

from __future__ import annotations

import ipywidgets as W
import torch
from IPython.display import display

from miho import amano
from miho.anchors import REGION_NAMES, HandRegions
from miho.hand.model import HandModel
from miho.viz import hand_figures as hf
from miho.viz import plot


def _explorer(controls: dict, draw) -> W.VBox:
    """Sliders / dropdowns in ``controls`` and an output area redrawn by ``draw(**values)`` on every
    change.

    The first drawing goes into the output area's state directly (its display protocol's bundle), not
    through ``with out:``: output captured into an ``Output`` while a notebook is being executed
    can leave nbclient waiting for its cell timeout (jupyter/nbclient#312; a book build once
    stalled 600 s on the hand model chapter's explorer). Changes, which only a live kernel makes,
    redraw through the capture."""
    out = W.Output()

    def values() -> dict:
        return {name: c.value for name, c in controls.items()}

    def redraw(_change=None):
        fig, text = draw(**values())
        with out:
            out.clear_output(wait=True)
            if text:
                print(text)
            display(fig)

    fig, text = draw(**values())
    if text:
        out.append_stdout(text + "\n")
    out.outputs += ({"output_type": "display_data", "data": fig._repr_mimebundle_(None, None), "metadata": {}},)
    for c in controls.values():
        c.observe(redraw, names="value")
    box = W.VBox([W.HBox(list(controls.values())[:3]), W.HBox(list(controls.values())[3:]), out])
    box.redraw = redraw
    return box


def draw_hand(hand: HandModel, curl: float, **shape: float):
    """Figure and caption of the hand explorer (shape coefficients and a curl)."""
    s = hf._shape(hand, shape)
    fig = plot.figure(hf.hand_traces(hand, hf.curl_pose(hand, curl, s), s, opacity=0.8), camera=plot.PALM_CAMERA)
    y = hand.shaped_rest(s)[0][0, :, 1]
    length = (y.max() - y.min()).item()
    return fig, f"hand extent along the fingers: {length * 1000:.1f} mm"


def hand_explorer(hand: HandModel) -> W.VBox:
    """Sliders for every shape coefficient and for closing the hand."""

    def slider(name, lo, hi):
        return W.FloatSlider(value=0.0, min=lo, max=hi, step=0.05, description=name, continuous_update=False)

    controls = {n: slider(n, -1.0, 1.0) for n in hand.shape_names}
    controls["curl"] = slider("curl", 0.0, 1.0)
    return _explorer(controls, lambda **v: draw_hand(hand, **v))


def draw_joint(hand: HandModel, joint: int, twist: float, splay: float, bend: float):
    """Figure and caption (L_anat) of one joint turned by (twist, splay, bend) degrees."""
    pose = hf.joint_pose(hand, joint, (twist, splay, bend))
    cost = amano.anatomical_loss(pose, amano.rest_frames(hand)).item()
    return plot.figure(hf.frames_traces(hand, pose), camera=plot.PALM_CAMERA), f"L_anat = {cost:.3f}"


def joint_explorer(hand: HandModel) -> W.VBox:
    """Pick a joint, turn it about its twist, splay and bend axes, and read L_anat."""

    def angle(axis):
        return W.FloatSlider(value=0.0, min=-90, max=120, step=5, description=f"{axis} (deg)", continuous_update=False)

    joints = [(n, j) for j, n in enumerate(hf.JOINT_NAMES) if j > 0]
    controls = {"joint": W.Dropdown(options=joints, value=2, description="joint"), **{a: angle(a) for a in hf.AXES}}
    return _explorer(controls, lambda **v: draw_joint(hand, **v))


def draw_region(hand: HandModel, regions: HandRegions, region: int):
    """Figure and caption of one highlighted subregion with its anchors."""
    n_v = int((regions.labels == region).sum())
    n_a = int((regions.anchor_region == region).sum())
    fig = plot.figure(hf.region_traces(hand, regions, highlight=region), camera=plot.PALM_CAMERA)
    return fig, f"{REGION_NAMES[region]}: {n_v} vertices, {n_a} anchor(s)"


def region_explorer(hand: HandModel, regions: HandRegions) -> W.VBox:
    """Pick one of the 17 subregions to see its vertices and anchors."""
    controls = {
        "region": W.Dropdown(options=[(n, r) for r, n in enumerate(REGION_NAMES)], value=2, description="region")
    }
    return _explorer(controls, lambda **v: draw_region(hand, regions, **v))


def draw_energy(k_atr: float, k_rpl: float, lateral: float, scale: float):
    """Figure and caption (equilibrium height) of one attractive and one repulsive spring."""
    import numpy as np
    import plotly.graph_objects as go

    from miho.viz.cpf_figures import pair_energies

    x = np.linspace(-10.0, 25.0, 701)
    atr, rpl = pair_energies(x, k_atr=k_atr, k_rpl=k_rpl, lateral=lateral, scale=scale)
    fig = go.Figure([go.Scatter(x=x, y=1e6 * e, name=n) for e, n in ((atr, "attraction"), (rpl, "repulsion"),
                                                                       (atr + rpl, "total"))])  # fmt: skip
    fig.update_layout(height=380, xaxis_title="height above the surface (mm)", yaxis_title="energy (10^-6)")
    return fig, f"equilibrium at {x[(atr + rpl).argmin()]:.2f} mm above the surface"


def energy_explorer() -> W.VBox:
    """Sliders for k_atr, k_rpl, the lateral offset and the exponential's length scale."""
    controls = {
        "k_atr": W.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, description="k_atr", continuous_update=False),
        "k_rpl": W.FloatLogSlider(value=1e-3, base=10, min=-4, max=-2, description="k_rpl", continuous_update=False),
        "lateral": W.FloatSlider(value=0.0, min=0.0, max=15.0, step=0.5, description="offset (mm)",
                                 continuous_update=False),
        "scale": W.FloatLogSlider(value=1.0, base=10, min=-3, max=0, description="scale (m)", continuous_update=False),
    }  # fmt: skip
    return _explorer(controls, draw_energy)


def draw_fields(model, data, sample: int, t_vc: float, hand_scale: float = 1.0):
    """Figure and caption: sample ``sample`` of ``data`` (a :class:`miho.train.picr_data.PiCRData`),
    its object at the coarse pose painted by ``model``'s field at ``t_vc`` and by the truth; a
    hand-aware model reads the coarse hand at ``hand_scale`` times the sample's fixed disturbance."""
    from miho.cpf import CPF
    from miho.train.picr import predict_batch
    from miho.viz.picr_figures import field_pair_traces

    b = data.batch(torch.tensor([sample]), pose="noisy")
    field = predict_batch(model, b, hand_scale)
    n, nf = int(b["obj_mask"][0].sum()), int(b["obj_face_mask"][0].sum())
    left, right = field_pair_traces(b["obj_verts"][0, :n], b["obj_faces"][0, :nf], field,
                                    CPF(b["vc"], b["cr"], b["ae"]), 0, n, t_vc)  # fmt: skip
    who = "hand-aware PiCR" if model.config.hand_aware else "PiCR"
    fig = plot.side_by_side([plot.figure(left), plot.figure(right)], [f"{who}, VC > {t_vc:.2f}", "ground truth"])
    pred, true = field.vc[0, :n] > t_vc, b["vc"][0, :n] > 0.5
    tp = int((pred & true).sum())
    text = (f"{data.names[int(data.obj_of_grasp[data.grasp[sample]])]}: {int(pred.sum())} vertices predicted in "
            f"contact, {int(true.sum())} true, {tp} both")  # fmt: skip
    return fig, text


def picr_explorer(model, data, t_vc: float = 0.8) -> W.VBox:
    """A sample picker and a t_vc slider over PiCR's field against the truth; for a hand-aware model
    also a slider of the coarse hand's disturbance (times the official jitter)."""
    controls = {
        "sample": W.Dropdown(options=list(range(len(data))), value=0, description="sample"),
        "t_vc": W.FloatSlider(value=t_vc, min=0.05, max=0.95, step=0.05, description="t_vc", continuous_update=False),
    }
    if model.config.hand_aware:
        from miho.train.picr import HAND_SCALES

        controls["hand_scale"] = W.SelectionSlider(options=list(HAND_SCALES), value=1.0,
                                                   description="hand noise x", continuous_update=False)  # fmt: skip
    return _explorer(controls, lambda **v: draw_fields(model, data, **v))
