"""Device hygiene of the hot paths, checked without a GPU.

A tensor made without ``device=`` lands on torch's default device: harmless on a CPU-only run,
a crash or a silent copy on a GPU. Here the default device is switched to ``meta`` (tensors
with shapes but no data) while every input stays on the CPU: arithmetic that mixes a
default-device tensor with the inputs then raises, and an index made on the default device
gives different numbers. Each hot path must give exactly the numbers it gives normally.
"""

import pytest
import torch

from miho import cpf, experiments, geo, metrics
from miho.amano import curl_pose, fit_to_joints
from miho.anchors import hand_regions
from miho.hand import load_hand
from miho.mesh import Meshes, cylinder, icosphere
from miho.synthesis import approach_pose, synthesize


@pytest.fixture(scope="module")
def scene():
    hand = load_hand()
    regions = hand_regions(hand)
    g = torch.Generator().manual_seed(0)
    shapes = [cylinder(0.03, 0.12, 16, 6), icosphere(0.035, 2)]  # small: the paths, not the sizes
    objs = Meshes.from_list([(v + torch.tensor([-0.05, 0.085, 0.0]), f) for v, f in shapes])
    pose = curl_pose(hand, 0.3).expand(2, -1, -1) + 0.05 * torch.randn(2, 16, 3, generator=g)
    trans = 0.004 * torch.randn(2, 3, generator=g)
    with torch.no_grad():
        near = hand(pose, trans=trans + torch.tensor([-0.006, 0.0, 0.0]))
    field = cpf.annotate(near.vertices, objs.verts, regions, objs.vert_mask)
    return hand, regions, objs, pose, trans, near, field


def _hot_paths(scene) -> dict[str, torch.Tensor]:
    hand, regions, objs, pose, trans, near, field = scene
    verts = near.vertices
    out = {"vertices": hand(pose, trans=trans).vertices.detach(), "anchors": regions.anchors(verts)}
    f = cpf.annotate(verts, objs.verts, regions, objs.vert_mask)
    out.update(vc=f.vc, cr=f.cr, ae=f.ae)
    out["rpl_exact"] = cpf.repulsion_energy(verts, objs.verts, objs.normals(), objs.vert_mask)
    out["rpl_knn"] = cpf.repulsion_energy(verts, objs.verts, objs.normals(), objs.vert_mask, neighbours=50)
    configs = {
        "cpf": {},
        "vanilla": dict(contact="vanilla"),
        "obman": dict(contact="obman", repulsion="obman"),
        "obman_normal": dict(contact="obman", repulsion="obman", obman_inside="normal"),
        "hand_mode": dict(mode="hand", optimize_shape=True),
    }
    for name, cfg in configs.items():
        res = geo.optimize(hand, pose, objs, field, trans=trans, iterations=2, config=geo.GeOConfig(**cfg))
        out[f"geo_{name}"] = torch.cat((res.hand_verts, res.obj_verts), 1)
    table = metrics.evaluate(verts, objs, hand=hand, resolution=12, voxel_cache=None)
    out.update({k: table[k] for k in table.columns})
    cv, cf = hand.closed(verts)
    inside = dict(object_inside="winding", hand_inside="winding")
    out["siv_winding"] = metrics.solid_intersection_volume(cv, cf, objs, 8, cache=metrics.VoxelCache(), **inside)
    fit_pose, fit = fit_to_joints(hand, near.joints21.detach(), anat_weight=1.0, steps=2)
    out["fit"] = torch.cat((fit_pose.flatten(1), fit["trans"]), 1).detach()
    a_pose, a_trans = approach_pose(hand, objs, trans.new_tensor([[1.0, 0.0, 0.0]] * 2), trans.new_zeros(2))
    out["approach"] = torch.cat((a_pose.flatten(1), a_trans), 1)
    grasps = synthesize(hand, objs, a_pose, a_trans, iterations=2)
    out["grasps"] = torch.cat((grasps.pose.flatten(1), grasps.trans), 1)
    rec = experiments.recovery_experiment(hand, objs, grasps.pose, grasps.trans, repeats=2, resolution=8, iterations=2)
    out.update({f"recovery_{k}": v for k, v in rec.after.columns.items()})
    return out


def test_no_tensor_is_made_on_the_default_device(scene):
    expected = _hot_paths(scene)
    assert (expected["PD"] > 0).all() and (expected["SIV"] > 0).all()  # the scene reaches every branch
    torch.set_default_device("meta")
    try:
        got = _hot_paths(scene)
    finally:
        torch.set_default_device(None)
    for name, want in expected.items():
        assert got[name].device == want.device, name
        assert torch.equal(got[name], want), name
