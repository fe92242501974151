"""Figures of the data chapter: the object gallery, rendered samples, dataset statistics."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import torch

from miho.anchors import NUM_REGIONS, REGION_NAMES
from miho.data import render as R
from miho.viz import plot


def object_gallery(objects, columns: int = 8, size: int = 160, seed: int = 0):
    """Every object rendered by the dataset's renderer from the same oblique view (object only,
    scaled to fill its tile); the title gives its name, split and longest side (cm)."""
    rows = (len(objects) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.75 * rows))
    rng = np.random.default_rng(seed)
    renderer = R.Renderer()
    direction = np.array([0.6, -0.8, 0.5])
    for ax, obj in zip(axes.ravel(), objects):
        v = obj.verts.double().numpy()
        r = float(np.linalg.norm(v, axis=1).max())
        dist = 2 * r * 300 / (0.85 * size)
        Rm, t = R.look_at(dist * direction / np.linalg.norm(direction), np.zeros(3), np.array([0.0, 0.0, 1.0]))
        cam = R.Camera(300, 300, size / 2, size / 2, size, size, Rm, t, near=0.01, far=dist + 2 * r)
        app = R.random_appearance(rng)
        app.background = np.ones((2, 3))
        img = renderer.render(None, (v, obj.faces.numpy(), obj.normals.double().numpy()), cam, app)
        ax.imshow(img["rgb"])
        ax.set_title(f"{obj.name}\n{obj.split}, {100 * obj.size:.0f} cm", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    renderer.close()
    fig.tight_layout()
    return fig


def samples_figure(samples: list[dict]):
    """One row per dataset sample: the image, its hand (red) / object (blue) mask over it with
    the projected 21 joints, and the depth map (metres)."""
    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 3 * len(samples)), squeeze=False)
    for row, s in zip(axes, samples):
        img = s["image"].permute(1, 2, 0).numpy()
        row[0].imshow(img)
        row[0].set_title(f"{s['obj_name']}, grasp {s['grasp']}, view {s['view']}", fontsize=8)
        overlay = img.copy()
        m = s["mask"].numpy()
        overlay[m == R.HAND] = 0.4 * overlay[m == R.HAND] + 0.6 * np.array([0.85, 0.15, 0.15])
        overlay[m == R.OBJECT] = 0.4 * overlay[m == R.OBJECT] + 0.6 * np.array([0.15, 0.35, 0.85])
        row[1].imshow(overlay)
        j = s["joints_2d"].numpy()
        row[1].scatter(j[:, 0], j[:, 1], s=6, c="yellow")
        row[1].set_title("masks and projected joints", fontsize=8)
        d = s["depth"].numpy()
        im = row[2].imshow(np.where(d > 0, d, np.nan), cmap="viridis")
        fig.colorbar(im, ax=row[2], fraction=0.046, label="depth (m)")
        row[2].set_title("depth", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    return fig


def grasps_per_object_figure(library) -> go.Figure:
    """Accepted grasps per object (bars), training and held-out test objects coloured apart."""
    counts = library.counts()
    names = sorted(counts, key=lambda n: (library.provenance["splits"][n], -counts[n]))
    colour = {"train": "#1f77b4", "test": "#ff7f0e"}
    fig = go.Figure()
    for split in ("train", "test"):
        sel = [n for n in names if library.provenance["splits"][n] == split]
        fig.add_bar(x=sel, y=[counts[n] for n in sel], name=f"{split} ({sum(counts[n] for n in sel)} grasps)",
                    marker_color=colour[split])  # fmt: skip
    fig.update_layout(title="accepted grasps per object", yaxis_title="grasps", height=380, xaxis_tickangle=-60,
                      margin=dict(l=40, r=10, t=40, b=120))  # fmt: skip
    return fig


def region_contact_figure(dataset, grasps: int = 200) -> go.Figure:
    """Share of the contact object vertices assigned to each hand subregion (ground-truth CR),
    over the first ``grasps`` grasps of a :class:`~miho.data.synthho.SynthHO`."""
    counts = torch.zeros(NUM_REGIONS)
    seen = sorted(set(dataset.grasps))[:grasps]
    for g in seen:
        cr = dataset.annotation(g).cr[0]
        counts += torch.bincount(cr[cr >= 0], minlength=NUM_REGIONS).float()
    share = (100 * counts / counts.sum()).tolist()
    fig = go.Figure(go.Bar(x=list(REGION_NAMES), y=share, marker_color=plot.REGION_COLORS[:NUM_REGIONS]))
    fig.update_layout(title=f"contact vertices per subregion ({len(seen)} grasps)", yaxis_title="% of contact vertices",
                      height=380, xaxis_tickangle=-45)  # fmt: skip
    return fig


__all__ = ["grasps_per_object_figure", "object_gallery", "region_contact_figure", "samples_figure"]
