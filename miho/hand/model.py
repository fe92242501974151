"""One linear-blend-skinning hand, batched on any device (paper §3).

Every hand (the open Anny hand, MANO, a test hand) is *data* behind this single code path:

* ``template`` (V, 3): rest vertices at zero shape, metres;
* ``faces`` (F, 3): triangles, counter-clockwise seen from outside (normals point out);
* ``weights`` (V, 16): skinning weights over the 16 joints, rows sum to 1;
* ``parents`` (16,): kinematic tree, ``parents[0] == -1`` (wrist);
* ``joints`` (16, 3): rest joint positions at zero shape;
* ``shape_dirs`` / ``shape_dirs_neg`` (S, V, 3) and ``joint_shape_dirs`` /
  ``joint_shape_dirs_neg`` (S, 16, 3): shape blend directions applied to ``relu(beta)`` and to
  ``relu(-beta)`` (a linear shape space such as MANO's has ``*_neg == -*``; Anny's local changes
  have separate increase / decrease targets);
* ``pose_dirs`` (optional, 135, V, 3): pose-corrective blend shapes driven by the 15 finger
  rotation matrices minus identity (MANO has them, Anny does not);
* ``tip_vertices`` (5,): one vertex per fingertip in the order thumb, index, middle, ring, little.

Joint order is MANO's: 0 wrist; 1-3 index, 4-6 middle, 7-9 little, 10-12 ring, 13-15 thumb
(each finger proximal to distal). A pose is a wrist (global) rotation plus 15 joint rotations in
axis-angle, (B, 16, 3), each expressed in the rest pose's world-aligned axes (as MANO does):
joint ``j`` turns its subtree about its rest position before its parents move it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from miho.checks import check_device, check_tensor
from miho.rotations import axis_angle_to_matrix, rigid

NUM_JOINTS = 16
FINGERS = ("thumb", "index", "middle", "ring", "little")
#: MANO joint ids of each finger, proximal to distal.
FINGER_JOINTS = {
    "thumb": (13, 14, 15),
    "index": (1, 2, 3),
    "middle": (4, 5, 6),
    "ring": (10, 11, 12),
    "little": (7, 8, 9),
}
#: The 21-joint order returned as ``joints21``: wrist, then per finger (thumb, index, middle,
#: ring, little) its three joints and its tip. Entries >= 16 index the fingertips (16 + finger).
JOINTS21_ORDER = (0,) + tuple(j for i, f in enumerate(FINGERS) for j in (*FINGER_JOINTS[f], NUM_JOINTS + i))
#: MANO's kinematic tree.
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)


def _tree_levels(parents: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """(joint ids, their parents) grouped by depth in the tree, depth >= 1."""
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    ids = [[j for j in range(len(parents)) if depth[j] == d] for d in range(1, max(depth) + 1)]
    return [(level, [parents[j] for j in level]) for level in ids]


_TREE_LEVELS = _tree_levels(MANO_PARENTS)


@dataclass
class HandOutput:
    """Result of :meth:`HandModel.forward`. All positions in metres.

    vertices: (B, V, 3) posed vertices.
    joints: (B, 16, 3) posed joints in MANO order.
    joints21: (B, 21, 3) posed joints with fingertips, order :data:`JOINTS21_ORDER`.
    transforms: (B, 16, 4, 4) rigid transform of each joint's bone, rest -> posed (what the
        skinning applies), translation included.
    rest_vertices: (B, V, 3) shaped rest vertices (before posing).
    rest_joints: (B, 16, 3) shaped rest joints.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    joints21: torch.Tensor
    transforms: torch.Tensor
    rest_vertices: torch.Tensor
    rest_joints: torch.Tensor


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary edges of a triangle mesh, each ordered as the faces traverse it.

    A boundary edge (a, b) is a directed face edge whose reverse (b, a) belongs to no face.
    """
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    directed = {(int(a), int(b)) for a, b in edges}
    nxt = {a: b for a, b in directed if (b, a) not in directed}
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


class HandModel(torch.nn.Module):
    """A linear-blend-skinning hand with MANO's interface (see the module docstring).

    An ``nn.Module`` whose arrays are buffers (no trainable parameters): ``.to()``, ``.double()``,
    ``state_dict()``, ``copy.deepcopy`` and ``torch.compile`` work as for any module. Like any
    module, ``.to()`` moves the model in place; ``copy.deepcopy(hand).to(device)`` keeps the original.
    """

    def __init__(
        self,
        *,
        name: str,
        template: torch.Tensor,
        faces: torch.Tensor,
        weights: torch.Tensor,
        joints: torch.Tensor,
        shape_dirs: torch.Tensor,
        joint_shape_dirs: torch.Tensor,
        tip_vertices: torch.Tensor,
        shape_names: list[str],
        parents: torch.Tensor | None = None,
        shape_dirs_neg: torch.Tensor | None = None,
        joint_shape_dirs_neg: torch.Tensor | None = None,
        pose_dirs: torch.Tensor | None = None,
        side: str = "right",
    ) -> None:
        if side not in ("right", "left"):
            raise ValueError(f"side must be 'right' or 'left', got {side!r}")
        V = template.shape[0]
        S = shape_dirs.shape[0]
        check_tensor("template", template, (V, 3))
        check_tensor("faces", faces, (None, 3), floating=False)
        check_tensor("weights", weights, (V, NUM_JOINTS))
        check_tensor("joints", joints, (NUM_JOINTS, 3))
        check_tensor("shape_dirs", shape_dirs, (S, V, 3))
        check_tensor("joint_shape_dirs", joint_shape_dirs, (S, NUM_JOINTS, 3))
        check_tensor("tip_vertices", tip_vertices, (5,), floating=False)
        if len(shape_names) != S:
            raise ValueError(f"shape_names has {len(shape_names)} names for {S} shape directions")
        if int(faces.min()) < 0 or int(faces.max()) >= V:
            raise ValueError(f"faces index vertices outside [0, {V})")
        if not torch.allclose(weights.sum(1), torch.ones_like(weights[:, 0]), atol=1e-4):
            raise ValueError("skinning weights must sum to 1 for every vertex")
        if shape_dirs_neg is None:
            shape_dirs_neg = -shape_dirs
        if joint_shape_dirs_neg is None:
            joint_shape_dirs_neg = -joint_shape_dirs
        check_tensor("shape_dirs_neg", shape_dirs_neg, (S, V, 3))
        check_tensor("joint_shape_dirs_neg", joint_shape_dirs_neg, (S, NUM_JOINTS, 3))
        if pose_dirs is not None:
            check_tensor("pose_dirs", pose_dirs, (9 * (NUM_JOINTS - 1), V, 3))
        if parents is None:
            parents = torch.tensor(MANO_PARENTS)
        if tuple(int(p) for p in parents) != MANO_PARENTS:
            raise ValueError(f"parents must be MANO's kinematic tree {MANO_PARENTS}")

        super().__init__()
        self.name = name
        self.side = side
        self.shape_names = list(shape_names)
        dtype = template.dtype if template.is_floating_point() else torch.float32
        f = dict(dtype=dtype, device=template.device)
        longs = dict(dtype=torch.long, device=template.device)
        faces = faces.to(**longs)
        # Closed surface: every boundary loop (the wrist opening) capped by a fan around one
        # extra vertex at the loop's centroid, oriented like the rest of the mesh.
        loops = boundary_loops(faces.cpu().numpy())
        caps = [(int(b), int(a), V + k) for k, lp in enumerate(loops) for a, b in zip(lp, np.roll(lp, -1))]
        buffers = dict(
            template=template.to(**f),
            faces=faces,
            weights=weights.to(**f),
            parents=parents.to(**longs),
            joints=joints.to(**f),
            shape_dirs=shape_dirs.to(**f),
            shape_dirs_neg=shape_dirs_neg.to(**f),
            joint_shape_dirs=joint_shape_dirs.to(**f),
            joint_shape_dirs_neg=joint_shape_dirs_neg.to(**f),
            pose_dirs=None if pose_dirs is None else pose_dirs.to(**f),
            tip_vertices=tip_vertices.to(**longs),
            closed_faces=torch.cat((faces, torch.as_tensor(caps, **longs).reshape(-1, 3))),
            # The boundary loops as (vertex id, loop id) pairs: cap centre k is the mean of loop k.
            cap_vertex=torch.as_tensor(np.concatenate(loops) if loops else np.zeros(0), **longs),
            cap_loop=torch.as_tensor(np.repeat(np.arange(len(loops)), [len(lp) for lp in loops]), **longs),
        )
        for k, t in buffers.items():
            self.register_buffer(k, t)
        self.num_caps = len(loops)

    # ------------------------------------------------------------------ basic properties
    @property
    def num_vertices(self) -> int:
        return self.template.shape[0]

    @property
    def num_shape(self) -> int:
        return self.shape_dirs.shape[0]

    @property
    def device(self) -> torch.device:
        return self.template.device

    @property
    def dtype(self) -> torch.dtype:
        return self.template.dtype

    def extra_repr(self) -> str:
        return (
            f"{self.name!r}, {self.side} hand, V={self.num_vertices}, F={self.faces.shape[0]}, "
            f"shape={self.shape_names}, device={self.device}, dtype={self.dtype}"
        )

    def reshaped(self, shape: torch.Tensor, name: str | None = None) -> "HandModel":
        """A new model whose zero-shape template is this hand at ``shape`` ((1, S) or (S,)).

        The shape directions stay the same, so the new model's shape space is centred on the
        given hand (a personalised hand, or a differently sized test hand).
        """
        S = self.num_shape
        check_tensor("shape", shape)
        if shape.shape not in ((S,), (1, S)):
            raise ValueError(f"shape must have shape ({S},) or (1, {S}), got {tuple(shape.shape)}")
        rest_v, rest_j = self.shaped_rest(shape.reshape(1, S))
        return HandModel(
            name=name or f"{self.name} (reshaped)", template=rest_v[0], faces=self.faces,
            weights=self.weights, joints=rest_j[0], shape_dirs=self.shape_dirs,
            shape_dirs_neg=self.shape_dirs_neg, joint_shape_dirs=self.joint_shape_dirs,
            joint_shape_dirs_neg=self.joint_shape_dirs_neg, pose_dirs=self.pose_dirs,
            tip_vertices=self.tip_vertices, shape_names=self.shape_names, side=self.side,
        )  # fmt: skip

    # ------------------------------------------------------------------ inputs
    def zero_pose(self, batch: int = 1) -> torch.Tensor:
        """(B, 16, 3) zero axis-angle pose (the flat template)."""
        return torch.zeros(batch, NUM_JOINTS, 3, dtype=self.dtype, device=self.device)

    def _inputs(self, pose, shape, trans):
        # Called in every iteration of an optimiser: NaN is looked for on a CPU only (no sync).
        matrices = isinstance(pose, torch.Tensor) and pose.dim() == 4
        check_tensor("pose", pose, (None, NUM_JOINTS, 3, 3) if matrices else (None, NUM_JOINTS, 3), finite="cpu")
        B = pose.shape[0]
        f = dict(dtype=self.dtype, device=self.device)
        shape = torch.zeros(1, self.num_shape, **f) if shape is None else shape
        trans = torch.zeros(1, 3, **f) if trans is None else trans
        check_tensor("shape", shape, (None, self.num_shape), finite="cpu")
        check_tensor("trans", trans, (None, 3), finite="cpu")
        for name, t in (("pose", pose), ("shape", shape), ("trans", trans)):
            check_device(name, t, self.device, "the hand model")
            if t.shape[0] not in (1, B):
                raise ValueError(f"{name} has batch {t.shape[0]}, pose has batch {B}")
        return pose.to(**f), shape.to(**f), trans.to(**f)

    # ------------------------------------------------------------------ forward
    def shaped_rest(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) shape -> rest vertices (B, V, 3) and rest joints (B, 16, 3), metres."""
        check_tensor("shape", shape, (None, self.num_shape))
        check_device("shape", shape, self.device, "the hand model")
        return self._rest(shape.to(self.dtype))

    def _rest(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos, neg = shape.clamp_min(0), (-shape).clamp_min(0)
        V, S = self.num_vertices, self.num_shape
        dv = pos @ self.shape_dirs.reshape(S, -1) + neg @ self.shape_dirs_neg.reshape(S, -1)
        dj = pos @ self.joint_shape_dirs.reshape(S, -1) + neg @ self.joint_shape_dirs_neg.reshape(S, -1)
        return self.template + dv.reshape(-1, V, 3), self.joints + dj.reshape(-1, NUM_JOINTS, 3)

    def forward(
        self,
        pose: torch.Tensor,
        shape: torch.Tensor | None = None,
        trans: torch.Tensor | None = None,
    ) -> HandOutput:
        """Pose and shape the hand.

        Args:
            pose: (B, 16, 3) axis-angle, wrist rotation then the 15 joints in MANO order; or the
                same rotations as (B, 16, 3, 3) matrices.
            shape: (B, S) or (1, S) shape coefficients (see ``shape_names``); default zeros.
            trans: (B, 3) or (1, 3) translation in metres added to everything; default zeros.

        Returns:
            :class:`HandOutput`. The wrist rotation turns the hand about the rest wrist joint.

        Raises:
            ValueError: wrong shapes or dtypes, an input on another device than the model, NaN/inf
                inputs on a CPU (not looked for on an accelerator, where it would cost a device
                sync in every call: NaN there gives NaN outputs).
        """
        pose, shape, trans = self._inputs(pose, shape, trans)
        B, V = pose.shape[0], self.num_vertices
        rest_v, rest_j = self._rest(shape)
        rest_v, rest_j = rest_v.expand(B, -1, -1), rest_j.expand(B, -1, -1)
        rot = pose if pose.dim() == 4 else axis_angle_to_matrix(pose)  # (B, 16, 3, 3)
        if self.pose_dirs is not None:
            eye = torch.eye(3, dtype=self.dtype, device=self.device)
            feat = (rot[:, 1:] - eye).reshape(B, 9 * (NUM_JOINTS - 1))
            rest_v = rest_v + (feat @ self.pose_dirs.reshape(feat.shape[1], -1)).reshape(B, V, 3)

        # Forward kinematics, one tree level at a time (wrist; then 3 levels of 5 fingers).
        g_rot = [rot[:, 0]] + [None] * (NUM_JOINTS - 1)
        g_pos = [rest_j[:, 0]] + [None] * (NUM_JOINTS - 1)
        for level, par in _TREE_LEVELS:
            pr = torch.stack([g_rot[p] for p in par], 1)  # (B, n, 3, 3)
            pp = torch.stack([g_pos[p] for p in par], 1)  # (B, n, 3)
            off = rest_j[:, level] - rest_j[:, par]
            pos = pp + (pr @ off[..., None])[..., 0]
            r = pr @ rot[:, level]
            for i, j in enumerate(level):
                g_rot[j], g_pos[j] = r[:, i], pos[:, i]
        g_rot = torch.stack(g_rot, 1)  # (B, 16, 3, 3)
        g_pos = torch.stack(g_pos, 1)  # (B, 16, 3)
        # Bone transform x -> R (x - J_rest) + J_posed.
        t = g_pos - (g_rot @ rest_j[..., None])[..., 0] + trans[:, None]
        a = torch.cat((g_rot, t[..., None]), -1).reshape(B, NUM_JOINTS, 12)
        blend = (self.weights @ a).reshape(B, V, 3, 4)  # (B, V, 3, 4)
        verts = (blend[..., :3] @ rest_v[..., None])[..., 0] + blend[..., 3]
        joints = g_pos + trans[:, None]
        tips = verts[:, self.tip_vertices]
        joints21 = torch.cat((joints, tips), 1)[:, list(JOINTS21_ORDER)]
        return HandOutput(
            vertices=verts,
            joints=joints,
            joints21=joints21,
            transforms=rigid(g_rot, t),
            rest_vertices=rest_v,
            rest_joints=rest_j,
        )

    # ------------------------------------------------------------------ closed surface
    def closed(self, vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Watertight version of the hand surface (wrist opening capped).

        Args:
            vertices: (B, V, 3) hand vertices (posed or not).

        Returns:
            (B, V + L, 3) vertices with one cap centre per boundary loop appended (the mean of
            the loop's vertices, so it follows any pose) and the (F + C, 3) closed faces.
        """
        check_tensor("vertices", vertices, (None, self.num_vertices, 3))
        check_device("vertices", vertices, self.device, "the hand model")
        B = vertices.shape[0]
        sums = vertices.new_zeros(B, self.num_caps, 3).index_add_(1, self.cap_loop, vertices[:, self.cap_vertex])
        counts = torch.bincount(self.cap_loop, minlength=self.num_caps).to(vertices.dtype)
        return torch.cat((vertices, sums / counts[:, None]), 1), self.closed_faces


def fingertip_vertices(template: torch.Tensor, weights: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
    """One tip vertex per finger (thumb, index, middle, ring, little), for any hand topology.

    The tip of a finger is, among the vertices skinned mostly to its distal joint, the one
    farthest along the distal bone (direction from the middle to the distal joint).

    Args:
        template: (V, 3) rest vertices. weights: (V, 16). joints: (16, 3) rest joints.

    Returns:
        (5,) long vertex ids.
    """
    owner = weights.argmax(1)
    tips = []
    for f in FINGERS:
        j2, j3 = FINGER_JOINTS[f][1:]
        cand = (owner == j3).nonzero()[:, 0]
        if cand.numel() == 0:
            raise ValueError(f"no vertex is skinned mainly to the {f} distal joint {j3}")
        along = (template[cand] - joints[j3]) @ (joints[j3] - joints[j2])
        tips.append(cand[along.argmax()])
    return torch.stack(tips)
