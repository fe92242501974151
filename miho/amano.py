"""A-MANO: twist-splay-bend frames, rotation decomposition and the anatomical cost (§3, §5.3,
Supp A.1, Eq. 10).

Frames (Supp A.1). For every joint ``j`` with child ``c`` (the next joint along its finger, the
fingertip after a distal joint, the middle MCP after the wrist) and the hand's "up" direction
``u`` (the back-of-hand normal of the palm, MANO's y axis):

* twist ``t = normalize(J_j - J_c)`` (along the bone, from the child to the joint),
* bend ``b = normalize(t x u)``,
* splay ``s = b x t``.

``(t, s, b)`` is right-handed and orthonormal; a frame tensor stores them as the columns of a
(..., 3, 3) matrix. With these signs a positive bend angle flexes a finger towards the palm and
a positive splay angle turns a finger of the right hand towards the thumb.

Decomposition. A joint rotation given as an axis-angle vector ``r = phi a`` (MANO's convention,
in the rest pose's world axes) has components ``F^T r = phi (a.t, a.s, a.b)`` in its rest
frame ``F``: ``phi`` times the axis components. :func:`compose` is the inverse.

Anatomical cost. Eq. 10 penalises the twist component of every rotation axis, the splay component
off the knuckles and bend angles beyond pi/2. :func:`anatomical_loss` generalises it to per-joint
intervals on the three angle components (hinge, linear in radians, summed over the 15 joints):
:data:`ANATOMICAL_LIMITS_DEG` (the published per-joint limits; the default) or
:func:`eq10_limits` (Eq. 10's own choice).

:func:`angles`, :func:`decompose`, :func:`compose` and :func:`anatomical_loss` run in every
iteration of GeO: they look for NaN on a CPU only (see :mod:`miho.checks`).
"""

from __future__ import annotations

import math
import numbers

import torch

from miho.checks import check_device, check_tensor
from miho.hand.model import FINGER_JOINTS, JOINTS21_ORDER, NUM_JOINTS, HandModel
from miho.optim import BatchAdam

#: Index of each MANO joint (0-15) in the 21-joint order, and of each fingertip (16-20).
_POS21 = {j: i for i, j in enumerate(JOINTS21_ORDER)}
#: Child of each MANO joint in the 21-joint numbering of :data:`_POS21` keys.
CHILD = {0: 4}
for _k, _f in enumerate(("thumb", "index", "middle", "ring", "little")):
    _a, _b, _c = FINGER_JOINTS[_f]
    CHILD.update({_a: _b, _b: _c, _c: NUM_JOINTS + _k})
_CHILD21 = [_POS21[CHILD[j]] for j in range(NUM_JOINTS)]
_JOINT21 = [_POS21[j] for j in range(NUM_JOINTS)]

KNUCKLES = (1, 4, 7, 10, 13)  # the four finger MCPs and the thumb's first joint

# (twist, splay, bend) limits in degrees as (low, high), per joint kind.
_THUMB_CMC = ((-45, 45), (-15, 45), (0, 45))
_THUMB_MCP = ((0, 0), (-10, 10), (0, 90))
_FINGER_MCP = ((0, 0), (-5, 5), (0, 90))
_HINGE = ((0, 0), (0, 0), (0, 90))  # PIP, DIP and the thumb's IP
#: Per-joint (twist, splay, bend) limits in degrees for MANO joints 1..15, shape (15, 3, 2).
ANATOMICAL_LIMITS_DEG = torch.tensor(
    [
        _THUMB_CMC if j == 13 else _THUMB_MCP if j == 14 else _FINGER_MCP if j in KNUCKLES else _HINGE
        for j in range(1, NUM_JOINTS)
    ],
    dtype=torch.float64,
)


def eq10_limits() -> torch.Tensor:
    """Eq. 10's limits in radians, (15, 3, 2): no twist anywhere, no splay off the knuckles,
    bend at most pi/2, everything else free."""
    inf = math.inf
    rows = []
    for j in range(1, NUM_JOINTS):
        splay = (-inf, inf) if j in KNUCKLES else (0.0, 0.0)
        rows.append(((0.0, 0.0), splay, (-inf, math.pi / 2)))
    return torch.tensor(rows, dtype=torch.float64)


