"""Bad inputs to the meshes, geometry kernels and metrics fail loudly (issue 10), and empty batches
give empty results of the right shape.

One test per class of bad input (empty batch, mesh without vertices or faces, faces out of range,
integer vertices, NaN, masks of the wrong shape or dtype, batches that disagree, devices that
disagree), each parametrised over the entry points it concerns. A ``ValueError`` must name the
argument at fault (the ``match``). Devices are exercised with the ``meta`` device: a tensor there
is "elsewhere" for CPU inputs, without needing a GPU.
"""

from types import SimpleNamespace

import pytest
import torch

from miho import metrics as M
from miho.geometry import closest_points, knn, nearest_vertex, point_triangle_distance, winding_number
from miho.mesh import Meshes, icosphere
from miho.voxels import column_crossings, intersection_voxels

F64 = torch.float64
NAN = float("nan")


@pytest.fixture(scope="module")
def e():
    """A sphere "hand" (closed, 42 vertices) sunk into a sphere object, float64, batch 1."""
    hv, hf = icosphere(0.03, 1, dtype=F64)
    hv = hv + torch.tensor([0.04, 0.0, 0.0], dtype=F64)
    ov, of = icosphere(0.04, 1, dtype=F64)
    obj = Meshes.from_list([(ov, of)], dtype=F64)
    tip = torch.zeros(len(hv), dtype=torch.bool)
    tip[::5] = True
    return SimpleNamespace(hv=hv[None], hf=hf, ov=ov, of=of, obj=obj, tip=tip, tris=obj.triangles())


def _nan(t, index=0):
    t = t.clone()
    t.view(-1)[index] = NAN
    return t


def _evaluate(e, hv, obj, **kw):
    kw.setdefault("closed_hand", (hv, e.hf))
    kw.setdefault("tip_mask", e.tip)
    return M.evaluate(hv, obj, resolution=8, voxel_cache=None, **kw)


def _raises(e, call, name):
    """``call(e)`` raises a ValueError whose message matches ``name`` (the argument at fault)."""
    with pytest.raises(ValueError, match=name):
        call(e)


# ---------------------------------------------------------------------- 1. empty batches
EMPTY_OBJECTS = Meshes.from_list([], dtype=F64)
EMPTY = {
    "Meshes.from_list": (lambda e: EMPTY_OBJECTS.verts, (0, 0, 3)),
    "Meshes": (lambda e: Meshes(e.obj.verts[:0], e.obj.faces[:0], e.obj.vert_mask[:0], e.obj.face_mask[:0]).verts,
               (0, 42, 3)),
    "penetration_depth": (lambda e: M.penetration_depth(e.hv[:0], EMPTY_OBJECTS), (0,)),
    "vertex_penetration": (lambda e: M.vertex_penetration(e.hv[:0], e.obj[:0])[1], (0, 42)),
    "solid_intersection_volume": (lambda e: M.solid_intersection_volume(e.hv[:0], e.hf, e.obj[:0], 8), (0,)),
    "intersection_voxels": (lambda e: intersection_voxels(e.hv[:0], e.hf, EMPTY_OBJECTS, 8).volumes(), (0,)),
    "disjointedness": (lambda e: M.disjointedness(e.hv[:0], e.tip, e.obj[:0]), (0,)),
    "mpvpe": (lambda e: M.mpvpe(e.hv[:0], e.hv[:0]), (0,)),
    "point_triangle_distance": (lambda e: point_triangle_distance(e.hv[:0], e.tris[:0])[0], (0, 42)),
    "point_triangle_distance (no point)": (lambda e: point_triangle_distance(e.hv[:, :0], e.tris)[0], (1, 0)),
    "winding_number": (lambda e: winding_number(e.hv[:0], e.tris[:0]), (0, 42)),
    "nearest_vertex": (lambda e: nearest_vertex(e.hv[:0], e.obj.verts[:0]), (0, 42)),
    "knn (no point)": (lambda e: knn(e.hv[:, :0], e.obj.verts, 3)[0], (1, 0, 3)),
    "column_crossings": (lambda e: column_crossings(
        e.tris[:0], torch.zeros(0, 3, dtype=F64), torch.ones(0, 3, dtype=F64), torch.zeros(0, 3, dtype=torch.long),
        (2, 2, 2)), (0, 2, 2, 2)),
}  # fmt: skip


@pytest.mark.parametrize("entry", list(EMPTY))
def test_empty_batch_gives_empty_results(e, entry):
    call, shape = EMPTY[entry]
    assert tuple(call(e).shape) == shape


