"""The committed Anny hand asset reproduces anny's own skinned vertices (needs ``anny``).

Marked ``slow``: on a machine whose anny cache is empty, anny builds its model data for about
40 s before the first call. The asset changes only when anny does (``data_scripts/build_anny_hand_asset.py``).
"""

import pytest
import torch

from miho.hand import load_hand
from miho.hand.anny_asset import SHAPE_LOCAL_CHANGES, anny_root_frame, make_anny_right_hand
from miho.rotations import axis_angle_to_matrix, matrix_to_axis_angle

anny = pytest.importorskip("anny")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def anny_hand():
    return make_anny_right_hand()


def _palm_bones(model):
    return [i for i, b in enumerate(model.bone_labels) if b.startswith(("wrist", "metacarpal"))]


def _anny_call(model, delta, shape, bones=None):
    """Anny's output for local-bone deltas (B, 21, 4, 4) and miho shape (B, 5), with the wrist and
    metacarpal deltas replaced by the ones that keep them rigid with the root (miho fixes the
    metacarpals to the palm). Anny's identity delta is its reference pose, whose orientations
    differ from the rest mesh's by about 1 degree, so the palm deltas are solved for, in
    anny.utils.kinematics' notation: T_c = T_p  <=>  D_c = U_c^T U_p R_p^T R_c, d_c = 0."""
    names = [f"{v}-incr" for v in SHAPE_LOCAL_CHANGES.values()]
    kw = {n: shape[:, i] for i, n in enumerate(names)}
    R = model(delta, local_changes_kwargs=kw)["rest_bone_poses"][..., :3, :3]  # (B, 21, 3, 3)
    U = model.reference_bone_orientations
    delta = delta.clone()
    for c in bones if bones is not None else _palm_bones(model):
        p = model.bone_parents[c]
        delta[:, c] = torch.eye(4, dtype=delta.dtype)
        delta[:, c, :3, :3] = U[c].T @ U[p] @ R[:, p].transpose(-1, -2) @ R[:, c]
    return model(delta, local_changes_kwargs=kw)


def _random_anny_inputs(model, batch, gen):
    """Random local-bone deltas: a rigid root pose and random finger rotations."""
    n = len(model.bone_labels)
    delta = torch.eye(4, dtype=torch.float64).repeat(batch, n, 1, 1)
    labels = [b.removesuffix(".R") for b in model.bone_labels]
    for i, b in enumerate(labels):
        if b.startswith("finger"):
            delta[:, i, :3, :3] = axis_angle_to_matrix(0.5 * torch.randn(batch, 3, generator=gen, dtype=torch.float64))
    delta[:, 0, :3, :3] = axis_angle_to_matrix(torch.randn(batch, 3, generator=gen, dtype=torch.float64))
    delta[:, 0, :3, 3] = 0.1 * torch.randn(batch, 3, generator=gen, dtype=torch.float64)
    shape = 2 * torch.rand(batch, len(SHAPE_LOCAL_CHANGES), generator=gen, dtype=torch.float64) - 1
    return delta, shape


def _to_miho_pose(model, out, hand_rest_joints, root_frame):
    """Per-joint skinning transforms of anny (T = W P^-1) re-expressed as miho's MANO-style
    pose: local rotations in world-aligned axes, and the wrist's rigid motion as (R0, trans)."""
    from miho.hand.anny_asset import ANNY_BONE_TO_JOINT

    T = out["bone_poses"] @ torch.linalg.inv(out["rest_bone_poses"])  # body rest -> posed
    T = T @ torch.linalg.inv(torch.as_tensor(root_frame))  # asset rest -> posed
    labels = [b.removesuffix(".R") for b in model.bone_labels]
    bone_of = {j: labels.index(b) for b, j in ANNY_BONE_TO_JOINT.items() if "finger" in b}
    bone_of[0] = labels.index("wrist")
    G = torch.stack([T[:, bone_of[j], :3, :3] for j in range(16)], 1)  # global rotations
    parents = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]
    local = [G[:, 0]] + [G[:, parents[j]].transpose(-1, -2) @ G[:, j] for j in range(1, 16)]
    pose = matrix_to_axis_angle(torch.stack(local, 1))
    j0 = hand_rest_joints[:, 0]
    trans = T[:, bone_of[0], :3, 3] + (G[:, 0] @ j0[..., None])[..., 0] - j0
    return pose, trans


def test_asset_reproduces_anny_vertices(anny_hand):
    gen = torch.Generator().manual_seed(0)
    hand = load_hand("anny", dtype=torch.float64)
    delta, shape = _random_anny_inputs(anny_hand, 8, gen)
    out = _anny_call(anny_hand, delta, shape)
    rest_j = hand.shaped_rest(shape)[1]
    pose, trans = _to_miho_pose(anny_hand, out, rest_j, anny_root_frame(anny_hand))
    mine = hand(pose, shape, trans)
    err = (mine.vertices - out["vertices"]).norm(dim=-1)
    assert err.mean() < 1e-4, f"mean vertex error {err.mean() * 1e3:.4f} mm"
    assert err.max() < 1e-5
    # And the posed joints are anny's bone heads.
    heads = out["bone_poses"][..., :3, 3]
    assert (
        mine.joints[:, 1] - heads[:, [b.removesuffix(".R") for b in anny_hand.bone_labels].index("finger2-1")]
    ).norm(dim=-1).max() < 1e-4


def test_asset_template_is_anny_rest(anny_hand):
    hand = load_hand("anny", dtype=torch.float64)
    delta = torch.eye(4, dtype=torch.float64).repeat(1, 21, 1, 1)
    rigid = range(1, len(anny_hand.bone_labels))  # every bone held at its rest orientation
    out = _anny_call(anny_hand, delta, torch.zeros(1, 5, dtype=torch.float64), bones=rigid)
    assert hand.num_vertices == 1609
    assert (hand.template - out["vertices"][0]).norm(dim=-1).max() < 1e-6