def curl_pose(hand: HandModel, curl: float, shape: torch.Tensor | None = None) -> torch.Tensor:
    """(1, 16, 3) pose bending every joint by ``curl`` times its anatomical bend limit (0: the
    rest hand, 1: a closed fist within the limits)."""
    rest = rest_frames(hand, shape)
    tsb = torch.zeros(1, NUM_JOINTS - 1, 3, dtype=hand.dtype, device=hand.device)
    tsb[0, :, 2] = curl * torch.deg2rad(ANATOMICAL_LIMITS_DEG[:, 2, 1]).to(tsb)
    return compose(tsb, rest)


def palm_up(joints: torch.Tensor, side: str = "right") -> torch.Tensor:
    """Back-of-hand unit normal from (..., 16, 3) joints (MANO order), shape (..., 3).

    The palm plane is spanned by little-MCP -> index-MCP and wrist -> middle-MCP; for a right
    hand their cross product points out of the palm, so "up" is its opposite.
    """
    check_tensor("joints", joints, (..., NUM_JOINTS, 3), finite="cpu")
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    across = joints[..., 1, :] - joints[..., 7, :]
    along = joints[..., 4, :] - joints[..., 0, :]
    n = torch.linalg.cross(along, across)  # = -(across x along): dorsal for a right hand
    if side == "left":
        n = -n
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def frames(joints21: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Twist-splay-bend frames of the 16 joints.

    Args:
        joints21: (B, 21, 3) joints with fingertips in :data:`miho.hand.JOINTS21_ORDER`.
        up: (B, 3) or (B, 16, 3) "up" direction(s), e.g. :func:`palm_up`.

    Returns:
        (B, 16, 3, 3) frames in MANO joint order, columns (twist, splay, bend).
    """
    check_tensor("joints21", joints21, (None, 21, 3))
    B = joints21.shape[0]
    check_tensor("up", up)
    if up.shape not in ((B, 3), (B, NUM_JOINTS, 3)):
        raise ValueError(f"up must have shape ({B}, 3) or ({B}, {NUM_JOINTS}, 3), got {tuple(up.shape)}")
    check_device("up", up, joints21.device, "joints21")
    up = up.to(joints21.dtype)
    if up.dim() == 2:
        up = up[:, None].expand(-1, NUM_JOINTS, -1)
    twist = joints21[:, _JOINT21] - joints21[:, _CHILD21]
    twist = twist / twist.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    bend = torch.linalg.cross(twist, up)
    bend = bend / bend.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    splay = torch.linalg.cross(bend, twist)
    return torch.stack((twist, splay, bend), dim=-1)


def rest_frames(hand: HandModel, shape: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 16, 3, 3) frames of the shaped rest hand (B = shape's batch, 1 if None)."""
    if shape is None:
        shape = torch.zeros(1, hand.num_shape, dtype=hand.dtype, device=hand.device)
    rest_v, rest_j = hand.shaped_rest(shape)
    j21 = torch.cat((rest_j, rest_v[:, hand.tip_vertices]), 1)[:, list(JOINTS21_ORDER)]
    return frames(j21, palm_up(rest_j, hand.side))


def posed_frames(rest: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Rest frames (B, 16, 3, 3) carried by the bone transforms (B, 16, 4, 4) of a posed hand."""
    return transforms[..., :3, :3] @ rest


def decompose(pose: torch.Tensor, rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the 15 joint rotations into axis components and angles.

    Args:
        pose: (B, 16, 3) axis-angle pose (MANO convention). rest: (B or 1, 16, 3, 3) rest frames.

    Returns:
        axis: (B, 15, 3) unit rotation axis in (twist, splay, bend) components (zero for no
        rotation); angle: (B, 15) rotation angle in radians.
    """
    c = angles(pose, rest)
    angle = c.norm(dim=-1)
    return c / angle[..., None].clamp_min(1e-12), angle


def angles(pose: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """(B, 16, 3) pose and (B or 1, 16, 3, 3) rest frames -> (B, 15, 3) (twist, splay, bend)
    angle components in radians."""
    check_tensor("pose", pose, (None, NUM_JOINTS, 3), finite="cpu")
    rest = _check_rest(rest, "pose", pose)
    return (rest[:, 1:].transpose(-1, -2) @ pose[:, 1:, :, None])[..., 0]


def _check_rest(rest: torch.Tensor, name: str, t: torch.Tensor) -> torch.Tensor:
    """(1 or B, 16, 3, 3) rest frames for the (B, ...) argument ``name`` = ``t``, in its dtype."""
    B = t.shape[0]
    check_tensor("rest", rest, (None, NUM_JOINTS, 3, 3), finite="cpu")
    if rest.shape[0] not in (1, B):
        raise ValueError(f"rest must have shape (1, {NUM_JOINTS}, 3, 3) or ({B}, {NUM_JOINTS}, 3, 3), "
                         f"got {tuple(rest.shape)}")  # fmt: skip
    check_device("rest", rest, t.device, name)
    return rest.to(t.dtype)


def compose(tsb: torch.Tensor, rest: torch.Tensor, wrist: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 15, 3) (twist, splay, bend) angles in radians and (B or 1, 16, 3, 3) rest frames
    (+ optional (B, 3) wrist axis-angle) -> (B, 16, 3) pose."""
    check_tensor("tsb", tsb, (None, NUM_JOINTS - 1, 3), finite="cpu")
    rest = _check_rest(rest, "tsb", tsb)
    joints = (rest[:, 1:] @ tsb[..., None])[..., 0]
    if wrist is None:
        wrist = torch.zeros_like(joints[:, 0])
    check_tensor("wrist", wrist, (tsb.shape[0], 3), finite="cpu")
    check_device("wrist", wrist, tsb.device, "tsb")
    return torch.cat((wrist[:, None].to(joints.dtype), joints), 1)


def limit_violations(pose: torch.Tensor, rest: torch.Tensor, limits: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 15, 3): the distance of each joint's (twist, splay, bend) angle component to its
    allowed interval, radians (0 inside it).

    Args:
        pose: (B, 16, 3) axis-angle pose. rest: (B or 1, 16, 3, 3) rest frames.
        limits: (15, 3, 2) radians (low, high); default :data:`ANATOMICAL_LIMITS_DEG` in radians.
    """
    c = angles(pose, rest)
    if limits is None:
        limits = torch.deg2rad(ANATOMICAL_LIMITS_DEG)
    check_tensor("limits", limits, (NUM_JOINTS - 1, 3, 2), finite=False)  # infinite bounds are allowed
    limits = limits.to(dtype=c.dtype, device=c.device)
    return (c - limits[..., 1]).clamp_min(0) + (limits[..., 0] - c).clamp_min(0)


def anatomical_loss(pose: torch.Tensor, rest: torch.Tensor, limits: torch.Tensor | None = None) -> torch.Tensor:
    """L_anat (Eq. 10, per-joint limits): (B,) sum over joints and axes of
    :func:`limit_violations`, radians (arguments as there)."""
    return limit_violations(pose, rest, limits).sum((1, 2))


def fit_to_joints(
    hand: HandModel,
    target: torch.Tensor,
    anat_weight: float = 0.0,
    steps: int = 300,
    lr: float = 0.05,
    shape: torch.Tensor | None = None,
    limits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Fit a pose to (B, 21, 3) target joints with Adam, optionally regularised by L_anat.

    The wrist rotation and translation are fitted too. This is the setting of the paper's
    Fig. 7: positions alone leave the twists free, and L_anat keeps them anatomical.

    Returns:
        pose (B, 16, 3) and a dict with ``trans`` (B, 3), ``joint_error`` (B,) mean joint
        distance in metres and ``anat`` (B,) final L_anat.
    """
    check_tensor("target", target, (None, 21, 3))
    check_device("target", target, hand.device, "the hand model")
    if not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    target = target.to(hand.dtype)
    B = target.shape[0]
    rest = rest_frames(hand, shape)
    pose = torch.zeros(B, NUM_JOINTS, 3, dtype=hand.dtype, device=hand.device)
    pose[:, 1:] = 1e-3  # away from 0, where the axis of a rotation is undefined
    pose.requires_grad_(True)
    trans = (target[:, 0] - hand.joints[0]).detach().clone().requires_grad_(True)
    opt = BatchAdam([pose, trans], [1.0, 1.0], torch.full((B,), lr, dtype=hand.dtype, device=hand.device))
    for _ in range(steps):
        out = hand(pose, shape, trans)
        data = ((out.joints21 - target) ** 2).sum(-1).mean(-1)
        loss = (data / 1e-4 + anat_weight * anatomical_loss(pose, rest, limits)).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = hand(pose, shape, trans)
        err = (out.joints21 - target).norm(dim=-1).mean(-1)
        anat = anatomical_loss(pose, rest, limits)
    return pose.detach(), {"trans": trans.detach(), "joint_error": err, "anat": anat}