def test_empty_batch_evaluates_to_an_empty_table(e):
    table = _evaluate(e, e.hv[:0], e.obj[:0], gt_hand_verts=e.hv[:0], gt_obj_verts=e.obj.verts[:0])
    assert len(table) == 0 and list(table.columns) == ["HE", "OE", "PD", "SIV", "DD"]
    assert all(c.shape == (0,) and c.dtype == F64 for c in table.columns.values())


# ---------------------------------------------------------------------- 2. meshes without vertices or faces
def _no_real(e, which):
    vm, fm = e.obj.vert_mask.clone(), e.obj.face_mask.clone()
    (vm if which == "vert_mask" else fm)[0] = False
    return Meshes(e.obj.verts, e.obj.faces, vm, fm)


EMPTY_MESH = {
    "Meshes: vert_mask all False": (lambda e: _no_real(e, "vert_mask"), "vert_mask"),
    "Meshes: face_mask all False": (lambda e: _no_real(e, "face_mask"), "face_mask"),
    "Meshes: N = 0": (lambda e: Meshes(e.obj.verts[:, :0], e.obj.faces, e.obj.vert_mask[:, :0], e.obj.face_mask),
                      "verts"),
    "Meshes: F = 0": (lambda e: Meshes(e.obj.verts, e.obj.faces[:, :0], e.obj.vert_mask, e.obj.face_mask[:, :0]),
                      "faces"),
    "from_list: no vertex": (lambda e: Meshes.from_list([(e.ov[:0], e.of[:0])]), r"meshes\[0\] verts"),
    "from_list: no face": (lambda e: Meshes.from_list([(e.ov, e.of[:0])]), r"meshes\[0\] faces"),
    "penetration_depth: hand without vertices": (lambda e: M.penetration_depth(e.hv[:, :0], e.obj), "hand_verts"),
    "evaluate: hand without vertices": (lambda e: _evaluate(e, e.hv[:, :0], e.obj), "hand_verts"),
    "disjointedness: no tip vertex": (lambda e: M.disjointedness(e.hv, torch.zeros_like(e.tip), e.obj), "tip_mask"),
}  # fmt: skip


@pytest.mark.parametrize("entry", list(EMPTY_MESH))
def test_meshes_without_vertices_or_faces_raise(e, entry):
    _raises(e, *EMPTY_MESH[entry])


# ---------------------------------------------------------------------- 3. faces out of range
def _faces_with(e, index, value):
    f = e.obj.faces.clone()
    f[index] = value
    return f


def _padded_corner(e):
    """Two meshes; a real face of the smaller one uses one of its padded vertices."""
    two = Meshes.from_list([icosphere(0.02, 0, dtype=F64), (e.ov, e.of)], dtype=F64)
    faces = two.faces.clone()
    faces[0, 0, 0] = 30  # < N = 42 but past the 12 real vertices of mesh 0
    return Meshes(two.verts, faces, two.vert_mask, two.face_mask)


FACES = {
    "Meshes: past the end": (lambda e: Meshes(e.obj.verts, _faces_with(e, (0, 3, 1), 42), e.obj.vert_mask,
                                              e.obj.face_mask), "faces"),
    "Meshes: negative": (lambda e: Meshes(e.obj.verts, _faces_with(e, (0, 3, 1), -1), e.obj.vert_mask,
                                          e.obj.face_mask), "faces"),
    "Meshes: real face on padding": (_padded_corner, "padded vertex"),
    "from_list: past the end": (lambda e: Meshes.from_list([(e.ov, e.of + 1)]), r"meshes\[0\] faces"),
    "solid_intersection_volume: hand_faces": (lambda e: M.solid_intersection_volume(e.hv, e.hf + 42, e.obj, 8),
                                              "hand_faces"),
    "evaluate: closed_hand faces": (lambda e: _evaluate(e, e.hv, e.obj, closed_hand=(e.hv, e.hf - 1)),
                                    "closed_hand faces"),
    "closest_points: face": (lambda e: closest_points(e.hv, e.tris, torch.full((1, 42), 80)), "face"),
}  # fmt: skip


@pytest.mark.parametrize("entry", list(FACES))
def test_faces_out_of_range_raise(e, entry):
    _raises(e, *FACES[entry])


