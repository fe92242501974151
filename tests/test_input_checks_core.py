"""Bad inputs to the hand, anchors, A-MANO and CPF fail loudly (issue 10), and empty batches give
empty results of the right shape.

Devices are exercised with the ``meta`` device: a tensor there is "elsewhere" for a CPU model,
without needing a GPU.
"""

from types import SimpleNamespace

import pytest
import torch

from miho import amano
from miho import cpf as C
from miho.anchors import anchor_positions, hand_regions
from miho.checks import check_tensor
from miho.hand import PosePCA, load_hand
from miho.mesh import Meshes, icosphere
from miho.rotations import axis_angle_to_matrix, matrix_to_axis_angle, rigid

NAN = float("nan")


@pytest.fixture(scope="module")
def e():
    hand = load_hand(dtype=torch.float64)
    regions = hand_regions(hand)
    g = torch.Generator().manual_seed(0)
    pca = PosePCA.fit(0.3 * torch.randn(50, 15, 3, generator=g, dtype=torch.float64), 4)
    v, f = icosphere(0.03, 1, dtype=torch.float64)
    obj = Meshes.from_list([(v + torch.tensor([-0.03, 0.08, 0.0], dtype=torch.float64), f)], dtype=torch.float64)
    verts = hand(hand.zero_pose()).vertices
    field = C.annotate(verts, obj.verts, regions)
    assert field.contact().any()  # the sphere touches the hand: the energies below are not trivially 0
    return SimpleNamespace(
        hand=hand, regions=regions, pca=pca, V=hand.num_vertices, S=hand.num_shape, N=obj.verts.shape[1],
        rest=amano.rest_frames(hand), pose=0.1 * torch.ones(1, 16, 3, dtype=torch.float64), verts=verts,
        obj=obj.verts, normals=obj.normals(), mask=obj.vert_mask, field=field, anchors=regions.anchors(verts),
        target=hand(hand.zero_pose()).joints21,
    )  # fmt: skip


def _nan(t, index=0):
    t = t.clone()
    t.view(-1)[index] = NAN
    return t


def _meta(t):
    return t.to("meta")


# ---------------------------------------------------------------------- 1. empty batches
EMPTY = {
    "forward": (lambda e: e.hand(e.hand.zero_pose(0)), lambda e, r: (
        r.vertices.shape == (0, e.V, 3) and r.joints.shape == (0, 16, 3) and r.joints21.shape == (0, 21, 3)
        and r.transforms.shape == (0, 16, 4, 4))),
    "forward matrices": (lambda e: e.hand(torch.eye(3, dtype=torch.float64).expand(0, 16, 3, 3)),
                         lambda e, r: r.vertices.shape == (0, e.V, 3)),
    "closed": (lambda e: e.hand.closed(e.verts[:0]), lambda e, r: r[0].shape == (0, e.V + e.hand.num_caps, 3)),
    "shaped_rest": (lambda e: e.hand.shaped_rest(torch.zeros(0, e.S, dtype=torch.float64)),
                    lambda e, r: r[0].shape == (0, e.V, 3) and r[1].shape == (0, 16, 3)),
    "pca encode": (lambda e: e.pca.encode(torch.zeros(0, 15, 3, dtype=torch.float64)), lambda e, r: r.shape == (0, 4)),
    "pca full_pose": (lambda e: e.pca.full_pose(torch.zeros(0, 3, dtype=torch.float64),
                                                torch.zeros(0, 4, dtype=torch.float64)),
                      lambda e, r: r.shape == (0, 16, 3)),
    "anchors": (lambda e: e.regions.anchors(e.verts[:0]), lambda e, r: r.shape == (0, 32, 3)),
    "decompose": (lambda e: amano.decompose(e.pose[:0], e.rest),
                  lambda e, r: r[0].shape == (0, 15, 3) and r[1].shape == (0, 15)),
    "compose": (lambda e: amano.compose(torch.zeros(0, 15, 3, dtype=torch.float64), e.rest),
                lambda e, r: r.shape == (0, 16, 3)),
    "anatomical_loss": (lambda e: amano.anatomical_loss(e.pose[:0], e.rest), lambda e, r: r.shape == (0,)),
    "frames": (lambda e: amano.frames(e.target[:0], torch.zeros(0, 3, dtype=torch.float64)),
               lambda e, r: r.shape == (0, 16, 3, 3)),
    "fit_to_joints": (lambda e: amano.fit_to_joints(e.hand, e.target[:0], steps=2),
                      lambda e, r: r[0].shape == (0, 16, 3) and r[1]["joint_error"].shape == (0,)),
    "annotate": (lambda e: C.annotate(e.verts[:0], e.obj[:0], e.regions),
                 lambda e, r: r.vc.shape == r.cr.shape == r.ae.shape == (0, e.N)),
    "attraction": (lambda e: C.attraction_energy(e.anchors[:0], e.obj[:0], e.field[0:0], e.regions.anchor_region),
                   lambda e, r: r.shape == (0,)),
    "repulsion dense": (lambda e: C.repulsion_energy(e.verts[:0], e.obj[:0], e.normals[:0]),
                        lambda e, r: r.shape == (0,)),
    "repulsion neighbours": (lambda e: C.repulsion_energy(e.verts[:0], e.obj[:0], e.normals[:0], neighbours=8),
                             lambda e, r: r.shape == (0,)),
    "elastic": (lambda e: C.elastic_energy(e.verts[:0], e.anchors[:0], e.obj[:0], e.normals[:0], e.field[0:0],
                                           e.regions.anchor_region, neighbours=8), lambda e, r: r.shape == (0,)),
    "nearest_hand_vertices": (lambda e: C.nearest_hand_vertices(e.verts[:0], e.obj[:0], 5),
                              lambda e, r: r[0].shape == r[1].shape == (0, e.N, 5)),
}  # fmt: skip


