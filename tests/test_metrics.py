"""Metrics of the paper (§6.2) against trimesh (an independent CPU implementation) and against
numbers known by hand.

Approximations and tolerances. Spheres are icospheres (vertices on the sphere, faces inside it):
their surface lies within the sagitta R (1 - cos(theta)) of the sphere, about 0.1 mm for R = 40
mm at 3 subdivisions, and their volume is about 1% below 4/3 pi R^3. SIV counts voxel centres,
so against an analytic volume it carries a discretisation error of a few % at 30-40 voxels per
axis; against trimesh's inside tests on the *same* voxel centres it must agree within 2% (the
two differ only for centres within rounding of a surface).
"""

import math

import numpy as np
import pytest
import torch
import trimesh

import miho.metrics as M
import miho.voxels as V
from miho.anchors import hand_regions
from miho.geometry import closest_points, knn, nearest_vertex, point_triangle_distance, winding_number
from miho.hand import load_hand
from miho.mesh import Meshes, box, icosphere, is_closed, weld
from miho.tables import markdown_table

F64 = torch.float64


# ---------------------------------------------------------------------- independent references
def _tm(v, f) -> trimesh.Trimesh:
    return trimesh.Trimesh(np.asarray(v, dtype=np.float64), np.asarray(f), process=False)


def _exact_closest(mesh: trimesh.Trimesh, pts: np.ndarray) -> np.ndarray:
    """Brute force over every triangle with trimesh's closest point on a triangle."""
    tri = mesh.triangles
    out = []
    for p in pts:
        q = trimesh.triangles.closest_point(tri, np.repeat(p[None], len(tri), 0))
        out.append(np.linalg.norm(q - p, axis=1).min())
    return np.asarray(out)


def _trimesh_pd(hand_v, obj: trimesh.Trimesh) -> float:
    inside = obj.contains(hand_v)
    if not inside.any():
        return 0.0
    _, d, _ = trimesh.proximity.closest_point(obj, hand_v[inside])
    return float(d.max() * 1000)


