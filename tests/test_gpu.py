"""CUDA versus CPU for every hot path. Skipped without a GPU.

Imports only torch, numpy and miho, so that on the GPU machines (which have neither trimesh nor
plotly nor pybullet) the file runs with ``PYTHONPATH=. python -m pytest -q tests/test_gpu.py``.
"""

import copy

import pytest
import torch

from miho import cpf, geo, metrics
from miho.amano import curl_pose
from miho.anchors import hand_regions
from miho.hand import load_hand
from miho.mesh import Meshes, box, cylinder, icosphere

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def hand():
    return load_hand()


def _scene(hand, batch=4):
    g = torch.Generator().manual_seed(0)
    shapes = [cylinder(0.03, 0.12, 32, 12), icosphere(0.035, 3), box((0.05, 0.05, 0.1), 8), cylinder(0.025, 0.1)]
    offset = torch.tensor([-0.05, 0.085, 0.0])
    objs = Meshes.from_list([(v + offset, f) for v, f in (shapes * batch)[:batch]])
    pose = curl_pose(hand, 0.3).expand(batch, -1, -1) + 0.05 * torch.randn(batch, 16, 3, generator=g)
    trans = 0.004 * torch.randn(batch, 3, generator=g)
    with torch.no_grad():
        near = hand(pose, trans=trans + torch.tensor([-0.006, 0.0, 0.0]))
    field = cpf.annotate(near.vertices, objs.verts, hand_regions(hand), objs.vert_mask)
    return pose, trans, objs, field


def _cuda_field(field):
    return cpf.CPF(field.vc.cuda(), field.cr.cuda(), field.ae.cuda())


def test_hand_and_anchors(hand):
    pose = 0.4 * torch.randn(64, 16, 3, generator=torch.Generator().manual_seed(1))
    cpu = hand(pose)
    gh = copy.deepcopy(hand).cuda()
    gpu = gh(pose.cuda())
    assert (cpu.vertices - gpu.vertices.cpu()).abs().max() < 1e-5
    a_cpu = hand_regions(hand).anchors(cpu.vertices)
    a_gpu = hand_regions(gh).anchors(gpu.vertices)
    assert (a_cpu - a_gpu.cpu()).abs().max() < 1e-5


def test_cpf_annotation_and_energies(hand):
    pose, trans, objs, field = _scene(hand)
    verts = hand(pose, trans=trans).vertices
    gh, go_ = copy.deepcopy(hand).cuda(), objs.to("cuda")
    f_gpu = cpf.annotate(verts.cuda(), go_.verts, hand_regions(gh), go_.vert_mask)
    f_cpu = cpf.annotate(verts, objs.verts, hand_regions(hand), objs.vert_mask)
    assert (f_gpu.cr.cpu() != f_cpu.cr).float().mean() < 0.01
    e_cpu = cpf.repulsion_energy(verts, objs.verts, objs.normals(), objs.vert_mask, neighbours=50)
    e_gpu = cpf.repulsion_energy(verts.cuda(), go_.verts, go_.normals(), go_.vert_mask, neighbours=50)
    assert torch.allclose(e_cpu, e_gpu.cpu(), rtol=1e-4)


def test_geo_matches_cpu(hand):
    pose, trans, objs, field = _scene(hand)
    cpu = geo.optimize(hand, pose, objs, field, trans=trans, iterations=30)
    gpu = geo.optimize(copy.deepcopy(hand).cuda(), pose.cuda(), objs.to("cuda"), _cuda_field(field), trans=trans.cuda(),
                       iterations=30)  # fmt: skip
    assert (gpu.hand_verts.cpu() - cpu.hand_verts).abs().max() < 1e-4
    assert torch.equal(gpu.skipped.cpu(), cpu.skipped)


def test_geo_batch_independence_on_gpu(hand):
    pose, trans, objs, field = _scene(hand)
    gh, go_, gf = copy.deepcopy(hand).cuda(), objs.to("cuda"), _cuda_field(field)
    together = geo.optimize(gh, pose.cuda(), go_, gf, trans=trans.cuda(), iterations=20)
    alone = geo.optimize(gh, pose[1:2].cuda(), go_[1], gf[1], trans=trans[1:2].cuda(), iterations=20)
    assert (together.hand_verts[1] - alone.hand_verts[0]).abs().max() < 1e-5


def test_metrics_match_cpu(hand):
    pose, trans, objs, _ = _scene(hand)
    verts = hand(pose, trans=trans + torch.tensor([-0.01, 0.0, 0.0])).vertices
    cpu = metrics.evaluate(verts, objs, hand=hand, resolution=80, voxel_cache=None)
    gpu = metrics.evaluate(
        verts.cuda(), objs.to("cuda"), hand=copy.deepcopy(hand).cuda(), resolution=80, voxel_cache=None
    )
    for k in cpu.columns:
        assert torch.allclose(cpu[k], gpu[k], rtol=1e-3, atol=5e-3), k  # SIV: a few voxels may flip
    # Open objects (a hole) go to the winding-number test, on the GPU as on the CPU.
    real = [objs.mesh(b) for b in range(3)]
    holed = Meshes.from_list([(v, f[5:]) for v, f in real[:2]] + real[2:])
    cv, cf = hand.closed(verts[:3])
    assert holed.closed().tolist() == holed.to("cuda").closed().cpu().tolist() == [False, False, True]
    siv_cpu = metrics.solid_intersection_volume(cv, cf, holed, cache=None)
    siv_gpu = metrics.solid_intersection_volume(cv.cuda(), cf.cuda(), holed.to("cuda"), cache=None)
    assert torch.allclose(siv_cpu, siv_gpu.cpu(), rtol=1e-3, atol=5e-3)