@pytest.mark.parametrize("name", EMPTY)
def test_empty_batch_gives_empty_results(e, name):
    call, ok = EMPTY[name]
    assert ok(e, call(e))


def test_empty_batch_where_it_makes_no_sense(e):
    with pytest.raises(ValueError, match="finger_poses holds no pose"):
        PosePCA.fit(torch.zeros(0, 15, 3, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="shape must have shape"):
        e.hand.reshaped(torch.zeros(0, e.S, dtype=torch.float64))


# ---------------------------------------------------------------------- 2. integer tensors
INTEGER = {
    "pose": lambda e: e.hand(torch.zeros(1, 16, 3, dtype=torch.long)),
    "shape": lambda e: e.hand(e.pose, torch.zeros(1, e.S, dtype=torch.long)),
    "trans": lambda e: e.hand(e.pose, trans=torch.zeros(1, 3, dtype=torch.int32)),
    "vertices": lambda e: e.hand.closed(e.verts.long()),
    "shape ": lambda e: e.hand.shaped_rest(torch.zeros(1, e.S, dtype=torch.long)),
    "shape  ": lambda e: e.hand.reshaped(torch.zeros(e.S, dtype=torch.long)),
    "components": lambda e: PosePCA(torch.zeros(2, 45, dtype=torch.long), torch.zeros(45)),
    "finger_poses": lambda e: e.pca.encode(torch.zeros(1, 15, 3, dtype=torch.long)),
    "coeffs": lambda e: e.pca.decode(torch.zeros(1, 4, dtype=torch.long)),
    "wrist": lambda e: e.pca.full_pose(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.float64)),
    "vertices ": lambda e: e.regions.anchors(e.verts.long()),
    "weights": lambda e: anchor_positions(e.verts, e.regions.anchor_faces, e.regions.anchor_weights.long()),
    "faces": lambda e: anchor_positions(e.verts, e.regions.anchor_faces.double(), e.regions.anchor_weights),
    "pose ": lambda e: amano.angles(e.pose.long(), e.rest),
    "rest": lambda e: amano.angles(e.pose, e.rest.long()),
    "tsb": lambda e: amano.compose(torch.zeros(1, 15, 3, dtype=torch.long), e.rest),
    "pose  ": lambda e: amano.anatomical_loss(e.pose.int(), e.rest),
    "joints21": lambda e: amano.frames(e.target.long(), torch.zeros(1, 3)),
    "up": lambda e: amano.frames(e.target, torch.zeros(1, 3, dtype=torch.long)),
    "target": lambda e: amano.fit_to_joints(e.hand, e.target.long(), steps=1),
    "vc": lambda e: C.CPF(e.field.vc.long(), e.field.cr, e.field.ae),
    "cr": lambda e: C.CPF(e.field.vc, e.field.cr.double(), e.field.ae),
    "anchors": lambda e: C.attraction_energy(e.anchors.long(), e.obj, e.field, e.regions.anchor_region),
    "obj_verts": lambda e: C.attraction_energy(e.anchors, e.obj.long(), e.field, e.regions.anchor_region),
    "anchor_region": lambda e: C.attraction_energy(e.anchors, e.obj, e.field, e.regions.anchor_region.double()),
    "hand_verts": lambda e: C.repulsion_energy(e.verts.long(), e.obj, e.normals),
    "obj_normals": lambda e: C.repulsion_energy(e.verts, e.obj, e.normals.long()),
    "neighbour_index": lambda e: C.repulsion_energy(e.verts, e.obj, e.normals,
                                                    neighbour_index=torch.zeros(1, e.N, 3)),
    "hand_verts ": lambda e: C.nearest_hand_vertices(e.verts.long(), e.obj, 4),
    "hand_verts  ": lambda e: C.annotate(e.verts.long(), e.obj, e.regions),
    "obj_verts ": lambda e: C.annotate(e.verts, e.obj.long(), e.regions),
    "r": lambda e: axis_angle_to_matrix(torch.zeros(4, 3, dtype=torch.long)),
    "m": lambda e: matrix_to_axis_angle(torch.eye(3, dtype=torch.long)),
}  # fmt: skip


