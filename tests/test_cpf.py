"""The Contact Potential Field: energies by hand-worked numbers, ground-truth annotation against a
brute-force reference, batching and masking."""

import math

import numpy as np
import pytest
import torch

from miho import cpf as C
from miho.anchors import NUM_REGIONS, hand_regions
from miho.hand import load_hand
from miho.mesh import Meshes, icosphere


def _field(vc, cr, ae):
    return C.CPF(torch.tensor([vc], dtype=torch.float64), torch.tensor([cr]), torch.tensor([ae], dtype=torch.float64))


def test_elasticity_eq4():
    d = torch.tensor([0.0, 0.005, 0.01, 0.0199, 0.02, 0.05], dtype=torch.float64)
    k = C.elasticity(d)
    assert k[0] == 1.0 and k[2] == pytest.approx(0.5) and k[1] == pytest.approx(0.5 * math.cos(math.pi / 4) + 0.5)
    assert 0 < k[3] < 1e-3 and k[4] == 0 and k[5] == 0


def test_attraction_by_hand():
    anchors = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.1, 0.0]]], dtype=torch.float64)
    region = torch.tensor([3, 7])
    obj = torch.tensor([[[0.01, 0.0, 0.0], [0.0, 0.0, 0.02], [0.0, 0.13, 0.0], [0.5, 0.5, 0.5]]], dtype=torch.float64)
    field = _field([1.0, 0.7, 0.9, 1.0], [3, 3, 7, 5], [0.5, 1.0, 0.2, 1.0])
    e = C.attraction_energy(anchors, obj, field, region)
    # vertex 0: 0.5*0.5*0.01^2; vertex 1 below t_vc; vertex 2: 0.5*0.2*0.03^2; vertex 3: no anchor in region 5.
    assert e.item() == pytest.approx(0.5 * 0.5 * 1e-4 + 0.5 * 0.2 * 9e-4)
    mask = torch.tensor([[True, True, False, True]])
    assert C.attraction_energy(anchors, obj, field, region, mask).item() == pytest.approx(0.5 * 0.5 * 1e-4)
    w = torch.tensor([1.0, 0.1], dtype=torch.float64)
    assert C.attraction_energy(anchors, obj, field, region, anchor_weight=w).item() == pytest.approx(
        0.5 * 0.5 * 1e-4 + 0.1 * 0.5 * 0.2 * 9e-4
    )


def test_repulsion_by_hand():
    obj = torch.zeros(1, 1, 3, dtype=torch.float64)
    normal = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)
    hand = torch.tensor(
        [[[0.0, 0.0, 0.01], [0.0, 0.0, -0.005], [0.0, 0.015, 0.0], [0.0, 0.0, 0.03]]], dtype=torch.float64
    )
    e = C.repulsion_energy(hand, obj, normal, k_rpl=1e-3, t_rpl=0.02)
    expected = 0.5e-3 * (math.exp(-0.02) + math.exp(0.01) + 1.0)  # the 4th is beyond 20 mm
    assert e.item() == pytest.approx(expected)
    # A smaller length scale makes the spring stiffer inside the object.
    inside = C.repulsion_energy(hand[:, 1:2], obj, normal, scale=0.005)
    assert inside.item() == pytest.approx(0.5e-3 * math.exp(2.0))


def test_nearest_neighbour_repulsion_matches_dense():
    hand = load_hand(dtype=torch.float64)
    verts = hand(hand.zero_pose()).vertices
    v, f = icosphere(0.03, 2, dtype=torch.float64)
    obj = Meshes.from_list([(v + torch.tensor([-0.03, 0.08, 0.0], dtype=torch.float64), f)], dtype=torch.float64)
    n = obj.normals()
    dense = C.repulsion_energy(verts, obj.verts, n)
    knn_all = C.repulsion_energy(verts, obj.verts, n, neighbours=hand.num_vertices)
    knn_50 = C.repulsion_energy(verts, obj.verts, n, neighbours=50)
    assert dense.item() > 0
    assert knn_all.item() == pytest.approx(dense.item(), rel=1e-12)
    assert knn_50.item() <= dense.item() and knn_50.item() > 0.5 * dense.item()