def _trimesh_siv(hand: trimesh.Trimesh, obj: trimesh.Trimesh, res: int) -> float:
    lo, hi = obj.bounds
    step = (hi - lo) / res
    axes = [lo[a] + (np.arange(res) + 0.5) * step[a] for a in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    inside = obj.contains(grid)
    inside[inside] = hand.contains(grid[inside])
    return float(inside.sum() * step.prod() * 1e6)


def _lens_volume(r1, r2, d) -> float:
    """Volume of the intersection of two balls (radii r1, r2, centres d apart), m^3."""
    return (
        math.pi
        * (r1 + r2 - d) ** 2
        * (d * d + 2 * d * r2 - 3 * r2 * r2 + 2 * d * r1 + 6 * r1 * r2 - 3 * r1 * r1)
        / (12 * d)
    )


def _sphere(radius, centre=(0, 0, 0), sub=3, dtype=F64):
    v, f = icosphere(radius, sub, dtype=dtype)
    return v + torch.tensor(centre, dtype=dtype), f


# ---------------------------------------------------------------------- geometry kernels
def test_point_triangle_distance_matches_trimesh():
    g = torch.Generator().manual_seed(0)
    for v, f in (_sphere(0.04, sub=2), box((0.06, 0.03, 0.02), divisions=3, dtype=F64)):
        pts = (torch.rand(300, 3, generator=g, dtype=F64) - 0.5) * 0.12
        near = v[:40] + 1e-4 * torch.randn(40, 3, generator=g, dtype=F64)  # close to vertices and edges
        pts = torch.cat((pts, near))
        d, face = point_triangle_distance(pts[None], v[f][None], chunk=5000)  # several blocks
        mesh = _tm(v, f)
        ref = _exact_closest(mesh, pts.numpy())
        assert np.abs(d[0].numpy() - ref).max() < 1e-6
        # trimesh.proximity.closest_point returns a surface point, so its distance is never smaller.
        _, approx, _ = trimesh.proximity.closest_point(mesh, pts.numpy())
        assert (d[0].numpy() <= approx + 1e-12).all() and np.median(np.abs(approx - d[0].numpy())) < 1e-9
        # The face index is the face the distance was measured to.
        one = trimesh.triangles.closest_point(mesh.triangles[face[0].numpy()], pts.numpy())
        assert np.abs(np.linalg.norm(one - pts.numpy(), axis=1) - d[0].numpy()).max() < 1e-9


def test_point_triangle_distance_degenerate_and_padded():
    tris = torch.tensor(
        [
            [[0, 0, 0], [1, 0, 0], [2, 0, 0]],  # collinear
            [[0, 0, 0], [0, 0, 0], [0, 0, 0]],  # a point
            [[0, 0, 0], [1, 1e-13, 0], [2, 0, 0]],  # a sliver
        ],
        dtype=F64,
    )
    p = torch.tensor([[0.5, 1, 0], [3, 0, 0], [-1, 0, 0], [1, 0, 2]], dtype=F64)[None]
    seg = torch.tensor([1.0, 1.0, 1.0, 2.0], dtype=F64)
    for k in (0, 2):
        d, face = point_triangle_distance(p, tris[None, k : k + 1])
        assert torch.isfinite(d).all() and torch.allclose(d[0], seg, atol=1e-12) and (face == 0).all()
    d, _ = point_triangle_distance(p, tris[None, 1:2])
    assert torch.allclose(d[0], p[0].norm(dim=-1))
    # Padded faces are ignored; a sample with no real face gives inf / -1.
    real = torch.tensor([[[5.0, 5, 5], [6, 5, 5], [5, 6, 5]]], dtype=F64)
    both = torch.cat((real, tris[:1]))[None]
    d, face = point_triangle_distance(p, both, torch.tensor([[True, False]]))
    assert (face == 0).all() and (d > 5).all()
    d, face = point_triangle_distance(p, both, torch.tensor([[False, False]]))
    assert torch.isinf(d).all() and (face == -1).all()


def test_winding_number_inside_outside_and_holes():
    v, f = _sphere(0.04, sub=2)
    g = torch.Generator().manual_seed(1)
    pts = (torch.rand(500, 3, generator=g, dtype=F64) - 0.5) * 0.1
    r = pts.norm(dim=-1)
    pts = pts[(r < 0.037) | (r > 0.043)]  # clear of the polygonal surface
    w = winding_number(pts[None], v[f][None], chunk=40000)[0]  # a few blocks
    inside = _tm(v, f).contains(pts.numpy())
    assert np.array_equal((w > 0.5).numpy(), inside)
    assert (w[inside] - 1).abs().max() < 1e-9 and w[~inside].abs().max() < 1e-9
    # Inward faces: -1 inside.
    assert torch.allclose(winding_number(pts[None], v[f[:, [0, 2, 1]]][None])[0], -w, atol=1e-12)
    # A hole (one face deleted): still near 1 deep inside, near 0 far outside; padding adds nothing.
    holed = v[f[1:]][None]
    centre = torch.zeros(1, 2, 3, dtype=F64)
    centre[0, 1] = torch.tensor([0.2, 0.0, 0.0])
    wh = winding_number(centre, holed)[0]
    assert wh[0] > 0.9 and abs(wh[1]) < 0.01
    padded = torch.cat((holed, torch.zeros(1, 7, 3, 3, dtype=F64)), 1)
    mask = torch.arange(padded.shape[1])[None] < holed.shape[1]
    assert torch.allclose(winding_number(centre, padded, mask)[0], wh)
    # Box, float32.
    bv, bf = box((0.05, 0.04, 0.03))
    q = torch.tensor([[[0.0, 0.0, 0.0], [0.02, 0.015, 0.01], [0.03, 0.0, 0.0], [0.0, 0.0, -0.02]]])
    wb = winding_number(q, bv[bf][None])[0]
    assert torch.allclose(wb, torch.tensor([1.0, 1.0, 0.0, 0.0]), atol=1e-4)


def test_closest_points_match_trimesh():
    g = torch.Generator().manual_seed(5)
    v, f = box((0.05, 0.03, 0.02), divisions=2, dtype=F64)
    tris = v[f][None]
    flat = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]], dtype=F64)[None]  # a degenerate triangle too
    pts = (torch.rand(1, 200, 3, generator=g, dtype=F64) - 0.5) * 0.1
    d, face = point_triangle_distance(pts, tris)
    q = closest_points(pts, tris, face)[0]
    ref = trimesh.triangles.closest_point(tris[0][face[0]].numpy(), pts[0].numpy())
    assert np.abs(q.numpy() - ref).max() < 1e-12
    assert torch.allclose((pts[0] - q).norm(dim=-1), d[0], atol=1e-12, rtol=0)
    on_seg = closest_points(torch.tensor([[[0.5, 1.0, 0.0], [3.0, 0.0, 0.0]]], dtype=F64), flat,
                            torch.zeros(1, 2, dtype=torch.long))  # fmt: skip
    assert torch.equal(on_seg[0], torch.tensor([[0.5, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=F64))


def test_knn_matches_a_full_sort_and_never_picks_padding():
    g = torch.Generator().manual_seed(6)
    pts = torch.rand(3, 50, 3, generator=g, dtype=F64)
    verts = torch.rand(3, 40, 3, generator=g, dtype=F64)
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[1, 30:] = False
    verts[1, 30:] = pts[1, :10]  # padding exactly on query points: distance 0, must not be chosen
    mask[2, 2:] = False  # two real vertices: the third neighbour does not exist
    full = (pts[:, :, None] - verts[:, None]).norm(dim=-1).masked_fill(~mask[:, None], float("inf"))
    want_d, want_i = full.sort(-1)
    for chunk in (None, 7, 100, 4000):  # row slices of one sample, and several samples at once
        d, i = knn(pts, verts, 3, mask, chunk=chunk)
        assert torch.allclose(d[:2], want_d[:2, :, :3], atol=1e-12, rtol=0) and torch.equal(i[:2], want_i[:2, :, :3])
        assert torch.equal(i[2, :, :2], want_i[2, :, :2]) and (i[2, :, 2] == -1).all() and torch.isinf(d[2, :, 2]).all()
    assert torch.equal(nearest_vertex(pts, verts, mask), want_i[..., 0])
    assert (nearest_vertex(pts, verts, mask)[1] < 30).all()


# ---------------------------------------------------------------------- MPVPE
def test_mpvpe_known_values():
    g = torch.Generator().manual_seed(2)
    gt = torch.randn(2, 50, 3, generator=g)
    shift = torch.tensor([0.003, 0.0, 0.004])  # 5 mm
    assert torch.allclose(M.mpvpe(gt + shift, gt), torch.tensor([5.0, 5.0]), atol=1e-3)
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[1, 25:] = False
    pred = gt + shift
    pred[1, 25:] += 1.0  # padding errors must not count
    assert torch.allclose(M.mpvpe(pred, gt, mask), torch.tensor([5.0, 5.0]), atol=1e-3)


# ---------------------------------------------------------------------- PD
def _overlapping_spheres(r1=0.04, r2=0.03, d=0.05, sub=3, dtype=F64):
    """Object sphere (r1) at the origin; hand sphere (r2) placed d away along the direction that
    puts one of its vertices exactly on the centre line, at d - r2 from the object's centre."""
    v2, f2 = icosphere(r2, sub, dtype=dtype)
    u = -v2[0] / v2[0].norm()  # hand vertex 0 points back towards the object's centre
    v2 = v2 + d * u
    v1, f1 = icosphere(r1, sub, dtype=dtype)
    return (v1, f1), (v2, f2)


def test_penetration_depth_two_spheres():
    r1, r2, d = 0.04, 0.03, 0.05
    (v1, f1), (v2, f2) = _overlapping_spheres(r1, r2, d)
    obj = Meshes.from_list([(v1, f1)], dtype=F64)
    pd = M.penetration_depth(v2[None], obj)
    # The deepest hand vertex is at d - r2 from the object's centre: depth r1 + r2 - d = 20 mm to
    # the true sphere; the polygonal surface lies up to its sagitta (~0.1 mm) inside it.
    assert abs(pd.item() - (r1 + r2 - d) * 1000) < 0.15
    assert abs(pd.item() - _trimesh_pd(v2.numpy(), _tm(v1, f1))) < 0.1
    # Apart: 0.
    assert M.penetration_depth(v2[None] + 0.2, obj).item() == 0.0


def test_vertex_penetration_marks_the_inside_vertices():
    (v1, f1), (v2, f2) = _overlapping_spheres(sub=2)
    obj = Meshes.from_list([(v1, f1)], dtype=F64)
    inside, depth = M.vertex_penetration(v2[None], obj)
    mesh = _tm(v1, f1)
    assert np.array_equal(inside[0].numpy(), mesh.contains(v2.numpy())) and 0 < inside.sum() < len(v2)
    assert (depth[0, ~inside[0]] == 0).all()
    ref = _exact_closest(mesh, v2[inside[0]].numpy())
    assert np.abs(depth[0, inside[0]].numpy() - ref).max() < 1e-12
    assert M.penetration_depth(v2[None], obj).item() == depth.max().item() * 1000


# ---------------------------------------------------------------------- SIV
def test_siv_two_spheres_lens():
    r1, r2, d, res = 0.04, 0.03, 0.05, 32
    (v1, f1), (v2, f2) = _overlapping_spheres(r1, r2, d)
    obj = Meshes.from_list([(v1, f1)], dtype=F64)
    ref = _trimesh_siv(_tm(v2, f2), _tm(v1, f1), res)
    lens = _lens_volume(r1, r2, d) * 1e6  # 19.27 cm^3
    for mode in ("auto", "winding", "crossings"):
        siv = M.solid_intersection_volume(v2[None], f2, obj, resolution=res, object_inside=mode, cache=None).item()
        assert abs(siv - ref) <= 0.02 * ref, (mode, siv, ref)
        assert abs(siv - lens) <= 0.04 * lens, (mode, siv, lens)
    # The hand tested by winding number gives the same count.
    w = M.solid_intersection_volume(v2[None], f2, obj, resolution=res, hand_inside="winding", cache=None).item()
    assert w == pytest.approx(M.solid_intersection_volume(v2[None], f2, obj, resolution=res).item())


def test_siv_box_through_box():
    """A long box through a cube: the intersection is the product of the overlaps, exactly the
    count of voxel centres inside the overlap (none lies on a face)."""
    res = 30
    ov, of = box((0.06, 0.06, 0.06), divisions=3, dtype=F64)
    hv, hf = box((0.02, 0.025, 0.10), divisions=2, dtype=F64)
    off = torch.tensor([0.0231, -0.0047, 0.0003], dtype=F64)  # pokes out of the cube along x and z
    hv = hv + off
    obj = Meshes.from_list([(ov, of)], dtype=F64)
    siv = M.solid_intersection_volume(hv[None], hf, obj, resolution=res).item()
    lo, hi = torch.maximum(hv.amin(0), ov.amin(0)), torch.minimum(hv.amax(0), ov.amax(0))
    analytic = float((hi - lo).prod()) * 1e6  # 6.9 x 25 x 60 mm = 10.35 cm^3
    step = 0.06 / res
    c = -0.03 + (np.arange(res) + 0.5) * step
    count = np.prod([((c > lo[a].item()) & (c < hi[a].item())).sum() for a in range(3)])
    assert siv == pytest.approx(count * step**3 * 1e6, rel=1e-9)
    assert abs(siv - analytic) < 0.06 * analytic
    assert abs(siv - _trimesh_siv(_tm(hv, hf), _tm(ov, of), res)) <= 0.02 * siv
    # The same cube with every face on its own vertices (as texture seams split meshes): welded,
    # it is closed, so the crossing test applies, and all inside tests agree.
    split = _tm(ov, of)
    split.unmerge_vertices()
    sv, sf = torch.as_tensor(split.vertices), torch.as_tensor(split.faces)
    assert not is_closed(sf) and is_closed(weld(sv, sf)[1])
    objs = Meshes.from_list([(sv, sf)], dtype=F64)
    for mode in ("auto", "crossings", "winding"):
        got = M.solid_intersection_volume(hv[None], hf, objs, resolution=res, object_inside=mode, cache=None)
        assert got.item() == pytest.approx(siv, rel=1e-9), mode


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_column_crossings_on_grid_aligned_edges(dtype):
    """Hand vertices exactly on column centres (every column through the hand's top and bottom
    faces passes through their vertices or edges): each crossing is counted exactly once."""
    lo, step = torch.full((3,), -1.0, dtype=dtype), torch.full((3,), 0.25, dtype=dtype)  # centres -0.875 + k / 4
    hv, hf = box((1.0, 1.0, 1.0), divisions=4, dtype=dtype)
    hv = hv + torch.tensor([0.125, 0.125, 0.0], dtype=dtype)  # vertices at -0.375 + k / 4
    start = torch.zeros(1, 3, dtype=torch.long)

    def crossings(faces):
        return V.column_crossings(hv[faces][None], lo[None], step[None], start, (8, 8, 8))[0]

    w = crossings(hf)
    assert set(w.unique().tolist()) <= {0, 1}
    z_in = torch.zeros(8, dtype=torch.bool)
    z_in[2:6] = True  # centres -0.375 .. 0.375 inside (-0.5, 0.5)
    interior = w[3:6, 3:6]  # columns strictly inside the box's xy square
    assert torch.equal(interior, z_in.expand(3, 3, 8).to(w.dtype))
    # Columns on the box's walls are all in or all out along z; columns outside are empty.
    for i, j in ((2, 4), (6, 4), (4, 2), (4, 6), (2, 2), (6, 6)):
        assert torch.equal(w[i, j], z_in.to(w.dtype)) or not w[i, j].any()
    assert not w[:2].any() and not w[7:].any() and not w[:, :2].any() and not w[:, 7:].any()
    # Flipped faces: -1 inside (the metric takes the nonzero rule).
    assert torch.equal(crossings(hf[:, [0, 2, 1]]), -w)


def test_siv_cache_is_reused(monkeypatch):
    (v1, f1), (v2, f2) = _overlapping_spheres(sub=2)
    obj = Meshes.from_list([(v1, f1)], dtype=F64)
    cache = V.VoxelCache()
    first = M.solid_intersection_volume(v2[None], f2, obj, resolution=24, object_inside="winding", cache=cache)
    assert len(cache) == 1 and (next(iter(cache._store.values())) >= 0).any()
    calls = []
    real = V.winding_number
    monkeypatch.setattr(V, "winding_number", lambda *a, **k: calls.append(a[0].shape[1]) or real(*a, **k))
    again = M.solid_intersection_volume(v2[None], f2, obj, resolution=24, object_inside="winding", cache=cache)
    assert torch.equal(first, again) and calls == [0]  # nothing left to compute
    # A moved hand needs only the voxels not seen before.
    M.solid_intersection_volume(v2[None] - 0.002, f2, obj, resolution=24, object_inside="winding", cache=cache)
    assert 0 < calls[-1] < (first.item() / 1e6) / (0.08 / 24) ** 3


# ---------------------------------------------------------------------- DD
def test_disjointedness_sphere_at_a_gap_from_a_box():
    gap = 0.0065
    bv, bf = box((0.06, 0.06, 0.06), divisions=4, dtype=F64)
    sv, sf = icosphere(0.02, 2, dtype=F64)
    k = int(sv[:, 0].argmin())  # the sphere's vertex nearest the box (on its -x side)
    sv = sv + torch.tensor([0.03 + gap - sv[k, 0].item(), -sv[k, 1].item(), -sv[k, 2].item()], dtype=F64)
    obj = Meshes.from_list([(bv, bf)], dtype=F64)
    tip = torch.zeros(len(sv), dtype=torch.bool)
    tip[k] = True
    assert M.disjointedness(sv[None], tip, obj).item() == pytest.approx(gap * 1000, abs=1e-9)
    # A vertex inside the box counts its distance to the surface too (3 mm deep -> 3 mm).
    inside = sv - torch.tensor([gap + 0.003, 0, 0], dtype=F64)
    assert M.disjointedness(inside[None], tip, obj).item() == pytest.approx(3.0, abs=1e-9)
    # Many tip vertices: the mean, as trimesh measures it.
    tip = sv[:, 0] < sv[k, 0] + 0.01
    _, d, _ = trimesh.proximity.closest_point(_tm(bv, bf), sv[tip].numpy())
    assert abs(M.disjointedness(sv[None], tip, obj).item() - d.mean() * 1000) < 0.1
    assert M.disjointedness(sv[None], tip, obj).item() > gap * 1000


# ---------------------------------------------------------------------- batching, validation
def test_batched_equals_single_and_padding_does_not_leak():
    (v1, f1), (v2, f2) = _overlapping_spheres(sub=1, dtype=torch.float32)  # small object (42 vertices)
    bv, bf = box((0.06, 0.05, 0.04), divisions=6)  # large object (more vertices and faces)
    hb, hbf = icosphere(0.03, 1)  # same topology as the other hand, different place
    hb = hb + torch.tensor([0.035, 0.01, 0.0])
    objs = [(v1, f1), (bv, bf)]
    hands = torch.stack((v2, hb))
    both = Meshes.from_list(objs)
    tip = torch.zeros(len(v2), dtype=torch.bool)
    tip[::3] = True
    pd = M.penetration_depth(hands, both)
    siv = M.solid_intersection_volume(hands, f2, both, resolution=24, cache=None)
    dd = M.disjointedness(hands, tip, both)
    sivw = M.solid_intersection_volume(hands, f2, both, resolution=24, object_inside="winding", cache=None)
    for i in range(2):
        one = Meshes.from_list([objs[i]])
        assert pd[i].item() == pytest.approx(M.penetration_depth(hands[i : i + 1], one).item(), abs=1e-4)
        assert siv[i].item() == pytest.approx(
            M.solid_intersection_volume(hands[i : i + 1], f2, one, resolution=24, cache=None).item(), rel=1e-6
        )
        assert dd[i].item() == pytest.approx(M.disjointedness(hands[i : i + 1], tip, one).item(), abs=1e-4)
    assert torch.allclose(sivw, siv) and (pd > 0).all() and (siv > 0).all()


def test_one_mesh_out_of_a_padded_batch():
    """``Meshes.mesh`` drops padding wherever it sits and renumbers the faces; ``bounds`` ignore it."""
    sv, sf = icosphere(0.03, 1, dtype=F64)
    bv, bf = box((0.04, 0.02, 0.06), divisions=2, dtype=F64)
    N, F = max(len(sv), len(bv)) + 1, max(len(sf), len(bf))
    verts = torch.zeros(2, N, 3, dtype=F64)
    vm = torch.zeros(2, N, dtype=torch.bool)
    verts[0, 1 : len(sv) + 1], vm[0, 1 : len(sv) + 1] = sv, True  # padding in front of the sphere
    verts[0, 0] = 5.0  # far away: it would dominate the bounds
    verts[1, : len(bv)], vm[1, : len(bv)] = bv, True
    faces = torch.zeros(2, F, 3, dtype=torch.long)
    fm = torch.zeros(2, F, dtype=torch.bool)
    faces[0, : len(sf)], fm[0, : len(sf)] = sf + 1, True
    faces[1, : len(bf)], fm[1, : len(bf)] = bf, True
    batch = Meshes(verts, faces, vm, fm)
    for b, (v, f) in enumerate(((sv, sf), (bv, bf))):
        mv, mf = batch.mesh(b)
        assert torch.equal(mv, v) and torch.equal(mf, f)
    assert torch.equal(batch.mesh(-1)[1], bf)
    lo, hi = batch.bounds()
    assert torch.equal(lo, torch.stack((sv.amin(0), bv.amin(0))))
    assert torch.equal(hi, torch.stack((sv.amax(0), bv.amax(0))))
    # The metrics see each mesh as if it were alone.
    hand = (sv * 0.5 + 0.02)[None].expand(2, -1, -1)
    assert (M.penetration_depth(hand, batch) > 0).all()
    for b, (v, f) in enumerate(((sv, sf), (bv, bf))):
        one = Meshes.from_list([(v, f)], dtype=F64)
        assert M.penetration_depth(hand[b : b + 1], one) == M.penetration_depth(hand, batch)[b]
        alone = M.solid_intersection_volume(hand[b : b + 1], sf, one, 16, object_inside="winding", cache=None)
        assert alone == M.solid_intersection_volume(hand, sf, batch, 16, object_inside="winding", cache=None)[b]


def test_closedness_of_a_batch_matches_welding_each_mesh():
    sv, sf = icosphere(0.03, 1)
    split = _tm(*box((0.04, 0.04, 0.04), divisions=2))
    split.unmerge_vertices()  # closed once welded
    flipped = sf.clone()
    flipped[0] = flipped[0, [0, 2, 1]]  # one face against its neighbours
    meshes = [
        (sv, sf),
        (torch.as_tensor(split.vertices, dtype=torch.float32), torch.as_tensor(split.faces)),
        (sv, sf[1:]),  # a hole
        (sv, flipped),
        (sv, torch.cat((sf, sf[:1]))),  # a face twice
        (sv + 0.1, sf),
    ]
    batch = Meshes.from_list(meshes)
    want = [is_closed(weld(v, f)[1]) for v, f in meshes]
    assert want == [True, True, False, False, False, True]
    assert batch.closed().tolist() == want


def test_siv_batch_mixing_closed_and_open_objects_equals_each_alone():
    """Open objects go to the winding-number test, closed ones to crossings, in one batch whose
    hands cover blocks of different sizes; the intersecting voxels drawn are those counted."""
    (v1, f1), (v2, f2) = _overlapping_spheres(sub=2, dtype=F64)
    v2 = v2 - v2.mean(0) + torch.tensor([0.0, 0.0, 0.05], dtype=F64)  # the hand comes from +z
    hands = torch.stack((v2, v2, 0.7 * v2 - 0.003, v2 + 0.2))  # the last misses
    # A hole of 3 faces on the far side, under the columns through the lens: a crossing count
    # would miss their entry and lose those columns; winding numbers see through the hole.
    holed = f1[(v1[f1].mean(1) - v2.mean(0)).norm(dim=-1).argsort()[:-3]]
    objs = [(v1, f1), (v1, holed), (v1 * 1.2, f1), (v1, holed)]  # open: 1 and 3
    batch = Meshes.from_list(objs, dtype=F64)
    assert batch.closed().tolist() == [True, False, True, False]
    found = V.intersection_voxels(hands, f2, batch, resolution=24, cache=V.VoxelCache())
    siv, voxels = found.volumes() * 1e6, found.centres()
    assert torch.equal(siv, M.solid_intersection_volume(hands, f2, batch, resolution=24, cache=V.VoxelCache()))
    step3 = [float(((v.amax(0) - v.amin(0)) / 24).prod()) * 1e6 for v, _ in objs]
    for i, (v, f) in enumerate(objs):
        one = M.solid_intersection_volume(hands[i : i + 1], f2, Meshes.from_list([(v, f)], dtype=F64),
                                          resolution=24, cache=None)  # fmt: skip
        assert siv[i].item() == pytest.approx(one.item(), rel=1e-9), i
        assert voxels[i].shape == (round(siv[i].item() / step3[i]), 3)
    assert (siv[:3] > 0).all() and siv[3] == 0
    assert siv[1].item() == pytest.approx(siv[0].item(), rel=0.01)
    inside_both = (winding_number(voxels[0][None], v2[f2][None])[0].abs() > 0.5) & (
        winding_number(voxels[0][None], v1[f1][None])[0].abs() > 0.5
    )
    assert inside_both.all()


def test_objects_without_volume_score_zero_siv_and_exact_distances():
    """A flat square (open, zero thickness) and an object collapsed to a point have no solid: SIV
    is 0 and PD 0 with no overflow on their degenerate grids; DD is the distance to them."""
    hv, hf = icosphere(0.02, 1, dtype=F64)  # a closed "hand" around the origin
    square_v = torch.tensor([[-0.01, -0.01, 0.0], [0.01, -0.01, 0.0], [0.01, 0.01, 0.0], [-0.01, 0.01, 0.0]],
                            dtype=F64)  # fmt: skip
    square_f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    point_v = torch.full((4, 3), 0.005, dtype=F64)
    objs = Meshes.from_list([(square_v, square_f), (point_v, square_f)], dtype=F64)
    hands = hv[None].expand(2, -1, -1)
    for mode in ("auto", "winding", "crossings"):
        for hand_inside in ("crossings", "winding"):
            siv = M.solid_intersection_volume(hands, hf, objs, 16, object_inside=mode, hand_inside=hand_inside,
                                              cache=None)  # fmt: skip
            assert torch.equal(siv, torch.zeros(2, dtype=F64)), (mode, hand_inside)
    assert torch.equal(M.penetration_depth(hands, objs), torch.zeros(2, dtype=F64))
    tip = torch.zeros(len(hv), dtype=torch.bool)
    tip[0] = True
    top = hv[0]  # (x, y, z) of the tip vertex; the square covers |x|, |y| <= 10 mm at z = 0
    to_square = torch.stack(((top[:2].abs() - 0.01).clamp_min(0).norm(), top[2].abs())).norm()
    want = torch.stack((to_square, (top - 0.005).norm())) * 1000
    assert torch.allclose(M.disjointedness(hands, tip, objs), want, atol=1e-12, rtol=0)


def test_bad_input_raises():
    (v1, f1), (v2, f2) = _overlapping_spheres(sub=1)
    obj = Meshes.from_list([(v1, f1)], dtype=F64)
    nan = v2.clone()[None]
    nan[0, 3, 1] = float("nan")
    tip = torch.ones(len(v2), dtype=torch.bool)
    with pytest.raises(ValueError, match="NaN"):
        M.penetration_depth(nan, obj)
    with pytest.raises(ValueError, match="NaN"):
        M.solid_intersection_volume(nan, f2, obj)
    with pytest.raises(ValueError, match="NaN"):
        M.disjointedness(nan, tip, obj)
    with pytest.raises(ValueError, match="NaN"):
        M.mpvpe(nan, v2[None])
    with pytest.raises(ValueError, match="NaN"):
        point_triangle_distance(nan, v1[f1][None])
    with pytest.raises(ValueError, match="shape"):
        M.penetration_depth(v2, obj)  # (V, 3): no batch
    with pytest.raises(ValueError, match="objects"):
        M.penetration_depth(torch.cat((v2[None], v2[None])), obj)  # 2 hands, 1 object
    with pytest.raises(ValueError, match="tip_mask"):
        M.disjointedness(v2[None], tip[:-1], obj)
    with pytest.raises(ValueError, match="hand_faces"):
        M.solid_intersection_volume(v2[None], f2 + 1000, obj)
    with pytest.raises(ValueError, match="shape"):
        M.mpvpe(v2[None], v2[None, :-1])
    with pytest.raises(ValueError, match="shape"):
        winding_number(v2[None], v1[f1])


def test_markdown_tables():
    rows = [(1, 0.125, None), ("b", np.float32(2.0), True)]
    assert markdown_table(["a", "x", "y"], rows) == (
        "| a | x | y |\n|---|---|---|\n| 1 | 0.12 | - |\n| b | 2.00 | True |"
    )  # 0.125 rounds half to even
    assert markdown_table(["e"], [(1234.5,)], floatfmt=".1e", missing="n/a") == "| e |\n|---|\n| 1.2e+03 |"
    with pytest.raises(ValueError, match=r"rows\[1\] has 1 cells but there are 2 headers"):
        markdown_table(["a", "b"], [(1, 2), (3,)])
    with pytest.raises(ValueError, match="floatfmt"):
        markdown_table(["a"], [(1.0,)], floatfmt="q")
    table = M.MetricTable({"PD": torch.tensor([1.0, 2.5], dtype=F64), "SIV": torch.tensor([0.0, 1.0], dtype=F64)},
                          {"PD": "mm", "SIV": "cm^3"})  # fmt: skip
    assert table.to_markdown(per_sample=True, digits=1) == (
        "| sample | PD (mm) | SIV (cm^3) |\n|---|---|---|\n| 0 | 1.0 | 0.0 |\n| 1 | 2.5 | 1.0 |\n| mean | 1.8 | 0.5 |"
    )  # 1.75 -> 1.8
    with pytest.raises(ValueError, match="one length"):
        M.MetricTable({"PD": torch.zeros(2), "SIV": torch.zeros(3)})


# ---------------------------------------------------------------------- a real hand
@pytest.fixture(scope="module")
def posed_hand():
    hand = load_hand()
    pose = hand.zero_pose(1)
    pose[0, 1:, 2] = 0.25  # fingers bent a little
    out = hand(pose)
    return hand, out


def _palm_sphere(out, radius=0.02, depth=0.008):
    """A sphere sunk ``depth`` into the palm (centre on the palm-side normal at the palm centre)."""
    j = out.joints[0]
    centre = (j[0] + j[4]) / 2
    v = out.vertices[0]
    near = v[(v - centre).norm(dim=-1).argsort()[:200]]
    n = torch.linalg.svd(near - near.mean(0))[2][-1]  # palm plane normal
    side = torch.sign(((j[6] - centre) * n).sum())  # towards the bent fingertips: palm side
    surf = near[((near - centre) @ n * side).argmax()]
    c = surf + side * n * (radius - depth)
    sv, sf = icosphere(radius, 3)
    return sv + c, sf


def test_real_hand_against_a_palm_sphere(posed_hand):
    hand, out = posed_hand
    sv, sf = _palm_sphere(out)
    obj = Meshes.from_list([(sv, sf)])
    cv, cf = hand.closed(out.vertices)
    pd = M.penetration_depth(out.vertices, obj).item()
    assert 3 < pd < 12
    assert abs(pd - _trimesh_pd(out.vertices[0].numpy(), _tm(sv, sf))) < 0.1
    res = 32
    siv = M.solid_intersection_volume(cv, cf, obj, resolution=res).item()
    ref = _trimesh_siv(_tm(cv[0], cf), _tm(sv, sf), res)
    assert siv > 0.5 and abs(siv - ref) <= 0.02 * ref
    sivw = M.solid_intersection_volume(cv, cf, obj, resolution=res, object_inside="winding", cache=None)
    assert abs(sivw.item() - siv) <= 0.02 * siv
    # evaluate(): the same numbers, plus HE / OE and the table helpers.
    table = M.evaluate(out.vertices, obj, hand=hand, gt_hand_verts=out.vertices + 0.002, gt_obj_verts=obj.verts,
                       resolution=res)  # fmt: skip
    assert list(table.columns) == ["HE", "OE", "PD", "SIV", "DD"]
    assert table["HE"].item() == pytest.approx(2 * math.sqrt(3), abs=1e-3) and table["OE"].item() == 0
    assert table["PD"].item() == pytest.approx(pd) and table["SIV"].item() == pytest.approx(siv)
    tip = hand_regions(hand).tip_mask
    assert table["DD"].item() == pytest.approx(M.disjointedness(out.vertices, tip, obj).item())
    md = table.to_markdown(per_sample=True)
    assert "SIV (cm^3)" in md and md.count("\n") == 3
    d = table.as_dict()
    assert d["n"] == 1 and d["units"]["PD"] == "mm" and d["per_sample"]["SIV"][0] == pytest.approx(siv)
    same = M.evaluate(out.vertices, obj, closed_hand=(cv, cf), tip_mask=tip, resolution=res)
    assert same.mean() == pytest.approx({k: table.mean()[k] for k in ("PD", "SIV", "DD")})
    with pytest.raises(ValueError, match="HandModel"):
        M.evaluate(out.vertices, obj)


def test_siv_returns_the_intersecting_voxels():
    """The voxel centres handed back are as many as SIV counts, and each lies in both solids."""
    a, fa = icosphere(0.03, 2, dtype=torch.float64)
    b, fb = icosphere(0.03, 2, dtype=torch.float64)
    b = b + torch.tensor([0.03, 0.0, 0.0], dtype=torch.float64)
    objs = Meshes.from_list([(b, fb)], dtype=torch.float64)
    found = V.intersection_voxels(a[None], fa, objs, resolution=24)
    siv = M.solid_intersection_volume(a[None], fa, objs, resolution=24)
    v = found.centres()[0].numpy()
    assert found.counts().item() == len(v) > 0
    step = (b.max(0).values - b.min(0).values) / 24
    assert siv.item() == pytest.approx(len(v) * float(step.prod()) * 1e6)
    for verts, faces in ((a, fa), (b, fb)):
        assert trimesh.Trimesh(verts.numpy(), faces.numpy()).contains(v).all()