@pytest.mark.parametrize("name", INTEGER)
def test_integer_tensors_raise(e, name):
    kind = "integer" if name.strip() in ("faces", "cr", "anchor_region", "neighbour_index") else "floating"
    with pytest.raises(ValueError, match=rf"^{name.strip()}\b.*{kind}"):
        INTEGER[name](e)


# ---------------------------------------------------------------------- 3. NaN / inf
NONFINITE = {
    "pose": lambda e: e.hand(_nan(e.pose)),
    "shape": lambda e: e.hand(e.pose, torch.full((1, e.S), NAN, dtype=torch.float64)),
    "trans": lambda e: e.hand(e.pose, trans=torch.tensor([[0.0, float("inf"), 0.0]], dtype=torch.float64)),
    "vertices": lambda e: e.hand.closed(_nan(e.verts, 7)),
    "shape ": lambda e: e.hand.shaped_rest(torch.full((1, e.S), NAN, dtype=torch.float64)),
    "shape  ": lambda e: e.hand.reshaped(torch.full((e.S,), float("-inf"), dtype=torch.float64)),
    "mean": lambda e: PosePCA(e.pca.components, _nan(e.pca.mean)),
    "finger_poses": lambda e: PosePCA.fit(_nan(torch.zeros(5, 15, 3)), 2),
    "coeffs": lambda e: e.pca.decode(_nan(torch.zeros(1, 4, dtype=torch.float64))),
    "vertices ": lambda e: e.regions.anchors(_nan(e.verts, 11)),
    "pose ": lambda e: amano.decompose(_nan(e.pose, 5), e.rest),
    "rest": lambda e: amano.angles(e.pose, _nan(e.rest, 20)),
    "tsb": lambda e: amano.compose(_nan(torch.zeros(1, 15, 3, dtype=torch.float64)), e.rest),
    "pose  ": lambda e: amano.anatomical_loss(_nan(e.pose, 9), e.rest),
    "joints21": lambda e: amano.frames(_nan(e.target), torch.ones(1, 3, dtype=torch.float64)),
    "target": lambda e: amano.fit_to_joints(e.hand, _nan(e.target), steps=1),
    "ae": lambda e: C.CPF(e.field.vc, e.field.cr, _nan(e.field.ae)),
    "cr": lambda e: C.CPF(e.field.vc, _nan(torch.rand(1, e.N, 17)), e.field.ae),
    "anchors": lambda e: C.attraction_energy(_nan(e.anchors), e.obj, e.field, e.regions.anchor_region),
    "obj_verts": lambda e: C.attraction_energy(e.anchors, _nan(e.obj), e.field, e.regions.anchor_region),
    "hand_verts": lambda e: C.repulsion_energy(_nan(e.verts), e.obj, e.normals),
    "obj_normals": lambda e: C.repulsion_energy(e.verts, e.obj, _nan(e.normals), neighbours=8),
    "hand_verts ": lambda e: C.elastic_energy(_nan(e.verts), e.anchors, e.obj, e.normals, e.field,
                                              e.regions.anchor_region),
    "obj_verts ": lambda e: C.nearest_hand_vertices(e.verts, _nan(e.obj), 4),
    "hand_verts  ": lambda e: C.annotate(_nan(e.verts), e.obj, e.regions),
    "obj_verts  ": lambda e: C.annotate(e.verts, _nan(e.obj), e.regions),
}  # fmt: skip


