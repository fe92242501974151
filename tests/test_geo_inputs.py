"""GeO's input checks: inward-facing objects, shapes and batch sizes that disagree, a CPF that
does not lie on the objects, objects that are not meshes, and the empty batch."""

import pytest
import torch
import trimesh

from miho import cpf as C
from miho import geo
from miho.amano import curl_pose
from miho.anchors import hand_regions
from miho.hand import load_hand
from miho.mesh import Meshes, box, cylinder, icosphere


@pytest.fixture(scope="module")
def hand():
    return load_hand(dtype=torch.float64)


def scene(hand, flip=()):
    """Two hands beside a cylinder and a sphere (faces of the samples in ``flip`` reversed), with
    the CPF of a slightly closer placement."""
    shapes = [cylinder(0.03, 0.12, segments=24, rings=8, dtype=torch.float64), icosphere(0.035, 2, dtype=torch.float64)]
    shapes = [(v + torch.tensor([-0.05, 0.085, 0.0], dtype=torch.float64), f[:, [0, 2, 1]] if i in flip else f)
              for i, (v, f) in enumerate(shapes)]  # fmt: skip
    objs = Meshes.from_list(shapes, dtype=torch.float64)
    pose = curl_pose(hand, 0.3).expand(2, -1, -1).clone()
    trans = torch.zeros(2, 3, dtype=torch.float64)
    near = hand(pose, trans=trans + torch.tensor([-0.006, 0.0, 0.0], dtype=torch.float64)).vertices
    return pose, trans, objs, C.annotate(near, objs.verts, hand_regions(hand), objs.vert_mask)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # trimesh on zero volumes
def test_inward_samples_agree_with_trimesh_volume_sign():
    """Reversed faces flip the sign of the enclosed volume (trimesh as the independent judge);
    flat and open zero-volume meshes are not called inward."""
    ang = torch.linspace(0, 2 * torch.pi, 9, dtype=torch.float64)[:-1]
    fan_v = torch.cat((torch.zeros(1, 3, dtype=torch.float64), 0.04 * torch.stack((ang.cos(), ang.sin(), 0 * ang), 1)))
    fan_f = torch.tensor([(0, 1 + k, 1 + (k + 1) % 8) for k in range(8)])
    meshes = [
        icosphere(0.04, 2, dtype=torch.float64),
        (lambda v, f: (v, f[:, [0, 2, 1]]))(*icosphere(0.04, 2, dtype=torch.float64)),
        (lambda v, f: (v + 0.3, f[:, [1, 0, 2]]))(*box((0.05, 0.03, 0.02), 3, dtype=torch.float64)),
        cylinder(0.002, 0.005, 12, 2, dtype=torch.float64),  # a tiny can, 0.06 cm^3, outward
        box((0.08, 0.08, 0.0), divisions=4, dtype=torch.float64),  # flat
        (fan_v, fan_f),  # open, flat
    ]
    want = [trimesh.Trimesh(v.numpy(), f.numpy(), process=False).volume < -1e-12 for v, f in meshes]
    assert want == [False, True, True, False, False, False]
    assert geo.inward_samples(Meshes.from_list(meshes, dtype=torch.float64)).tolist() == want


def test_inward_facing_objects_are_refused(hand):
    pose, trans, objs, field = scene(hand, flip=(1,))
    with pytest.raises(ValueError, match=r"objects samples \[1\] face inwards"):
        geo.optimize(hand, pose, objs, field, trans=trans, iterations=2)
    pose, trans, objs, field = scene(hand, flip=(0, 1))
    with pytest.raises(ValueError, match=r"samples \[0, 1\] face inwards"):
        geo.optimize(hand, pose, objs, field, trans=trans, iterations=2, contact="obman", repulsion="obman")


def test_pose_trans_shape_that_disagree_raise(hand):
    pose, trans, objs, field = scene(hand)
    cases = [
        (dict(trans=torch.zeros(3, 3, dtype=torch.float64)), "trans must have shape"),
        (dict(trans=torch.zeros(2, 1, 3, dtype=torch.float64)), "trans must have shape"),
        (dict(shape=torch.zeros(2, 1, hand.num_shape, dtype=torch.float64)), "shape must have shape"),
        (dict(shape=torch.zeros(3, hand.num_shape, dtype=torch.float64)), "shape must have shape"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            geo.optimize(hand, pose, objs, field, **{"trans": trans, **kw}, iterations=1)
    # The documented broadcasts still work: one translation / shape for the whole batch.
    res = geo.optimize(hand, pose, objs, field, trans=trans[0], shape=torch.zeros(hand.num_shape), iterations=1)
    assert res.trans.shape == (2, 3) and res.shape.shape == (2, hand.num_shape)


def test_cpf_must_lie_on_the_objects(hand):
    """A CPF of one sample used to broadcast silently over a batch of two (every object got the
    first one's field); one of the wrong vertex count failed deep inside torch."""
    pose, trans, objs, field = scene(hand)
    N = objs.verts.shape[1]
    for bad in (field[0], C.CPF(field.vc[:, :-1], field.cr[:, :-1], field.ae[:, :-1])):
        with pytest.raises(ValueError, match=rf"cpf must lie on the objects' vertices: shape \(2, {N}\)"):
            geo.optimize(hand, pose, objs, bad, trans=trans, iterations=1)
    with pytest.raises(ValueError, match="cpf must be a miho.cpf.CPF"):
        geo.optimize(hand, pose, objs, (field.vc, field.cr, field.ae), trans=trans, iterations=1)


def test_objects_must_be_meshes(hand):
    pose, trans, objs, field = scene(hand)
    with pytest.raises(ValueError, match="objects must be a miho.mesh.Meshes"):
        geo.optimize(hand, pose, (objs.verts, objs.faces), field, trans=trans, iterations=1)


def test_empty_batch_gives_an_empty_result(hand):
    _, _, objs, field = scene(hand)
    res = geo.optimize(hand, torch.zeros(0, 16, 3, dtype=torch.float64), objs[0:0], field[0:0],
                       trans=torch.zeros(0, 3, dtype=torch.float64), iterations=7, record_every=3)  # fmt: skip
    N = objs.verts.shape[1]
    assert res.pose.shape == (0, 16, 3) and res.trans.shape == (0, 3) and res.shape.shape == (0, hand.num_shape)
    assert res.hand_verts.shape == (0, hand.num_vertices, 3) and res.obj_verts.shape == (0, N, 3)
    assert res.obj_rot.shape == (0, 3, 3) and res.skipped.shape == (0,) and res.lr.shape == (0,)
    assert {k: tuple(v.shape) for k, v in res.history.items()} == {k: (7, 0) for k in geo.HISTORY_TERMS}
    assert res.trajectory["hand"].shape == (4, 0, hand.num_vertices, 3)  # iterations 0, 3, 6 and the end


def test_config_values_that_mean_nothing_raise():
    with pytest.raises(ValueError, match="rpl_refresh must be >= 1, got 0"):
        geo.GeOConfig(rpl_refresh=0)
    with pytest.raises(ValueError, match="record_every must be >= 0, got -1"):
        geo.GeOConfig(record_every=-1)