# ---------------------------------------------------------------------- 4. integer vertices (and float faces)
INTEGER = {
    "Meshes: verts": (lambda e: Meshes(e.obj.verts.long(), e.obj.faces, e.obj.vert_mask, e.obj.face_mask), "verts"),
    "from_list: verts": (lambda e: Meshes.from_list([(torch.ones(42, 3, dtype=torch.long), e.of)]),
                         r"meshes\[0\] verts"),
    "from_list: float faces": (lambda e: Meshes.from_list([(e.ov, e.of + 0.5)]), r"meshes\[0\] faces"),
    "penetration_depth": (lambda e: M.penetration_depth(e.hv.long(), e.obj), "hand_verts"),
    "solid_intersection_volume": (lambda e: M.solid_intersection_volume(e.hv.int(), e.hf, e.obj, 8), "hand_verts"),
    "disjointedness": (lambda e: M.disjointedness(e.hv.long(), e.tip, e.obj), "hand_verts"),
    "mpvpe": (lambda e: M.mpvpe(e.hv, e.hv.long()), "gt"),
    "evaluate": (lambda e: _evaluate(e, e.hv.long(), e.obj), "hand_verts"),
    "point_triangle_distance": (lambda e: point_triangle_distance(e.hv.long(), e.tris), "points"),
    "winding_number": (lambda e: winding_number(e.hv, e.tris.long()), "tris"),
    "nearest_vertex": (lambda e: nearest_vertex(e.hv.long(), e.obj.verts), "points"),
}  # fmt: skip


@pytest.mark.parametrize("entry", list(INTEGER))
def test_integer_vertices_raise(e, entry):
    _raises(e, *INTEGER[entry])


# ---------------------------------------------------------------------- 5. NaN
def _poisoned(e):
    """A valid batch whose vertices were overwritten with NaN after it was made."""
    m = Meshes(e.obj.verts.clone(), e.obj.faces, e.obj.vert_mask, e.obj.face_mask)
    m.verts[0, 0, 0] = NAN
    return m


NANS = {
    "Meshes": (lambda e: Meshes(_nan(e.obj.verts), e.obj.faces, e.obj.vert_mask, e.obj.face_mask), "verts"),
    "Meshes.with_verts": (lambda e: e.obj.with_verts(_nan(e.obj.verts, 5)), "verts"),
    "penetration_depth: hand": (lambda e: M.penetration_depth(_nan(e.hv), e.obj), "hand_verts"),
    "penetration_depth: objects changed after construction": (lambda e: M.penetration_depth(e.hv, _poisoned(e)),
                                                               "objects"),
    "solid_intersection_volume": (lambda e: M.solid_intersection_volume(_nan(e.hv, 7), e.hf, e.obj, 8), "hand_verts"),
    "disjointedness": (lambda e: M.disjointedness(_nan(e.hv), e.tip, e.obj), "hand_verts"),
    "mpvpe": (lambda e: M.mpvpe(e.hv, _nan(e.hv)), "gt"),
    "evaluate: gt_hand_verts": (lambda e: _evaluate(e, e.hv, e.obj, gt_hand_verts=_nan(e.hv)), "gt_hand_verts"),
    "point_triangle_distance": (lambda e: point_triangle_distance(e.hv, _nan(e.tris)), "tris"),
    "winding_number": (lambda e: winding_number(_nan(e.hv), e.tris), "points"),
    "nearest_vertex": (lambda e: nearest_vertex(e.hv, _nan(e.obj.verts)), "verts"),
}  # fmt: skip


@pytest.mark.parametrize("entry", list(NANS))
def test_nan_raises(e, entry):
    call, name = NANS[entry]
    _raises(e, call, f"{name}.*NaN")


# ---------------------------------------------------------------------- 6. masks of the wrong shape or dtype
MASKS = {
    "Meshes: vert_mask dtype": (lambda e: Meshes(e.obj.verts, e.obj.faces, e.obj.vert_mask.float(), e.obj.face_mask),
                                "vert_mask"),
    "Meshes: face_mask shape": (lambda e: Meshes(e.obj.verts, e.obj.faces, e.obj.vert_mask, e.obj.face_mask[:, 1:]),
                                "face_mask"),
    "mpvpe: mask dtype": (lambda e: M.mpvpe(e.hv, e.hv, torch.ones(1, 42)), "mask"),
    "mpvpe: mask shape": (lambda e: M.mpvpe(e.hv, e.hv, torch.ones(42, dtype=torch.bool)), "mask"),
    "disjointedness: tip_mask dtype": (lambda e: M.disjointedness(e.hv, e.tip.long(), e.obj), "tip_mask"),
    "evaluate: tip_mask shape": (lambda e: _evaluate(e, e.hv, e.obj, tip_mask=e.tip[:-1]), "tip_mask"),
    "point_triangle_distance: face_mask shape": (
        lambda e: point_triangle_distance(e.hv, e.tris, torch.ones(1, 79, dtype=torch.bool)), "face_mask"),
    "winding_number: face_mask dtype": (lambda e: winding_number(e.hv, e.tris, torch.ones(1, 80)), "face_mask"),
    "nearest_vertex: vert_mask dtype": (lambda e: nearest_vertex(e.hv, e.obj.verts, e.obj.vert_mask.long()),
                                        "vert_mask"),
}  # fmt: skip


@pytest.mark.parametrize("entry", list(MASKS))
def test_bad_masks_raise(e, entry):
    _raises(e, *MASKS[entry])


