"""Batched rotation conversions (axis-angle <-> matrix), differentiable everywhere.

Axis-angle vectors ``r`` have shape (..., 3): direction = unit rotation axis, norm = angle in
radians. Matrices have shape (..., 3, 3) and act on column vectors. Inputs must be floating
tensors of those shapes (a ``ValueError`` otherwise); NaN is not looked for (these run in every
iteration of GeO, see :mod:`miho.checks`): NaN in gives NaN out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from miho.checks import check_tensor

_SMALL = 1e-6


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix ``[v]_x`` with ``[v]_x w = v x w``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack((o, -z, y, z, o, -x, -y, x, o), dim=-1).reshape(*v.shape, 3)


def axis_angle_to_matrix(r: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. (..., 3) axis-angle -> (..., 3, 3) rotation matrix.

    Uses Taylor expansions of sin(t)/t and (1 - cos t)/t^2 near zero, so the value and the
    gradient are finite at r = 0.
    """
    check_tensor("r", r, (..., 3), finite=False)
    t2 = (r * r).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = t2 < _SMALL**2 * 100
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = t2_safe.sqrt()
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / t2_safe)
    k = _skew(r)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand(k.shape)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 3) axis-angle with angle in [0, pi].

    Robust near 0 and near pi (where the axis comes from the symmetric part of the matrix).
    """
    check_tensor("m", m, (..., 3, 3), finite=False)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cos = ((trace - 1.0) * 0.5).clamp(-1.0, 1.0)
    angle = torch.acos(cos)
    vee = torch.stack(
        (m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]), -1
    )  # = 2 sin(angle) * axis
    sin = torch.sin(angle)
    # Regular case: axis = vee / (2 sin).
    near_zero = angle < 1e-4
    scale = torch.where(near_zero, 0.5 + angle**2 / 12.0, angle / (2.0 * sin.clamp_min(1e-12)))
    r = vee * scale[..., None]
    # Near pi: sin -> 0, use the largest column of (M + I) / 2 = a a^T.
    near_pi = angle > torch.pi - 1e-3
    if bool(near_pi.any()):
        sym = 0.5 * (m + torch.eye(3, dtype=m.dtype, device=m.device))
        diag = torch.diagonal(sym, dim1=-2, dim2=-1)
        col = diag.argmax(-1)
        axis = torch.gather(sym, -1, col[..., None, None].expand(*col.shape, 3, 1)).squeeze(-1)
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        # Fix the sign with vee (sign is irrelevant at exactly pi).
        sign = torch.where((axis * vee).sum(-1, keepdim=True) < 0, -1.0, 1.0)
        r = torch.where(near_pi[..., None], axis * sign * angle[..., None], r)
    return r


def rigid(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) and (..., 3) -> (..., 4, 4) homogeneous transform."""
    check_tensor("rot", rot, (..., 3, 3), finite=False)
    check_tensor("trans", trans, (*rot.shape[:-2], 3), finite=False)
    top = torch.cat((rot, trans[..., None]), dim=-1)
    bottom = torch.zeros(*rot.shape[:-2], 1, 4, dtype=rot.dtype, device=rot.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat((top, bottom), dim=-2)


@dataclass(frozen=True, eq=False)
class RigidMotion:
    """The rigid motion x -> R x + t (e.g. object frame -> camera frame), applied to points,
    directions and hand parameters alike. R (3, 3) or (B, 3, 3) a rotation, t (3,) or (B, 3)
    metres (torch or numpy); a batched motion moves batched inputs sample by sample."""

    R: torch.Tensor
    t: torch.Tensor

    def __post_init__(self) -> None:
        R, t = torch.as_tensor(self.R), torch.as_tensor(self.t)
        if R.shape[-2:] != (3, 3) or R.dim() not in (2, 3):
            raise ValueError(f"R must have shape (3, 3) or (B, 3, 3), got {tuple(R.shape)}")
        if t.shape[-1:] != (3,) or t.dim() != R.dim() - 1 or (t.dim() == 2 and t.shape[0] != R.shape[0]):
            raise ValueError(f"t must have shape (3,) or (B, 3) matching R {tuple(R.shape)}, got {tuple(t.shape)}")
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", t.to(R.dtype))

    def points(self, x: torch.Tensor) -> torch.Tensor:
        """Points (N, 3) (with a batched motion: (B, N, 3)) -> R x + t, metres, in ``x``'s dtype."""
        t = self.t.to(x)
        return self.directions(x) + (t[:, None] if t.dim() == 2 else t)

    def directions(self, n: torch.Tensor) -> torch.Tensor:
        """Directions, e.g. normals, (N, 3) (batched motion: (B, N, 3)) -> R n."""
        return n @ self.R.to(n).transpose(-1, -2)

    def hand(self, hand, pose: torch.Tensor, shape: torch.Tensor, trans: torch.Tensor):
        """Hand parameters whose vertices are the moved ones: the wrist rotation turns by R and,
        since LBS turns the hand about the shaped rest root joint j0, trans' = R (j0 + trans) + t - j0.

        Args:
            hand: the :class:`~miho.hand.model.HandModel` (MANO's interface). pose (B, 16, 3)
                axis-angle, shape (B, S), trans (B, 3) metres.

        Returns:
            (pose (B, 16, 3), trans (B, 3)).
        """
        j0 = hand.shaped_rest(shape)[1][:, 0].to(pose.dtype)
        R = self.R.to(pose).expand(pose.shape[0], 3, 3)
        t = self.t.to(pose).expand(pose.shape[0], 3)
        out = pose.clone()
        out[:, 0] = matrix_to_axis_angle(R @ axis_angle_to_matrix(pose[:, 0]))
        return out, (R @ (j0 + trans)[..., None])[..., 0] + t - j0

    def inverse(self) -> "RigidMotion":
        """x -> R^T (x - t)."""
        Rt = self.R.transpose(-1, -2)
        return RigidMotion(Rt, -(Rt @ self.t[..., None])[..., 0])

    def __matmul__(self, other: "RigidMotion") -> "RigidMotion":
        """The motion ``other`` first, then this one: x -> R (R' x + t') + t."""
        R = self.R.to(other.R)
        return RigidMotion(R @ other.R, (R @ other.t[..., None])[..., 0] + self.t.to(other.R))
