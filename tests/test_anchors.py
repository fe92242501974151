"""Subregions and anchors computed by the paper's algorithm (Supp A.2-A.3)."""

import numpy as np
import pytest
import torch
import trimesh

from miho import anchors as A
from miho.geometry import ray_triangle_hits
from miho.hand import load_hand


@pytest.fixture(scope="module")
def hand():
    return load_hand(dtype=torch.float64)


@pytest.fixture(scope="module")
def regions(hand):
    return A.hand_regions(hand)


def _surface_distance(vertices, faces, anchor_faces, points):
    """Distance of each point to the hand surface, bounded above by its distance to its own
    triangle (plane distance, and trimesh's barycentric coordinates must lie in [0, 1]); also
    cross-checked against trimesh's closest point on the whole mesh."""
    tri = vertices[anchor_faces]  # (A, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    plane = np.abs(((points - tri[:, 0]) * n).sum(1))
    bary = trimesh.triangles.points_to_barycentric(tri, points)
    assert (bary > -1e-9).all() and (bary < 1 + 1e-9).all()
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    _, dist, _ = trimesh.proximity.closest_point(mesh, points)
    assert dist.max() < 1e-5  # trimesh's own closest point is accurate to about 1e-6 here
    return plane


def test_subregions_cover_the_hand(hand, regions):
    counts = torch.bincount(regions.labels, minlength=A.NUM_REGIONS)
    assert len(counts) == A.NUM_REGIONS and (counts > 0).all()
    assert regions.labels.shape == (hand.num_vertices,)
    # Every palm-side vertex has a label, and every region has palm-side vertices.
    assert (regions.labels[regions.palm_side] >= 0).all()
    assert (torch.bincount(regions.labels[regions.palm_side], minlength=A.NUM_REGIONS) > 0).all()
    # About half of the hand faces the palm side.
    assert 0.3 < regions.palm_side.float().mean() < 0.7


def test_labels_are_nearest_control_point(hand, regions):
    d = torch.cdist(hand.template, regions.control_points)
    assert torch.equal(regions.labels, regions.control_region[d.argmin(1)])
    # Control points: midpoints of the phalanges, thirds of the metacarpal links.
    j = hand(hand.zero_pose()).joints[0]
    assert torch.allclose(regions.control_points[1], 0.5 * (j[2] + j[3]))  # index middle phalanx
    assert torch.allclose(regions.control_points[15], j[0] + 2 / 3 * (j[1] - j[0]))  # palm, index
    assert torch.allclose(regions.control_points[19], j[0] + 1 / 3 * (j[1] - j[0]))  # carpal, index


