"""Batched rotation conversions (axis-angle <-> matrix), differentiable everywhere.

Axis-angle vectors ``r`` have shape (..., 3): direction = unit rotation axis, norm = angle in
radians. Matrices have shape (..., 3, 3) and act on column vectors.
"""

from __future__ import annotations

import torch

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
    top = torch.cat((rot, trans[..., None]), dim=-1)
    bottom = torch.zeros(*rot.shape[:-2], 1, 4, dtype=rot.dtype, device=rot.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat((top, bottom), dim=-2)
