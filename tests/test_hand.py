"""The LBS hand model: rest pose, batching, gradients, rigid motion, closed surface, errors."""

import copy

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from miho.hand import JOINTS21_ORDER, PosePCA, load_hand
from miho.rotations import axis_angle_to_matrix, matrix_to_axis_angle


@pytest.fixture(scope="module")
def hand():
    return load_hand(dtype=torch.float64)


def random_pose(batch, scale=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, 16, 3, generator=g, dtype=torch.float64)


def test_anny_hand_sizes(hand):
    assert hand.num_vertices == 1609 and hand.faces.shape == (3196, 3)
    assert hand.shape_names == ["hand_scale", "finger_length", "finger_thickness", "finger_spacing", "wrist_girth"]
    length = (hand.template[:, 1].max() - hand.template[:, 1].min()).item()
    assert 0.15 < length < 0.22  # an adult hand, wrist to fingertip, in metres


def test_rotations_match_scipy():
    r = torch.tensor(np.random.default_rng(0).normal(size=(50, 3)))
    r[0] = 0
    r[1] = torch.tensor([np.pi - 1e-5, 0, 0])
    ours = axis_angle_to_matrix(r).numpy()
    ref = Rotation.from_rotvec(r.numpy()).as_matrix()
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    back = matrix_to_axis_angle(torch.tensor(ref))
    np.testing.assert_allclose(axis_angle_to_matrix(back).numpy(), ref, atol=1e-9)
    # Angles in [0, pi]: the vector itself comes back where |r| < pi.
    small = r.norm(dim=-1) < np.pi - 1e-3
    np.testing.assert_allclose(back[small].numpy(), r[small].numpy(), atol=1e-9)


def test_zero_pose_reproduces_template(hand):
    out = hand(hand.zero_pose(2))
    assert torch.allclose(out.vertices, hand.template.expand(2, -1, -1), atol=1e-12)
    assert torch.allclose(out.joints, hand.joints.expand(2, -1, -1), atol=1e-12)
    assert torch.allclose(out.joints21[:, 1:][:, 3], hand.template[hand.tip_vertices[0]].expand(2, 3))
    assert out.joints21.shape == (2, 21, 3) and JOINTS21_ORDER[4] == 16


def test_batched_equals_per_sample(hand):
    pose = random_pose(5)
    shape = torch.rand(5, hand.num_shape, dtype=torch.float64) * 2 - 1
    trans = torch.randn(5, 3, dtype=torch.float64) * 0.1
    out = hand(pose, shape, trans)
    for i in range(5):
        one = hand(pose[i : i + 1], shape[i : i + 1], trans[i : i + 1])
        assert torch.allclose(one.vertices[0], out.vertices[i], atol=1e-12)
        assert torch.allclose(one.joints21[0], out.joints21[i], atol=1e-12)


def test_wrist_rotation_and_translation_are_rigid(hand):
    rot = torch.tensor([[0.3, -1.2, 0.7]], dtype=torch.float64)
    pose = hand.zero_pose()
    pose[:, 0] = rot
    t = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64)
    out = hand(pose, trans=t)
    R = torch.tensor(Rotation.from_rotvec(rot[0].numpy()).as_matrix())
    j0 = hand.joints[0]
    expected = (hand.template - j0) @ R.T + j0 + t
    assert torch.allclose(out.vertices[0], expected, atol=1e-12)


def test_single_joint_rotation_moves_only_its_subtree(hand):
    """Bending the index DIP by 60 degrees: vertices skinned only to it rotate rigidly about the
    rest DIP joint; vertices with no weight on the index finger do not move."""
    pose = hand.zero_pose()
    axis = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    pose[0, 3] = axis * np.pi / 3
    out = hand(pose)
    R = torch.tensor(Rotation.from_rotvec((axis * np.pi / 3).numpy()).as_matrix())
    only = hand.weights[:, 3] > 1 - 1e-9
    assert only.sum() > 20
    dip = hand.joints[3]
    expected = (hand.template[only] - dip) @ R.T + dip
    assert torch.allclose(out.vertices[0, only], expected, atol=1e-12)
    free = hand.weights[:, 1:4].sum(1) == 0
    assert torch.allclose(out.vertices[0, free], hand.template[free], atol=1e-12)


def test_shape_is_piecewise_linear(hand):
    s = torch.zeros(3, hand.num_shape, dtype=torch.float64)
    s[0, 1], s[1, 1], s[2, 1] = 0.5, 1.0, -1.0
    rest_v, rest_j = hand.shaped_rest(s)
    assert torch.allclose(rest_v[0] - hand.template, 0.5 * (rest_v[1] - hand.template), atol=1e-12)
    assert not torch.allclose(rest_v[2] - hand.template, -(rest_v[1] - hand.template), atol=1e-4)
    # Longer fingers: the middle fingertip gets farther from the wrist.
    tip = hand.tip_vertices[2]
    assert (rest_v[1, tip] - rest_j[1, 0]).norm() > (hand.template[tip] - hand.joints[0]).norm() + 0.005


