"""A-MANO frames, decomposition and the anatomical cost."""

import math

import pytest
import torch

from miho import amano
from miho.hand import load_hand
from miho.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def hand():
    return load_hand(dtype=torch.float64)


@pytest.fixture(scope="module")
def rest(hand):
    return amano.rest_frames(hand)


def _assert_orthonormal_right_handed(F):
    eye = torch.eye(3, dtype=F.dtype)
    assert (F.transpose(-1, -2) @ F - eye).abs().max() < 1e-9
    assert torch.allclose(torch.det(F), torch.ones_like(F[..., 0, 0]), atol=1e-9)
    t, s, b = F.unbind(-1)
    assert torch.allclose(torch.linalg.cross(t, s), b, atol=1e-9)


def test_rest_frames_orthonormal_and_on_bones(hand, rest):
    _assert_orthonormal_right_handed(rest)
    out = hand(hand.zero_pose())
    # twist of the index PIP (joint 2) points from its child (DIP, 3) back to it.
    d = out.joints[0, 2] - out.joints[0, 3]
    assert torch.allclose(rest[0, 2, :, 0], d / d.norm(), atol=1e-12)
    # splay is "up" made orthogonal to twist: it points to the back of the hand.
    up = amano.palm_up(out.joints, hand.side)
    assert ((rest[0, 1:, :, 1] * up[:, None]).sum(-1) > 0.5).all()


def test_posed_frames_orthonormal_and_follow_bones(hand, rest):
    g = torch.Generator().manual_seed(3)
    pose = 0.5 * torch.randn(4, 16, 3, generator=g, dtype=torch.float64)
    out = hand(pose)
    F = amano.posed_frames(rest, out.transforms)
    _assert_orthonormal_right_handed(F)
    # The posed twist still runs along the posed bone (here the ring DIP -> ring tip).
    d = out.joints21[:, 15] - out.joints21[:, 16]  # ring DIP (joint 12) and ring tip
    assert torch.allclose(F[:, 12, :, 0], d / d.norm(dim=-1, keepdim=True), atol=1e-9)


def test_positive_bend_flexes_towards_palm(hand, rest):
    tsb = torch.zeros(1, 15, 3, dtype=torch.float64)
    tsb[0, :, 2] = 0.5  # every joint bends by 0.5 rad
    out = hand(amano.compose(tsb, rest))
    flat = hand(hand.zero_pose())
    up = amano.palm_up(flat.joints, hand.side)[0]
    moved = (out.joints21 - flat.joints21)[0, [8, 12, 16, 20]]  # index..little tips
    assert (moved @ up < -0.02).all()  # more than 2 cm towards the palm side


def test_decompose_compose_round_trip(hand, rest):
    g = torch.Generator().manual_seed(4)
    tsb = torch.randn(6, 15, 3, generator=g, dtype=torch.float64)
    wrist = torch.randn(6, 3, generator=g, dtype=torch.float64)
    pose = amano.compose(tsb, rest, wrist)
    assert torch.allclose(amano.angles(pose, rest), tsb, atol=1e-12)
    axis, angle = amano.decompose(pose, rest)
    assert torch.allclose(axis.norm(dim=-1), torch.ones(6, 15, dtype=torch.float64))
    assert torch.allclose(angle, tsb.norm(dim=-1))
    # A pure bend of angle phi is a rotation by phi about the bend axis.
    one = torch.zeros(1, 15, 3, dtype=torch.float64)
    one[0, 4, 2] = 0.7
    R = axis_angle_to_matrix(amano.compose(one, rest)[0, 5])
    b = rest[0, 5, :, 2]
    assert torch.allclose(R @ b, b, atol=1e-12)
    assert math.isclose(torch.acos((torch.trace(R) - 1) / 2).item(), 0.7, rel_tol=1e-9)


def test_anatomical_loss_zero_inside_limits_and_grows_with_twist(rest):
    tsb = torch.zeros(5, 15, 3, dtype=torch.float64)
    hi = torch.deg2rad(amano.ANATOMICAL_LIMITS_DEG[:, 2, 1])  # 90 deg, 45 for the thumb CMC
    tsb[:, :, 2] = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)[:, None] * hi  # within limits
    assert torch.allclose(amano.anatomical_loss(amano.compose(tsb, rest), rest), torch.zeros(5, dtype=torch.float64))
    # Twist on the index PIP (no twist allowed): the cost is exactly |twist|.
    twists = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    tsb = torch.zeros(6, 15, 3, dtype=torch.float64)
    tsb[:, 1, 0] = twists
    cost = amano.anatomical_loss(amano.compose(tsb, rest), rest)
    assert torch.allclose(cost, twists, atol=1e-12)
    assert (cost.diff() > 0).all()
    # Over-bending by 0.2 rad and hyper-extension by 0.3 rad cost their excess.
    tsb = torch.zeros(2, 15, 3, dtype=torch.float64)
    tsb[0, 2, 2] = math.pi / 2 + 0.2
    tsb[1, 2, 2] = -0.3
    cost = amano.anatomical_loss(amano.compose(tsb, rest), rest)
    assert torch.allclose(cost, torch.tensor([0.2, 0.3], dtype=torch.float64), atol=1e-12)


def test_eq10_limits(rest):
    tsb = torch.zeros(3, 15, 3, dtype=torch.float64)
    tsb[0, 0, 1] = 0.4  # splay on a knuckle (index MCP): free in Eq. 10
    tsb[1, 1, 1] = 0.4  # splay on the index PIP: penalised
    tsb[2, 1, 2] = -0.5  # hyper-extension: Eq. 10 only bounds bend from above
    cost = amano.anatomical_loss(amano.compose(tsb, rest), rest, amano.eq10_limits())
    assert torch.allclose(cost, torch.tensor([0.0, 0.4, 0.0], dtype=torch.float64), atol=1e-12)


def test_anatomical_loss_is_differentiable(rest):
    pose = torch.full((2, 16, 3), 0.3, dtype=torch.float64, requires_grad=True)
    amano.anatomical_loss(pose, rest).sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad[:, 1:].abs().sum() > 0
    assert (pose.grad[:, 0] == 0).all()  # the wrist is not constrained


def test_constrained_fit_keeps_anatomy(hand, rest):
    """Fig. 7 in miniature: fitting joints alone leaves twists free; L_anat removes them."""
    tsb = torch.zeros(2, 15, 3, dtype=torch.float64)
    tsb[:, :, 2] = torch.tensor([0.6, 0.5, 0.3] * 4 + [0.3, 0.4, 0.4], dtype=torch.float64)
    target = hand(amano.compose(tsb, rest)).joints21
    target = target + 0.002 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    free, info_free = amano.fit_to_joints(hand, target, anat_weight=0.0, steps=150)
    kept, info_kept = amano.fit_to_joints(hand, target, anat_weight=1.0, steps=150)
    assert (info_kept["joint_error"] < 0.005).all()  # both fit the joints to a few mm
    assert (info_free["joint_error"] < 0.005).all()
    assert (info_kept["anat"] < 0.5 * info_free["anat"]).all()


def test_bad_input_raises(hand, rest):
    with pytest.raises(ValueError, match="pose must have shape"):
        amano.anatomical_loss(torch.zeros(2, 15, 3), rest)
    with pytest.raises(ValueError, match="joints21"):
        amano.frames(torch.zeros(2, 16, 3), torch.zeros(2, 3))