def _brute_force_annotation(hand_verts, obj_verts, regions, s=0.02, k=32):
    """Reference: loops in numpy over object vertices."""
    palm = np.nonzero(regions.palm_side.numpy())[0]
    hv, labels = hand_verts[palm], regions.labels.numpy()[palm]
    anchors = regions.anchors(torch.as_tensor(hand_verts)[None])[0].numpy()
    out = []
    for v in obj_verts:
        d = np.linalg.norm(hv - v, axis=1)
        near = np.argsort(d)[:k]
        close = near[d[near] < s]
        if len(close) == 0:
            out.append((0.0, -1, 0.0))
            continue
        votes = np.zeros(NUM_REGIONS)
        for i in close:
            votes[labels[i]] += s - d[i]
        r = int(votes.argmax())
        da = np.linalg.norm(anchors[regions.anchor_region.numpy() == r] - v, axis=1).min()
        out.append((1.0, r, 0.5 * np.cos(np.pi * da / s) + 0.5 if da < s else 0.0))
    return out


def test_annotation_matches_brute_force():
    hand = load_hand(dtype=torch.float64)
    regions = hand_regions(hand)
    verts = hand(hand.zero_pose()).vertices
    v, f = icosphere(0.035, 2, dtype=torch.float64)
    obj = (v + torch.tensor([-0.045, 0.09, 0.0], dtype=torch.float64))[None]  # against the palm
    field = C.annotate(verts, obj, regions)
    ref = _brute_force_annotation(verts[0].numpy(), obj[0].numpy(), regions)
    vc, cr, ae = (np.array(x) for x in zip(*ref))
    assert 10 < vc.sum() < len(vc)  # some, not all, vertices touch
    np.testing.assert_array_equal(field.vc[0].numpy(), vc)
    np.testing.assert_array_equal(field.cr[0].numpy(), cr)
    np.testing.assert_allclose(field.ae[0].numpy(), ae, atol=1e-12)
    assert set(cr[cr >= 0]) <= set(range(NUM_REGIONS))


def test_annotation_batched_and_masked():
    hand = load_hand(dtype=torch.float64)
    regions = hand_regions(hand)
    g = torch.Generator().manual_seed(0)
    verts = hand(0.2 * torch.randn(2, 16, 3, generator=g, dtype=torch.float64)).vertices
    small = icosphere(0.03, 1, dtype=torch.float64)
    big = icosphere(0.04, 2, dtype=torch.float64)
    place = torch.tensor([-0.04, 0.09, 0.0], dtype=torch.float64)
    objs = Meshes.from_list([(small[0] + place, small[1]), (big[0] + place, big[1])], dtype=torch.float64)
    both = C.annotate(verts, objs.verts, regions, objs.vert_mask)
    for i, (v, _) in enumerate((small, big)):
        one = C.annotate(verts[i : i + 1], (v + place)[None], regions)
        n = len(v)
        assert torch.equal(both.cr[i, :n], one.cr[0]) and torch.allclose(both.ae[i, :n], one.ae[0])
        assert (both.vc[i, n:] == 0).all() and (both.cr[i, n:] == -1).all()


def test_cpf_accepts_region_probabilities_and_checks_shapes():
    probs = torch.zeros(1, 2, NUM_REGIONS)
    probs[0, 0, 4] = probs[0, 1, 16] = 1.0
    field = C.CPF(torch.ones(1, 2), probs, torch.ones(1, 2))
    assert field.cr.tolist() == [[4, 16]]
    with pytest.raises(ValueError, match="cr probabilities"):
        C.CPF(torch.ones(1, 2), torch.zeros(1, 2, 5), torch.ones(1, 2))
    with pytest.raises(ValueError, match="ae"):
        C.CPF(torch.ones(1, 2), torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        C.CPF(torch.tensor([[float("nan"), 1.0]]), torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2))


def test_energy_gradients_are_finite():
    hand = load_hand(dtype=torch.float64)
    regions = hand_regions(hand)
    pose = torch.zeros(1, 16, 3, dtype=torch.float64, requires_grad=True)
    out = hand(pose)
    v, f = icosphere(0.035, 2, dtype=torch.float64)
    obj = Meshes.from_list([(v + torch.tensor([-0.045, 0.09, 0.0], dtype=torch.float64), f)], dtype=torch.float64)
    field = C.annotate(out.vertices.detach(), obj.verts, regions)
    e = C.elastic_energy(out.vertices, regions.anchors(out.vertices), obj.verts, obj.normals(), field,
                         regions.anchor_region, neighbours=50)  # fmt: skip
    e.sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