def test_regions_agree_with_skinning(hand, regions):
    """Independent check: vertices skinned mainly to a finger joint are labelled with a region
    of that finger (the skin at the base of the fingers is skinned to the palm: not counted)."""
    owner = hand.weights.argmax(1)
    finger_of_joint = torch.tensor([-1] + [f for f in range(5) for _ in range(3)])
    lab = regions.labels
    sel = owner > 0
    agree = finger_of_joint[owner[sel]] == torch.where(lab[sel] < 15, lab[sel] // 3, -2)
    assert agree.float().mean() > 0.97


def test_thirty_two_anchors_in_the_paper_distribution(regions):
    per_region = torch.bincount(regions.anchor_region, minlength=A.NUM_REGIONS)
    expected = torch.ones(A.NUM_REGIONS, dtype=torch.long)
    expected[list(A.TIP_REGIONS)] = 3
    expected[A.PALM], expected[A.CARPAL] = 4, 3
    assert torch.equal(per_region, expected) and int(per_region.sum()) == 32
    assert regions.anchor_faces.shape == (32, 3) and regions.anchor_weights.shape == (32, 2)
    w = regions.anchor_weights
    assert (w >= 0).all() and (w.sum(1) <= 1 + 1e-12).all()


def test_fingertip_vertices_and_anchors(hand, regions):
    """tip_mask / tip_anchor against independent facts: the fingertip vertices of the hand, the
    skinning (fingertip regions are the distal phalanges) and the 3 cone anchors per fingertip."""
    mask = regions.tip_mask
    assert mask.shape == (hand.num_vertices,) and mask.dtype == torch.bool
    assert mask[hand.tip_vertices].all()
    distal = torch.isin(hand.weights.argmax(1), torch.tensor([3, 6, 9, 12, 15]))
    assert distal[mask].float().mean() > 0.9 and mask[distal].float().mean() > 0.95
    tip = regions.tip_anchor
    assert tip.shape == (32,) and tip.dtype == torch.bool and int(tip.sum()) == 15
    assert torch.bincount(regions.anchor_control_point[tip]).tolist() == [0, 0, 3, 0, 0, 3, 0, 0, 3, 0, 0, 3, 0, 0, 3]
    assert mask[regions.anchor_faces[tip]].all() and not mask[regions.anchor_faces[~tip]].any()


def test_anchors_lie_on_the_surface_and_on_the_palm_side(hand, regions):
    a = regions.anchors(hand.template[None])[0].numpy()
    dist = _surface_distance(hand.template.numpy(), hand.faces.numpy(), regions.anchor_faces.numpy(), a)
    assert dist.max() < 1e-6
    # Anchors belong to palm-side vertices of their own region (at least 2 of 3 triangle corners).
    corners = regions.anchor_faces
    assert (regions.palm_side[corners].sum(1) >= 2).all()
    same = (regions.labels[corners] == regions.anchor_region[:, None]).sum(1)
    assert (same >= 1).all()


def test_anchors_move_with_the_posed_surface(hand, regions):
    g = torch.Generator().manual_seed(5)
    pose = 0.4 * torch.randn(3, 16, 3, generator=g, dtype=torch.float64)
    verts = hand(pose, trans=torch.randn(3, 3, generator=g, dtype=torch.float64)).vertices
    a = regions.anchors(verts)
    for i in range(3):
        dist = _surface_distance(verts[i].numpy(), hand.faces.numpy(), regions.anchor_faces.numpy(), a[i].numpy())
        assert dist.max() < 1e-6
    # Linear in the vertices: gradients reach exactly the anchor triangles' vertices.
    v = verts[:1].clone().requires_grad_(True)
    regions.anchors(v).sum().backward()
    touched = (v.grad[0].abs().sum(1) > 0).nonzero()[:, 0]
    assert set(touched.tolist()) <= set(regions.anchor_faces.flatten().tolist())


def test_anchor_rays_match_trimesh(hand, regions):
    """Our ray caster agrees with trimesh's (an independent implementation)."""
    mesh = trimesh.Trimesh(hand.template.numpy(), hand.faces.numpy(), process=False)
    origins = regions.control_points[:15]
    dirs = torch.randn(15, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    face, t, _ = ray_triangle_hits(origins, dirs, hand.template, hand.faces)
    locs, ray_idx, _ = mesh.ray.intersects_location(origins.numpy(), dirs.numpy(), multiple_hits=True)
    for r in range(15):
        hits = locs[ray_idx == r]
        first = np.linalg.norm(hits - origins[r].numpy(), axis=1).min()
        assert abs(first - (t[r] * dirs[r].norm()).item()) < 1e-6


def test_deterministic_and_cached(hand, regions):
    again = A.hand_regions(load_hand(dtype=torch.float64))
    for k in vars(regions):
        assert torch.equal(getattr(regions, k), getattr(again, k))
    fresh = A._compute(hand)
    assert torch.equal(fresh.anchor_faces, regions.anchor_faces)


def test_reshaped_hand():
    """A differently shaped hand (larger, longer fingers) gets its own 32 anchors on its surface."""
    base = load_hand(dtype=torch.float64)
    other = base.reshaped(torch.tensor([0.8, 1.0, -0.5, 0.5, 0.0]))
    r = A.hand_regions(other)
    assert len(r.anchor_region) == 32
    a = r.anchors(other.template[None])[0].numpy()
    assert _surface_distance(other.template.numpy(), other.faces.numpy(), r.anchor_faces.numpy(), a).max() < 1e-6
    assert (torch.bincount(r.labels, minlength=17) > 0).all()


def test_bad_vertices_raise(regions):
    with pytest.raises(ValueError, match="vertices must have shape"):
        regions.anchors(torch.zeros(1609, 3))


def test_mano_layout_hand_with_another_topology(tmp_path):
    """A hand read by the MANO backend from a MANO-layout pickle, with another topology (the
    Anny mesh subdivided once: about 6400 vertices), gets 17 subregions and 32 anchors."""
    pytest.importorskip("scipy")
    from mano_synthetic import synthetic_arrays, write_mano_pickle

    from miho.hand import load_hand as load

    base = load_hand(dtype=torch.float64)
    v, f, attr = trimesh.remesh.subdivide(
        base.template.numpy(), base.faces.numpy(), vertex_attributes={"w": base.weights.numpy()}
    )
    write_mano_pickle(tmp_path / "MANO_RIGHT.pkl", synthetic_arrays(v, f, attr["w"], base.joints.numpy()))
    mano = load("mano", path=tmp_path, dtype=torch.float64)
    assert mano.num_vertices == len(v) > 6000
    r = A.hand_regions(mano)
    assert (torch.bincount(r.labels, minlength=17) > 0).all()
    per_region = torch.bincount(r.anchor_region, minlength=17)
    assert int(per_region.sum()) == 32 and per_region[list(A.TIP_REGIONS)].eq(3).all()
    g = torch.Generator().manual_seed(7)
    verts = mano(0.3 * torch.randn(2, 16, 3, generator=g, dtype=torch.float64)).vertices
    for i in range(2):
        a = r.anchors(verts[i : i + 1])[0].numpy()
        assert _surface_distance(verts[i].numpy(), mano.faces.numpy(), r.anchor_faces.numpy(), a).max() < 1e-6