def test_gradients_are_finite(hand):
    pose = random_pose(4)
    pose[0] = 0.0  # gradient at the identity rotation too
    pose.requires_grad_(True)
    shape = torch.zeros(4, hand.num_shape, dtype=torch.float64, requires_grad=True)
    trans = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    out = hand(pose, shape, trans)
    (out.vertices.square().sum() + out.joints21.sum()).backward()
    for t in (pose, shape, trans):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_fingertips_are_finger_ends(hand):
    out = hand(hand.zero_pose())
    j = out.joints21[0]
    for f in range(5):
        dip, tip = j[1 + 4 * f + 2], j[1 + 4 * f + 3]
        pip = j[1 + 4 * f + 1]
        assert (tip - pip).norm() > (dip - pip).norm()


def test_closed_hand_is_watertight(hand):
    pose = random_pose(1, scale=0.2)
    v, f = hand.closed(hand(pose).vertices)
    assert v.shape[1] == hand.num_vertices + hand.num_caps and hand.num_caps == 1
    mesh = trimesh.Trimesh(v[0].numpy(), f.numpy(), process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert 1e-4 < mesh.volume < 6e-4  # 100-600 cm^3, outward normals (positive volume)
    rest = trimesh.Trimesh(hand.closed(hand.template[None])[0][0].numpy(), f.numpy(), process=False)
    # A wrist rotation alone keeps the volume.
    p = hand.zero_pose()
    p[0, 0] = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    turned = trimesh.Trimesh(hand.closed(hand(p).vertices)[0][0].numpy(), f.numpy(), process=False)
    assert turned.volume == pytest.approx(rest.volume, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pose=torch.zeros(2, 15, 3)), "pose must have shape"),
        (dict(pose=torch.zeros(2, 16)), "pose must have shape"),
        (dict(pose=torch.full((1, 16, 3), float("nan"))), "NaN"),
        (dict(pose=torch.zeros(2, 16, 3), shape=torch.zeros(2, 4)), "shape must have shape"),
        (dict(pose=torch.zeros(2, 16, 3), shape=torch.zeros(3, 5)), "batch"),
        (dict(pose=torch.zeros(1, 16, 3), trans=torch.tensor([[0.0, float("inf"), 0.0]])), "NaN or inf"),
        (dict(pose=np.zeros((1, 16, 3))), "torch.Tensor"),
    ],
)
def test_bad_inputs_raise(kwargs, match):
    hand = load_hand()
    with pytest.raises(ValueError, match=match):
        hand(**kwargs)


def test_float32_model_and_dtype_conversion():
    h32 = load_hand()
    h64 = copy.deepcopy(h32).double()
    pose = random_pose(3)
    a = h32(pose.float()).vertices
    b = h64(pose).vertices
    assert a.dtype == torch.float32 and b.dtype == torch.float64
    assert h64.faces.dtype == torch.long and h64.tip_vertices.dtype == torch.long  # integer buffers stay integer
    assert (a.double() - b).abs().max() < 1e-5


def test_hand_is_a_module_of_buffers():
    hand = load_hand()
    assert isinstance(hand, torch.nn.Module) and not list(hand.parameters())
    state = hand.state_dict()
    assert {"template", "faces", "weights", "shape_dirs", "closed_faces", "cap_vertex"} <= set(state)
    # A model built from other numbers takes this one's state and then gives its outputs.
    other = load_hand()
    with torch.no_grad():
        for b in other.buffers():
            if b.is_floating_point():
                b.mul_(1.1)
    pose = random_pose(2).float()
    assert not torch.allclose(other(pose).vertices, hand(pose).vertices)
    other.load_state_dict(state)
    assert torch.equal(other(pose).vertices, hand(pose).vertices)
    # .to() moves every buffer in place, as for any module.
    same = hand.to(torch.float64)
    assert same is hand and all(b.dtype in (torch.float64, torch.long) for b in hand.buffers())


def test_pose_pca_round_trip():
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(45, 6, generator=g, dtype=torch.float64))[0].T  # (6, 45)
    coeffs = torch.randn(200, 6, generator=g, dtype=torch.float64)
    mean = torch.randn(45, generator=g, dtype=torch.float64) * 0.1
    poses = (mean + coeffs @ basis).reshape(200, 15, 3)
    pca = PosePCA.fit(poses, 6)
    assert torch.allclose(pca.decode(pca.encode(poses)), poses, atol=1e-10)
    # The fitted subspace is the generating one.
    proj = pca.components.T @ pca.components
    assert torch.allclose(proj @ basis.T, basis.T, atol=1e-10)
    full = pca.full_pose(torch.zeros(200, 3, dtype=torch.float64), pca.encode(poses))
    assert full.shape == (200, 16, 3)
    with pytest.raises(ValueError):
        PosePCA.fit(poses, 46)