@pytest.mark.parametrize("name", NONFINITE)
def test_non_finite_inputs_raise(e, name):
    with pytest.raises(ValueError, match=rf"^{name.strip()} contains NaN or inf"):
        NONFINITE[name](e)


# ---------------------------------------------------------------------- 4. CPF of another size
MISSIZED = {
    "attraction: fewer vertices": lambda e: C.attraction_energy(e.anchors, e.obj[:, :-1], e.field,
                                                                e.regions.anchor_region),
    "attraction: more samples": lambda e: C.attraction_energy(e.anchors.expand(2, -1, -1), e.obj.expand(2, -1, -1),
                                                              e.field, e.regions.anchor_region),
    "elastic": lambda e: C.elastic_energy(e.verts, e.anchors, e.obj[:, :-1], e.normals[:, :-1], e.field,
                                          e.regions.anchor_region),
}  # fmt: skip


@pytest.mark.parametrize("name", MISSIZED)
def test_cpf_of_another_size_raises(e, name):
    with pytest.raises(ValueError, match=r"^cpf\.vc must have shape"):
        MISSIZED[name](e)


def test_other_size_mismatches_raise(e):
    with pytest.raises(ValueError, match="^obj_verts must have shape"):  # batch 2 against anchors' 1
        C.attraction_energy(e.anchors, e.obj.expand(2, -1, -1), e.field, e.regions.anchor_region)
    with pytest.raises(ValueError, match="^anchor_region must have shape"):
        C.attraction_energy(e.anchors, e.obj, e.field, e.regions.anchor_region[:-1])
    with pytest.raises(ValueError, match="^anchor_weight must have shape"):
        C.attraction_energy(e.anchors, e.obj, e.field, e.regions.anchor_region, anchor_weight=torch.ones(3))
    with pytest.raises(ValueError, match="^obj_normals must have shape"):
        C.repulsion_energy(e.verts, e.obj, e.normals[:, :-1])
    with pytest.raises(ValueError, match="^neighbour_index must have shape"):
        C.repulsion_energy(e.verts, e.obj, e.normals, neighbour_index=torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="^obj_verts must have shape"):
        C.nearest_hand_vertices(e.verts, e.obj.expand(2, -1, -1), 4)
    with pytest.raises(ValueError, match="^rest must have shape"):  # batch 2 against the pose's 1
        amano.angles(e.pose, e.rest.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="^up must have shape"):
        amano.frames(e.target, torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="^wrist must have shape"):
        amano.compose(torch.zeros(1, 15, 3, dtype=torch.float64), e.rest, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="^limits must have shape"):
        amano.anatomical_loss(e.pose, e.rest, torch.zeros(16, 3, 2))
    with pytest.raises(ValueError, match="^coeffs must have shape"):  # batch 2 against the wrist's 1
        e.pca.full_pose(torch.zeros(1, 3, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="^shape must have shape"):
        e.hand.shaped_rest(torch.zeros(1, e.S + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="^shape must have shape"):
        e.hand.reshaped(torch.zeros(e.S - 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^r must have shape \(\.\.\., 3\)"):
        axis_angle_to_matrix(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"^trans must have shape \(2, 3\)"):
        rigid(torch.eye(3).expand(2, 3, 3), torch.zeros(3, 3))


# ---------------------------------------------------------------------- 5. a hand of another size
OTHER_HAND = {
    "anchors": lambda e: e.regions.anchors(torch.zeros(1, 778, 3, dtype=torch.float64)),
    "annotate": lambda e: C.annotate(torch.zeros(1, 778, 3, dtype=torch.float64), e.obj, e.regions),
    "closed": lambda e: e.hand.closed(torch.zeros(1, 778, 3, dtype=torch.float64)),
}


@pytest.mark.parametrize("name", OTHER_HAND)
def test_hand_of_another_vertex_count_raises(e, name):
    with pytest.raises(ValueError, match=rf"must have shape \(\*, {1609}, 3\), got \(1, 778, 3\)"):
        OTHER_HAND[name](e)


def test_anchor_triangles_outside_the_hand_raise(e):
    faces = e.regions.anchor_faces.clone()
    faces[3, 1] = e.V
    with pytest.raises(ValueError, match=rf"^faces index vertices outside \[0, {e.V}\)"):
        anchor_positions(e.verts, faces, e.regions.anchor_weights)


def test_hand_regions_needs_a_hand_model():
    with pytest.raises(ValueError, match="^hand must be a HandModel"):
        hand_regions(torch.zeros(778, 3))


# ---------------------------------------------------------------------- 6. region ids and ranges of a CPF
@pytest.mark.parametrize("field, bad", [("cr", 17), ("cr", -2), ("vc", 1.5), ("vc", -0.1), ("ae", 2.0)])
def test_cpf_values_out_of_range_raise(e, field, bad):
    parts = dict(vc=e.field.vc.clone(), cr=e.field.cr.clone(), ae=e.field.ae.clone())
    parts[field][0, 4] = bad
    with pytest.raises(ValueError, match=rf"^{field} must lie in"):
        C.CPF(**parts)


def test_cpf_in_range_is_accepted(e):
    cr = torch.full((1, 3), -1)
    cr[0, 1:] = torch.tensor([0, 16])
    field = C.CPF(torch.tensor([[0.0, 0.5, 1.0]]), cr, torch.tensor([[0.0, 1.0, 0.25]]))
    assert field.contact(0.4).tolist() == [[False, True, True]]


# ---------------------------------------------------------------------- 7. masks and devices
MASKS = {
    "attraction shape": lambda e: C.attraction_energy(e.anchors, e.obj, e.field, e.regions.anchor_region,
                                                      e.mask[:, :-1]),
    "attraction dtype": lambda e: C.attraction_energy(e.anchors, e.obj, e.field, e.regions.anchor_region,
                                                      e.mask.double()),
    "repulsion shape": lambda e: C.repulsion_energy(e.verts, e.obj, e.normals, e.mask.expand(2, -1)),
    "repulsion dtype": lambda e: C.repulsion_energy(e.verts, e.obj, e.normals, e.mask.long()),
    "annotate shape": lambda e: C.annotate(e.verts, e.obj, e.regions, e.mask[0]),
    "annotate dtype": lambda e: C.annotate(e.verts, e.obj, e.regions, e.mask.float()),
    "contact": lambda e: e.field.contact(mask=e.mask.long()),
}  # fmt: skip


@pytest.mark.parametrize("name", MASKS)
def test_bad_masks_raise(e, name):
    with pytest.raises(ValueError, match=r"^(obj_)?mask must (have shape|be a bool tensor)"):
        MASKS[name](e)


ELSEWHERE = {
    "shape": lambda e: e.hand(e.pose, _meta(torch.zeros(1, e.S, dtype=torch.float64))),
    "trans": lambda e: e.hand(e.pose, trans=_meta(torch.zeros(1, 3, dtype=torch.float64))),
    "vertices": lambda e: e.hand.closed(_meta(e.verts)),
    "shape ": lambda e: e.hand.shaped_rest(_meta(torch.zeros(1, e.S, dtype=torch.float64))),
    "coeffs": lambda e: e.pca.decode(_meta(torch.zeros(1, 4, dtype=torch.float64))),
    "vertices ": lambda e: e.regions.anchors(_meta(e.verts)),
    "rest": lambda e: amano.angles(e.pose, _meta(e.rest)),
    "up": lambda e: amano.frames(e.target, _meta(torch.ones(1, 3, dtype=torch.float64))),
    "target": lambda e: amano.fit_to_joints(e.hand, _meta(e.target), steps=1),
    "cr": lambda e: C.CPF(e.field.vc, _meta(e.field.cr), e.field.ae),
    "obj_verts": lambda e: C.attraction_energy(e.anchors, _meta(e.obj), e.field, e.regions.anchor_region),
    "anchor_region": lambda e: C.attraction_energy(e.anchors, e.obj, e.field, _meta(e.regions.anchor_region)),
    "obj_mask": lambda e: C.repulsion_energy(e.verts, e.obj, e.normals, _meta(e.mask)),
    "obj_verts ": lambda e: C.nearest_hand_vertices(e.verts, _meta(e.obj), 4),
    "hand_verts": lambda e: C.annotate(_meta(e.verts), _meta(e.obj), e.regions),
}  # fmt: skip


@pytest.mark.parametrize("name", ELSEWHERE)
def test_tensors_on_another_device_raise(e, name):
    with pytest.raises(ValueError, match=rf"^{name.strip()} is on meta but .* is on cpu"):
        ELSEWHERE[name](e)


# ---------------------------------------------------------------------- scalar arguments
SCALARS = {
    "k": lambda e: C.nearest_hand_vertices(e.verts, e.obj, 0),
    "neighbours": lambda e: C.repulsion_energy(e.verts, e.obj, e.normals, neighbours=0),
    "scale": lambda e: C.repulsion_energy(e.verts, e.obj, e.normals, scale=0.0),
    "s": lambda e: C.annotate(e.verts, e.obj, e.regions, s=-0.01),
    "k ": lambda e: C.annotate(e.verts, e.obj, e.regions, k=0),
    "steps": lambda e: amano.fit_to_joints(e.hand, e.target, steps=-1),
    "side": lambda e: amano.palm_up(e.target[:, :16], side="middle"),
    "num_components": lambda e: PosePCA.fit(torch.zeros(5, 15, 3), 6),
}  # fmt: skip


@pytest.mark.parametrize("name", SCALARS)
def test_bad_scalar_arguments_raise(e, name):
    with pytest.raises(ValueError, match=rf"^{name.strip()} must"):
        SCALARS[name](e)


# ---------------------------------------------------------------------- the shared checks
def test_check_tensor_leading_dimensions_and_cpu_only_finiteness():
    check_tensor("r", torch.zeros(2, 5, 3), (..., 3))
    check_tensor("r", torch.zeros(3), (..., 3))
    with pytest.raises(ValueError, match=r"^r must have shape \(\.\.\., 3\), got \(2, 4\)"):
        check_tensor("r", torch.zeros(2, 4), (..., 3))
    check_tensor("r", _meta(torch.zeros(2, 3)), (None, 3), finite="cpu")  # no value check off the CPU
    with pytest.raises(ValueError, match="^r contains NaN or inf"):
        check_tensor("r", _nan(torch.zeros(2, 3)), (None, 3), finite="cpu")
    check_tensor("r", torch.full((4,), 3e38))  # finite entries whose float32 sum overflows
    with pytest.raises(ValueError, match="^r contains NaN or inf"):
        check_tensor("r", torch.tensor([3e38, 3e38, float("-inf")]))