# ---------------------------------------------------------------------- 7. batches that disagree
def _two(e):
    return torch.cat((e.hv, e.hv))


BATCH = {
    "Meshes: faces": (lambda e: Meshes(e.obj.verts, e.obj.faces.expand(2, -1, -1), e.obj.vert_mask, e.obj.face_mask),
                      "faces"),
    "penetration_depth": (lambda e: M.penetration_depth(_two(e), e.obj), "objects"),
    "solid_intersection_volume: objects": (lambda e: M.solid_intersection_volume(_two(e), e.hf, e.obj, 8), "objects"),
    "solid_intersection_volume: hand_faces": (
        lambda e: M.solid_intersection_volume(e.hv, e.hf.expand(2, -1, -1), e.obj, 8), "hand_faces"),
    "disjointedness": (lambda e: M.disjointedness(_two(e), e.tip, e.obj), "objects"),
    "mpvpe": (lambda e: M.mpvpe(_two(e), e.hv), "gt"),
    "evaluate: gt_hand_verts": (lambda e: _evaluate(e, e.hv, e.obj, gt_hand_verts=_two(e)), "gt_hand_verts"),
    "evaluate: closed_hand": (lambda e: _evaluate(e, e.hv, e.obj, closed_hand=(_two(e), e.hf)), "closed_hand"),
    "point_triangle_distance": (lambda e: point_triangle_distance(_two(e), e.tris), "tris"),
    "winding_number": (lambda e: winding_number(e.hv, torch.cat((e.tris, e.tris))), "tris"),
    "nearest_vertex": (lambda e: nearest_vertex(_two(e), e.obj.verts), "verts"),
}  # fmt: skip


@pytest.mark.parametrize("entry", list(BATCH))
def test_batch_mismatches_raise(e, entry):
    _raises(e, *BATCH[entry])


# ---------------------------------------------------------------------- 8. devices (and dtypes) that disagree
def _meta_objects(e):
    return Meshes(*(t.to("meta") for t in (e.obj.verts, e.obj.faces, e.obj.vert_mask, e.obj.face_mask)))


DEVICES = {
    "Meshes: faces": (lambda e: Meshes(e.obj.verts, e.obj.faces.to("meta"), e.obj.vert_mask, e.obj.face_mask),
                      "faces"),
    "penetration_depth": (lambda e: M.penetration_depth(e.hv, _meta_objects(e)), "objects"),
    "solid_intersection_volume: hand_faces": (
        lambda e: M.solid_intersection_volume(e.hv, e.hf.to("meta"), e.obj, 8), "hand_faces"),
    "disjointedness": (lambda e: M.disjointedness(e.hv, e.tip, _meta_objects(e)), "objects"),
    "mpvpe": (lambda e: M.mpvpe(e.hv, e.hv.to("meta")), "gt"),
    "evaluate": (lambda e: _evaluate(e, e.hv, _meta_objects(e)), "objects"),
    "point_triangle_distance": (lambda e: point_triangle_distance(e.hv, e.tris.to("meta")), "tris"),
    "winding_number: dtype": (lambda e: winding_number(e.hv, e.tris.float()), "tris"),
    "nearest_vertex": (lambda e: nearest_vertex(e.hv, e.obj.verts.to("meta")), "verts"),
}  # fmt: skip


@pytest.mark.parametrize("entry", list(DEVICES))
def test_device_and_dtype_mismatches_raise(e, entry):
    _raises(e, *DEVICES[entry])


# ---------------------------------------------------------------------- 9. other arguments
OTHER = {
    "solid_intersection_volume: resolution": (lambda e: M.solid_intersection_volume(e.hv, e.hf, e.obj, 0),
                                              "resolution"),
    "solid_intersection_volume: object_inside": (
        lambda e: M.solid_intersection_volume(e.hv, e.hf, e.obj, 8, object_inside="rays"), "object_inside"),
    "solid_intersection_volume: cache": (lambda e: M.solid_intersection_volume(e.hv, e.hf, e.obj, 8, cache={}),
                                         "cache"),
    "knn: k": (lambda e: knn(e.hv, e.obj.verts, k=43), "k"),
    "winding_number: chunk": (lambda e: winding_number(e.hv, e.tris, chunk=0), "chunk"),
    "Meshes.mesh: b": (lambda e: e.obj.mesh(1), "b"),
    "from_list: not pairs": (lambda e: Meshes.from_list([e.ov]), r"meshes\[0\]"),
    "evaluate: no hand": (lambda e: M.evaluate(e.hv, e.obj), "HandModel"),
}  # fmt: skip


@pytest.mark.parametrize("entry", list(OTHER))
def test_other_bad_arguments_raise(e, entry):
    _raises(e, *OTHER[entry])
