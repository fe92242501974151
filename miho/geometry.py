"""Small batched mesh-geometry kernels in torch (any device)."""

from __future__ import annotations

import torch

from miho.checks import check_device, check_index, check_mask, check_points, check_tensor


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


def _check_queries(points: torch.Tensor, tris: torch.Tensor, face_mask: torch.Tensor | None) -> None:
    """Points (B, M, 3) and triangles (B, F, 3, 3) of one dtype and device, finite; face_mask (B, F) bool."""
    check_points("points", points)
    B = points.shape[0]
    check_tensor("tris", tris, (B, None, 3, 3))
    _same_kind("tris", tris, points)
    if face_mask is not None:
        check_mask("face_mask", face_mask, tuple(tris.shape[:2]))
        check_device("face_mask", face_mask, points.device, "points")


def _same_kind(name: str, t: torch.Tensor, points: torch.Tensor) -> None:
    """``t`` must have the dtype and device of ``points``."""
    check_device(name, t, points.device, "points")
    if t.dtype != points.dtype:
        raise ValueError(f"{name} is {t.dtype} but points are {points.dtype}: pass both in one dtype")


def _check_chunk(chunk) -> None:
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive int or None, got {chunk!r}")


def _pair_blocks(p: torch.Tensor, stacked: torch.Tensor, parts: int, chunk: int | None):
    """Blocks of the point-triangle products behind :func:`point_triangle_distance` and
    :func:`winding_number`, about ``chunk`` pairs each (None: 2^20 on the CPU, 2^24 on a GPU).

    Args:
        p: (B, M, 3) points. stacked: (B, 3, parts * F), ``parts`` per-triangle vectors side by
            side (all triangles' first vector, then all second ones...).

    Yields:
        (points slice, faces slice, products): ``products`` is a tuple of ``parts`` (B, m, f)
        tensors, the dot products of the points of the block with each per-triangle vector.
    """
    B, M = p.shape[:2]
    F = stacked.shape[2] // parts
    if chunk is None:
        chunk = 1 << 24 if p.device.type == "cuda" else 1 << 20
    per = max(1, chunk // max(B, 1))
    fb = max(1, min(F, per))
    mb = max(1, min(M, per // fb))
    for f0 in range(0, F, fb):
        f1 = min(F, f0 + fb)
        cols = torch.cat([torch.arange(f0, f1, device=p.device) + j * F for j in range(parts)])
        W = stacked[:, :, cols]
        for m0 in range(0, M, mb):
            yield slice(m0, m0 + mb), slice(f0, f1), (p[:, m0 : m0 + mb] @ W).split(f1 - f0, -1)


def _centre(tris: torch.Tensor) -> torch.Tensor:
    """(B, 1, 3) centre of each sample's triangles' bounding box (queries run relative to it,
    which keeps the expanded dot products below well conditioned)."""
    return 0.5 * (tris.amin((1, 2)) + tris.amax((1, 2)))[:, None]


def _closest_params(d1, d2, aa, bb, ab_ac):
    """Closest point q = a + s (b - a) + t (c - a) of triangle (a, b, c) to p by Ericson's region
    tests (Real-Time Collision Detection, 5.1.5), from d1 = (b - a).(p - a), d2 = (c - a).(p - a),
    aa = |b - a|^2, bb = |c - a|^2 and ab_ac = (b - a).(c - a). Broadcasting tensors; (s, t)."""
    d3, d4 = d1 - aa, d2 - ab_ac  # (p - b) . ab, (p - b) . ac
    d5, d6 = d1 - ab_ac, d2 - bb  # (p - c) . ab, (p - c) . ac
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def div(n, d):
        return n / torch.where(d > 0, d, torch.ones_like(d))

    den = va + vb + vc  # face region (the default, lowest priority)
    s, t = div(vb, den), div(vc, den)
    u = div(d4 - d3, (d4 - d3) + (d5 - d6))  # edge bc: b + u (c - b)
    m = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    s, t = torch.where(m, 1 - u, s), torch.where(m, u, t)
    m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)  # edge ac
    s, t = torch.where(m, 0, s), torch.where(m, div(d2, d2 - d6), t)
    m = (d6 >= 0) & (d5 <= d6)  # vertex c
    s, t = torch.where(m, 0, s), torch.where(m, 1, t)
    m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)  # edge ab
    s, t = torch.where(m, div(d1, d1 - d3), s), torch.where(m, 0, t)
    m = (d3 >= 0) & (d4 <= d3)  # vertex b
    s, t = torch.where(m, 1, s), torch.where(m, 0, t)
    m = (d1 <= 0) & (d2 <= 0)  # vertex a (highest priority)
    s, t = torch.where(m, 0, s), torch.where(m, 0, t)
    return s.clamp(0, 1), t.clamp(0, 1)


def _corner_edges(tris: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre c0 (B, 1, 3) and, relative to it, corner a and edges ab, ac (B, F, 3) of each
    triangle; a degenerate (zero-area) triangle is replaced by its longest edge written as
    (p, q, q), for which the region tests of :func:`_closest_params` reduce exactly to the
    point-segment case (no NaN)."""
    c0 = _centre(tris)
    a, b, c = (tris - c0[:, :, None]).unbind(2)
    e2 = torch.stack(((b - a).pow(2).sum(-1), (c - b).pow(2).sum(-1), (a - c).pow(2).sum(-1)), -1)
    longest, k = e2.max(-1)
    nrm2 = torch.linalg.cross(b - a, c - a).pow(2).sum(-1)  # (2 area)^2
    degenerate = nrm2 <= (64 * torch.finfo(tris.dtype).eps * longest).pow(2)
    if bool(degenerate.any()):  # (p, q, q) with p -> q the longest edge
        k0, k1 = (k == 0)[..., None], (k == 1)[..., None]
        p0 = torch.where(k0, a, torch.where(k1, b, c))
        q0 = torch.where(k0, b, torch.where(k1, c, a))
        dg = degenerate[..., None]
        a, b, c = torch.where(dg, p0, a), torch.where(dg, q0, b), torch.where(dg, q0, c)
    return c0, a, b - a, c - a


def _offsets(p: torch.Tensor, a: torch.Tensor, ab: torch.Tensor, ac: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """(B, M, 3) offsets p - q from the closest point q of triangle ``face`` (B, M) (long, valid
    indices) to each point p (B, M, 3); a, ab, ac as :func:`_corner_edges` gives them."""
    g = face[..., None].expand(-1, -1, 3)
    A, AB, AC = a.gather(1, g), ab.gather(1, g), ac.gather(1, g)
    ap = p - A
    s, t = _closest_params((ap * AB).sum(-1), (ap * AC).sum(-1), (AB * AB).sum(-1), (AC * AC).sum(-1),
                           (AB * AC).sum(-1))  # fmt: skip
    return ap - s[..., None] * AB - t[..., None] * AC


def point_triangle_distance(
    points: torch.Tensor, tris: torch.Tensor, face_mask: torch.Tensor | None = None, chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact unsigned distance from points to the closest triangle of a (batched) triangle soup.

    The closest point on a triangle comes from the standard Voronoi-region tests (vertex, edge
    and face regions; :func:`_closest_params`). The search over all triangles runs on dot
    products expanded into batched matrix products (fast, memory-light); the distance to the
    triangle it picks is then recomputed directly from the coordinates, so the returned value
    is exact up to rounding. A degenerate (zero-area) triangle is replaced by its longest edge,
    written as (p, q, q), for which the same region tests reduce exactly to the point-segment
    distance: no NaN arises.

    Args:
        points: (B, M, 3) query points (metres, or any unit: the result is in the same unit).
        tris: (B, F, 3, 3) triangle corners, e.g. :meth:`miho.mesh.Meshes.triangles`, of the
            points' dtype and device.
        face_mask: (B, F) bool, False for padded faces (ignored), or None (all real).
        chunk: point-triangle pairs evaluated at once (bounds memory at roughly 60 bytes per
            pair in float32); None: 2^20 on the CPU, 2^24 on a GPU.

    Returns:
        dist: (B, M) distance to the closest real triangle (inf if a sample has none);
        face: (B, M) long index of that triangle (-1 if none). Empty when B or M is 0.
    """
    _check_queries(points, tris, face_mask)
    _check_chunk(chunk)
    B, M, F = points.shape[0], points.shape[1], tris.shape[1]
    if B == 0 or M == 0 or F == 0:
        return points.new_full((B, M), float("inf")), torch.full((B, M), -1, dtype=torch.long, device=points.device)
    c0, a, ab, ac = _corner_edges(tris)
    p = points - c0
    aa, bb, ab_ac = (ab * ab).sum(-1), (ac * ac).sum(-1), (ab * ac).sum(-1)  # (B, F)
    a_ab, a_ac, a_a = (a * ab).sum(-1), (a * ac).sum(-1), (a * a).sum(-1)
    stacked = torch.cat((ab, ac, a), 1).transpose(1, 2)  # (B, 3, 3F)
    pp = (p * p).sum(-1)
    best = torch.full((B, M), float("inf"), dtype=p.dtype, device=p.device)
    arg = torch.zeros((B, M), dtype=torch.long, device=p.device)
    for ms, fs, (pab, pac, pa) in _pair_blocks(p, stacked, 3, chunk):
        sl = (slice(None), None, fs)
        d1, d2 = pab - a_ab[sl], pac - a_ac[sl]
        s, t = _closest_params(d1, d2, aa[sl], bb[sl], ab_ac[sl])
        ap2 = pp[:, ms, None] - 2 * pa + a_a[sl]
        dist2 = ap2 - 2 * (s * d1 + t * d2) + s * s * aa[sl] + 2 * s * t * ab_ac[sl] + t * t * bb[sl]
        if face_mask is not None:
            dist2 = dist2.masked_fill(~face_mask[sl], float("inf"))
        dmin, amin = dist2.min(-1)
        better = dmin < best[:, ms]
        best[:, ms] = torch.where(better, dmin, best[:, ms])
        arg[:, ms] = torch.where(better, amin + fs.start, arg[:, ms])
    # Exact distance to the chosen triangle, from the coordinates.
    dist = _offsets(p, a, ab, ac, arg).norm(dim=-1)
    none = torch.isinf(best)
    return dist.masked_fill(none, float("inf")), arg.masked_fill(none, -1)


def closest_points(points: torch.Tensor, tris: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """The closest point to each query point on one given triangle each (e.g. the ``face``
    :func:`point_triangle_distance` returns), by the same region tests.

    Args:
        points: (B, M, 3). tris: (B, F, 3, 3) of the points' dtype and device.
        face: (B, M) integer indices into each sample's F triangles.

    Returns:
        (B, M, 3) points on the triangles, in the points' unit.
    """
    _check_queries(points, tris, None)
    B, M = points.shape[:2]
    check_index("face", face, (B, M), tris.shape[1], what="triangles")
    check_device("face", face, points.device, "points")
    if face.numel() == 0:
        return points.clone()
    c0, a, ab, ac = _corner_edges(tris)
    return points - _offsets(points - c0, a, ab, ac, face.long())


def winding_number(
    points: torch.Tensor, tris: torch.Tensor, face_mask: torch.Tensor | None = None, chunk: int | None = None
) -> torch.Tensor:
    """Generalised winding number of a (batched) triangle soup at query points.

    The sum over triangles of the signed solid angle each subtends at the point, divided by
    4 pi (Jacobson et al. 2013). The solid angle of triangle (a, b, c) seen from p is, with
    x = a - p, y = b - p, z = c - p (Van Oosterom and Strackee 1983),

        tan(Omega / 2) = x . (y x z) / (|x||y||z| + (x . y)|z| + (x . z)|y| + (y . z)|x|),

    evaluated with atan2, so Omega lies in (-2 pi, 2 pi]. The numerator is (a - p) . n with
    n = (b - a) x (c - a), and every dot product expands into batched matrix products of the
    points with per-triangle vectors (coordinates taken relative to the mesh's box centre).
    About 1 inside a closed mesh with outward faces, 0 outside (-1 inside an inward one); it
    degrades gracefully when a few faces are missing (still near 1 deep inside). Padded faces
    contribute 0.

    Args:
        points: (B, M, 3). tris: (B, F, 3, 3) of the points' dtype and device. face_mask:
            (B, F) bool or None (all real).
        chunk: point-triangle pairs evaluated at once (about 50 bytes each in float32); None:
            2^20 on the CPU, 2^24 on a GPU.

    Returns:
        (B, M) winding numbers (dimensionless); 0 where a sample has no triangle.
    """
    _check_queries(points, tris, face_mask)
    _check_chunk(chunk)
    B, M, F = points.shape[0], points.shape[1], tris.shape[1]
    out = points.new_zeros(B, M)
    if B == 0 or M == 0 or F == 0:
        return out
    c0 = _centre(tris)
    p = points - c0
    a, b, c = (tris - c0[:, :, None]).unbind(2)
    n = torch.linalg.cross(b - a, c - a)
    a_n = (a * n).sum(-1)
    a_a, b_b, c_c = (a * a).sum(-1), (b * b).sum(-1), (c * c).sum(-1)
    a_b, a_c, b_c = (a * b).sum(-1), (a * c).sum(-1), (b * c).sum(-1)
    stacked = torch.cat((n, a, b, c), 1).transpose(1, 2)  # (B, 3, 4F)
    pp = (p * p).sum(-1)
    for ms, fs, (pn, pa, pb, pc) in _pair_blocks(p, stacked, 4, chunk):
        sl = (slice(None), None, fs)
        P = pp[:, ms, None]
        lx = (P - 2 * pa + a_a[sl]).clamp_min(0).sqrt()
        ly = (P - 2 * pb + b_b[sl]).clamp_min(0).sqrt()
        lz = (P - 2 * pc + c_c[sl]).clamp_min(0).sqrt()
        den = lx * ly * lz + (a_b[sl] - pa - pb + P) * lz + (a_c[sl] - pa - pc + P) * ly
        den = den + (b_c[sl] - pb - pc + P) * lx
        omega = torch.atan2(a_n[sl] - pn, den)  # half the solid angle
        if face_mask is not None:
            omega = omega * face_mask[sl]
        out[:, ms] += omega.sum(-1)
    return out / (2 * torch.pi)


def knn(
    points: torch.Tensor,
    verts: torch.Tensor,
    k: int = 1,
    vert_mask: torch.Tensor | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest vertices of every query point, for a batch, without gradient.

    Euclidean distances (``torch.cdist``) in blocks of about ``chunk`` point-vertex pairs (whole
    samples together while they fit, else a sample's points in slices); padded vertices
    (``vert_mask`` False) are never chosen. For k = 1 ties go to the lowest index. GeO calls it
    in every iteration, so NaN / inf are looked for only in CPU tensors (no device sync).

    Args:
        points: (B, M, 3) query points. verts: (B, N, 3) vertices, same dtype and device.
        k: neighbours per point, 1 <= k <= N.
        vert_mask: (B, N) bool of the real vertices, or None (all real).
        chunk: point-vertex pairs per distance matrix (None: 2^22 on the CPU, 2^26 on a GPU).

    Returns:
        dist: (B, M, k) distances in increasing order, in the points' unit (inf where a sample
        has fewer than k real vertices); idx: (B, M, k) long vertex indices (-1 there).
    """
    check_tensor("points", points, (None, None, 3), finite="cpu")  # called in optimiser loops: no sync
    B, M = points.shape[:2]
    check_tensor("verts", verts, (B, None, 3), finite="cpu")
    N = verts.shape[1]
    _same_kind("verts", verts, points)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max(N, 1):
        raise ValueError(f"k must be an int in [1, {N}] (the vertex count), got {k!r}")
    if vert_mask is not None:
        check_mask("vert_mask", vert_mask, (B, N))
        check_device("vert_mask", vert_mask, points.device, "points")
    _check_chunk(chunk)
    dist = points.new_full((B, M, k), float("inf"))
    idx = torch.full((B, M, k), -1, dtype=torch.long, device=points.device)
    if B == 0 or M == 0 or N == 0:
        return dist, idx
    if chunk is None:
        chunk = 1 << 26 if points.device.type == "cuda" else 1 << 22
    samples = max(1, chunk // (M * N))
    rows = M if samples > 1 else max(1, chunk // N)
    with torch.no_grad():
        for b0 in range(0, B, samples):
            bs = slice(b0, b0 + samples)
            for m0 in range(0, M, rows):
                ms = slice(m0, m0 + rows)
                d = torch.cdist(points[bs, ms], verts[bs])
                if vert_mask is not None:
                    d = d.masked_fill(~vert_mask[bs, None, :], float("inf"))
                dk, ik = d.min(-1, keepdim=True) if k == 1 else d.topk(k, dim=-1, largest=False)
                dist[bs, ms], idx[bs, ms] = dk, ik.masked_fill(torch.isinf(dk), -1)
    return dist, idx


def nearest_vertex(points: torch.Tensor, verts: torch.Tensor, vert_mask: torch.Tensor | None = None,
                   chunk: int | None = None) -> torch.Tensor:  # fmt: skip
    """Index (B, M) of each point's nearest vertex (:func:`knn` with k = 1): padding
    (``vert_mask`` False) never chosen, no gradient. points (B, M, 3), verts (B, N, 3), N >= 1."""
    return knn(points, verts, 1, vert_mask, chunk)[1][..., 0]


def nearest_vertex_inside(
    points: torch.Tensor, verts: torch.Tensor, normals: torch.Tensor, vert_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A cheap inside test: a point is inside when its offset from its nearest mesh vertex points
    against that vertex's outward normal. Exact far from edges on smooth closed meshes, wrong for
    points beyond a thin wall (use :func:`winding_number` where that matters).

    Args:
        points: (B, M, 3). verts, normals: (B, N, 3). vert_mask: (B, N) bool or None.

    Returns:
        inside (B, M) bool and the nearest vertex index (B, M) long (see :func:`nearest_vertex`).
    """
    idx = nearest_vertex(points, verts, vert_mask)
    gather = idx[..., None].expand(-1, -1, 3)
    off = points - torch.gather(verts, 1, gather)
    return (off * torch.gather(normals, 1, gather)).sum(-1) < 0, idx
