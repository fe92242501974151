"""Mesh utilities, grasp placement, perturbations and the CPF/GeO/metric figures."""

import math
import os

import numpy as np
import pybullet_data
import pytest
import torch
import trimesh

from miho import experiments, synthesis
from miho.hand import load_hand
from miho.mesh import Meshes, box, cylinder, icosphere, load_obj, row_ids, subdivide, vertex_normals


@pytest.mark.parametrize("shape", [icosphere(0.04, 2), cylinder(0.03, 0.1, 24, 8), box((0.05, 0.03, 0.02), 4)])
def test_procedural_shapes_are_closed_and_outward(shape):
    v, f = shape
    mesh = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    n = vertex_normals(v[None].double(), f[None])[0]
    assert ((n * (v.double() - v.double().mean(0))).sum(-1) > 0).float().mean() > 0.95  # outward


def test_cylinder_and_box_volumes():
    v, f = cylinder(0.03, 0.1, 64, 4, dtype=torch.float64)
    assert trimesh.Trimesh(v.numpy(), f.numpy()).volume == pytest.approx(math.pi * 0.03**2 * 0.1, rel=0.01)
    v, f = box((0.05, 0.03, 0.02), 3, dtype=torch.float64)
    assert trimesh.Trimesh(v.numpy(), f.numpy()).volume == pytest.approx(0.05 * 0.03 * 0.02, rel=1e-9)


def test_subdivide_and_load_obj():
    v, f = load_obj(os.path.join(pybullet_data.getDataPath(), "objects", "mug.obj"), dtype=torch.float64)
    ref = trimesh.load(os.path.join(pybullet_data.getDataPath(), "objects", "mug.obj"), force="mesh", process=False)
    assert len(v) == len(ref.vertices) and abs(trimesh.Trimesh(v.numpy(), f.numpy()).area - ref.area) < 1e-9
    v2, f2 = subdivide(v, f)
    assert len(f2) == 4 * len(f)
    m1 = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    m2 = trimesh.Trimesh(v2.numpy(), f2.numpy(), process=False)
    assert m2.area == pytest.approx(m1.area, rel=1e-9) and m2.euler_number == m1.euler_number


def test_meshes_padding_and_errors():
    a, b = icosphere(0.03, 1), box()
    m = Meshes.from_list([a, b])
    assert m.verts.shape == (2, len(b[0]), 3) and m.vert_mask[0].sum() == len(a[0])
    n = m.normals()
    assert (n[0, len(a[0]) :] == 0).all() and torch.allclose(n[0, : len(a[0])].norm(dim=-1), torch.ones(len(a[0])))
    with pytest.raises(ValueError, match="outside"):
        Meshes.from_list([(a[0], a[1] + 1000)])
    with pytest.raises(ValueError, match="NaN"):
        Meshes.from_list([(a[0] * float("nan"), a[1])])


def test_row_ids_number_equal_rows_like_torch_unique():
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 3, (500, 4), generator=g).double() * 0.5
    rows[7] = rows[300]
    _, want = torch.unique(rows, dim=0, return_inverse=True)
    assert torch.equal(row_ids(rows), want)
    assert torch.equal(row_ids(torch.tensor([[0.0, -0.0], [-0.0, 0.0]])), torch.tensor([0, 0]))


def test_approach_pose_faces_the_object_without_touching_it():
    hand = load_hand()
    objs = Meshes.from_list([synthesis.example_objects()["cylinder"], synthesis.example_objects()["ball"]])
    approach = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pose, trans = synthesis.approach_pose(hand, objs, approach, torch.tensor([1.5708, 0.0]))
    out = hand(pose, trans=trans)
    centre, normal, _ = synthesis.palm_frame(hand)
    for b in range(2):
        n = int(objs.vert_mask[b].sum())
        mesh = trimesh.Trimesh(objs.verts[b, :n].numpy(), objs.faces[b, : int(objs.face_mask[b].sum())].numpy())
        assert not mesh.contains(out.vertices[b].numpy()).any()
        R = out.transforms[b, 0, :3, :3]
        assert float((R @ normal) @ -approach[b]) > 0.99  # the palm looks at the object


def test_perturbation_magnitude_and_direction():
    hand = load_hand()
    objs = Meshes.from_list([synthesis.example_objects()["cylinder"]] * 64)
    pose, trans = synthesis.approach_pose(hand, objs[:1], torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0.0]))
    pose, trans = pose.expand(64, -1, -1), trans.expand(64, -1)
    p2, t2 = experiments.perturb_hands(hand, pose, trans, objs, cone=0.5, generator=torch.Generator().manual_seed(0))
    d = (t2 - trans).norm(dim=-1)
    assert d.min() >= 0.010 - 1e-7 and d.max() <= 0.020 + 1e-7
    palm = hand(pose, trans=trans).vertices.mean(1)
    inward = -palm / palm.norm(dim=-1, keepdim=True)  # the cylinder is centred at the origin
    cos = ((t2 - trans) / d[:, None] * inward).sum(-1)
    assert cos.min() >= math.cos(0.5) - 1e-5
    assert torch.equal(p2[:, 0], pose[:, 0]) and (p2[:, 1:] != pose[:, 1:]).any()


def test_chapter_figures_content():
    from miho import cpf
    from miho.viz import cpf_figures, metric_figures

    atr, rpl = cpf_figures.pair_energies(np.array([0.0, 10.0, 30.0]), k_atr=0.5, k_rpl=1e-3)
    np.testing.assert_allclose(atr, [0.0, 0.5 * 0.5 * 0.01**2, 0.5 * 0.5 * 0.03**2])
    np.testing.assert_allclose(rpl, [0.5e-3, 0.5e-3 * math.exp(-0.02), 0.0])  # beyond t_rpl: none
    fig = cpf_figures.energy_curves_figure()
    assert len(fig.layout.sliders) == 4 and len(fig.data) == 4
    k = cpf_figures.elasticity_figure().data[0]
    assert k.y[0] == 1.0 and k.y[-1] == 0.0
    trace = np.stack([[0.0, 0.0, -0.001 * i**2] for i in range(5)])
    assert metric_figures.simulation_figure(trace).data[0].y[-1] == pytest.approx(16.0)
    assert isinstance(cpf.S, float)
