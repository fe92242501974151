"""Small batched mesh-geometry kernels in torch (any device)."""

from __future__ import annotations

import torch


def ray_triangle_hits(
    origins: torch.Tensor, dirs: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First intersection of each ray with a triangle mesh (Moller-Trumbore, both face sides).

    Args:
        origins, dirs: (R, 3) ray origins and (not necessarily unit) directions.
        vertices: (V, 3). faces: (F, 3) long.

    Returns:
        face: (R,) long index of the first face hit at t > 0, -1 for a miss;
        t: (R,) ray parameter of the hit (hit = origin + t * dir), inf for a miss;
        uv: (R, 2) weights (u, v) with hit = v0 + u (v1 - v0) + v (v2 - v0).
    """
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))  # (F, 3)
    e1, e2 = v1 - v0, v2 - v0
    d = dirs[:, None, :]  # (R, 1, 3)
    p = torch.linalg.cross(d.expand(-1, e2.shape[0], -1), e2[None].expand(d.shape[0], -1, -1))
    det = (p * e1[None]).sum(-1)  # (R, F)
    ok = det.abs() > eps
    inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
    s = origins[:, None, :] - v0[None]
    u = (s * p).sum(-1) * inv
    q = torch.linalg.cross(s, e1[None].expand_as(s))
    v = (q * d).sum(-1) * inv
    t = (q * e2[None]).sum(-1) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > eps)
    t = torch.where(hit, t, torch.full_like(t, float("inf")))
    tmin, face = t.min(1)
    face = torch.where(torch.isfinite(tmin), face, torch.full_like(face, -1))
    rows = torch.arange(face.shape[0], device=face.device)
    uv = torch.stack((u[rows, face.clamp_min(0)], v[rows, face.clamp_min(0)]), -1)
    return face, tmin, uv


def point_segment_distance(points: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance from points (..., N, 1, 3) to segments a->b (..., 1, M, 3): (..., N, M)."""
    ab = b - a
    t = (((points - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-18)).clamp(0, 1)
    return (points - (a + t[..., None] * ab)).norm(dim=-1)
