"""Simulation displacement (SD), the ObMan protocol (paper §6.2; Hasson et al. 2019).

The hand is held still and the object is let fall under gravity for a short time; SD is the
distance the object's centre of mass moves, in mm. Set-up (every value an option of
:class:`SimSettings`): PyBullet in DIRECT mode; the hand a static (mass 0) concave triangle
mesh; the object a VHACD convex decomposition with mass 1; lateral friction 3 on both;
restitution 0 (hand) and 0.5 (object); gravity 9.8 m/s^2 along the camera's +y axis; fixed
time step 1/240 s with 150 solver iterations; 35 steps.

Samples run on the CPU, spread over a pool of worker processes. VHACD results are cached on
disk per object, keyed by a content hash of its vertices and faces and the VHACD settings, and
written atomically (a temporary file renamed into place), so concurrent runs may share a cache.
PyBullet and VHACD print from C; their standard output is sent to /dev/null around each call.

This module imports neither torch nor pybullet at import time (workers start quickly);
tensors are accepted and converted to numpy.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import hashlib
import multiprocessing
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from miho import files


@dataclass(frozen=True)
class SimSettings:
    """Simulation settings (defaults: the ObMan protocol). Units: metres, seconds, kilograms."""

    gravity: tuple[float, float, float] = (0.0, 9.8, 0.0)  #: m/s^2; camera +y (image down)
    time_step: float = 1.0 / 240.0
    steps: int = 35
    solver_iterations: int = 150
    hand_friction: float = 3.0  #: lateral friction
    object_friction: float = 3.0
    hand_restitution: float = 0.0
    object_restitution: float = 0.5
    object_mass: float = 1.0  #: kg
    vhacd_resolution: int = 100_000  #: voxels VHACD uses (pybullet's default, 10^6, is slow)
    vhacd_concavity: float = 0.0025
    vhacd_max_hulls_vertices: int = 64  #: most vertices per convex hull


# ---------------------------------------------------------------------- helpers
@contextlib.contextmanager
def quiet_stdout(enabled: bool = True, fds: tuple[int, ...] = (1,)):
    """Send file descriptors ``fds`` (default 1, C-level stdout) to /dev/null inside the block."""
    if not enabled:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # pragma: no cover - a closed or odd stream
            pass
    saved = []
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            try:
                saved.append((fd, os.dup(fd)))
            except OSError:  # pragma: no cover - fd not open
                continue
            os.dup2(null, fd)
        yield
    finally:
        _flush_c_stdout()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(null)


def _flush_c_stdout() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except Exception:  # pragma: no cover - no C library handle (e.g. Windows)
        pass


def _pybullet():
    with quiet_stdout(fds=(1, 2)):  # the import banner goes to stderr
        import pybullet

    return pybullet


def _as_numpy(x, dtype) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _per_sample(x, n: int | None, name: str, dtype, width: int = 3) -> list[np.ndarray]:
    """A (B, K, width) array, a list of (K_i, width) arrays, or (when ``n`` is given) one (K,
    width) array shared by ``n`` samples -> list of arrays, validated."""
    if isinstance(x, (list, tuple)):
        out = [_as_numpy(a, dtype) for a in x]
    else:
        arr = _as_numpy(x, dtype)
        if arr.ndim == 2 and n is not None:
            out = [arr] * n
        elif arr.ndim == 3:
            out = list(arr)
        else:
            raise ValueError(f"{name} must have shape (B, K, {width}), (K, {width}) or be a list, got {arr.shape}")
    for i, a in enumerate(out):
        if a.ndim != 2 or a.shape[1] != width or a.shape[0] == 0:
            raise ValueError(f"{name}[{i}] must have shape (K, {width}) with K > 0, got {a.shape}")
        if dtype is np.float64 and not np.isfinite(a).all():
            raise ValueError(f"{name}[{i}] contains NaN or inf")
    return out


def centre_of_mass(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Centre of mass of the solid bounded by a closed mesh (uniform density), from signed
    tetrahedra to the origin; the vertex mean when the enclosed volume is (nearly) zero."""
    v = np.asarray(verts, dtype=np.float64)
    tri = v[np.asarray(faces)]
    vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    total = vol.sum()
    scale = np.ptp(v, axis=0).max() if len(v) else 0.0
    if not np.isfinite(total) or abs(total) <= 1e-9 * max(scale, 1e-12) ** 3:
        return v.mean(0)
    return (vol[:, None] * tri.sum(1) / 4.0).sum(0) / total


def mesh_key(verts: np.ndarray, faces: np.ndarray, settings: SimSettings) -> str:
    """Content hash of an object mesh and the VHACD settings (the VHACD cache key)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(verts, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(faces, dtype="<i8").tobytes())
    h.update(repr((settings.vhacd_resolution, settings.vhacd_concavity, settings.vhacd_max_hulls_vertices)).encode())
    return h.hexdigest()


def _write_obj(path: str, verts: np.ndarray, faces: np.ndarray) -> None:
    with open(path, "w") as fh:
        fh.write("".join(f"v {x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in verts))
        fh.write("".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces))


def _vhacd(src: str, dst: str, log: str, settings: SimSettings) -> None:
    """Run pybullet's VHACD on the OBJ ``src`` into ``dst`` (C output silenced)."""
    p = _pybullet()
    with quiet_stdout():
        cid = p.connect(p.DIRECT)
        try:
            p.vhacd(src, dst, log, resolution=settings.vhacd_resolution, concavity=settings.vhacd_concavity,
                    maxNumVerticesPerCH=settings.vhacd_max_hulls_vertices, physicsClientId=cid)  # fmt: skip
        finally:
            p.disconnect(cid)


def decompose(verts: np.ndarray, faces: np.ndarray, settings: SimSettings, cache_dir: str | os.PathLike) -> str:
    """Path of the VHACD decomposition (an OBJ of convex parts) of a mesh, computed once and
    cached in ``cache_dir`` under the mesh's content hash (written atomically)."""
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{mesh_key(verts, faces, settings)}.obj"
    if out.exists():
        return str(out)
    with tempfile.TemporaryDirectory(prefix="miho-vhacd-") as tmp:
        src = os.path.join(tmp, "in.obj")
        _write_obj(src, verts, faces)
        with files.atomic_write(out, suffix=".obj") as part:
            _vhacd(src, part, os.path.join(tmp, "vhacd.log"), settings)
            if os.path.getsize(part) == 0:
                raise RuntimeError("VHACD produced an empty decomposition")
    return str(out)


def _decompose_job(args) -> str:
    return decompose(*args)


def simulate_one(
    hand_verts: np.ndarray,
    hand_faces: np.ndarray,
    object_obj: str,
    com: np.ndarray,
    gravity: np.ndarray,
    settings: SimSettings,
    trace: list | None = None,
) -> float:
    """Displacement (mm) of one object's centre of mass over the simulation.

    Args:
        hand_verts: (V, 3) metres; hand_faces: (F, 3) (a static concave triangle mesh).
        object_obj: path of the object's convex decomposition (in the object's own frame).
        com: (3,) the object's centre of mass (the body frame is placed there).
        gravity: (3,) m/s^2.
        trace: a list to which the centre of mass (3,) metres is appended before the first
            and after every step (for drawing the motion), or None.
    """
    p = _pybullet()
    with quiet_stdout():
        cid = p.connect(p.DIRECT)
        try:
            p.setPhysicsEngineParameter(
                fixedTimeStep=settings.time_step, numSolverIterations=settings.solver_iterations, physicsClientId=cid
            )
            p.setGravity(*[float(g) for g in gravity], physicsClientId=cid)
            hand_shape = p.createCollisionShape(
                p.GEOM_MESH,
                vertices=np.asarray(hand_verts, dtype=np.float64).tolist(),
                indices=np.asarray(hand_faces, dtype=np.int64).reshape(-1).tolist(),
                flags=p.GEOM_FORCE_CONCAVE_TRIMESH,
                physicsClientId=cid,
            )
            if hand_shape < 0:
                raise RuntimeError("pybullet could not build the hand collision mesh")
            hand = p.createMultiBody(baseMass=0, baseCollisionShapeIndex=hand_shape, physicsClientId=cid)
            obj_shape = p.createCollisionShape(
                p.GEOM_MESH, fileName=object_obj, collisionFramePosition=(-np.asarray(com)).tolist(),
                physicsClientId=cid,
            )  # fmt: skip
            if obj_shape < 0:
                raise RuntimeError(f"pybullet could not load the object decomposition {object_obj}")
            obj = p.createMultiBody(baseMass=settings.object_mass, baseCollisionShapeIndex=obj_shape,
                                    basePosition=np.asarray(com).tolist(), physicsClientId=cid)  # fmt: skip
            p.changeDynamics(hand, -1, lateralFriction=settings.hand_friction, restitution=settings.hand_restitution,
                             physicsClientId=cid)  # fmt: skip
            p.changeDynamics(obj, -1, lateralFriction=settings.object_friction,
                             restitution=settings.object_restitution, physicsClientId=cid)  # fmt: skip
            start = np.asarray(p.getBasePositionAndOrientation(obj, physicsClientId=cid)[0])
            if trace is not None:
                trace.append(start)
            for _ in range(settings.steps):
                p.stepSimulation(physicsClientId=cid)
                if trace is not None:
                    trace.append(np.asarray(p.getBasePositionAndOrientation(obj, physicsClientId=cid)[0]))
            end = np.asarray(p.getBasePositionAndOrientation(obj, physicsClientId=cid)[0])
        finally:
            p.disconnect(cid)
    return float(np.linalg.norm(end - start) * 1000.0)


def _simulate_job(args) -> float:
    return simulate_one(*args)


def _run(fn, jobs: list, pool: cf.Executor | None, bar=None) -> list:
    """Map ``fn`` over ``jobs`` in ``pool``, or in this process when there is no pool."""
    if pool is None or len(jobs) <= 1:
        out = []
        for j in jobs:
            out.append(fn(j))
            if bar is not None:
                bar.update(1)
        return out
    out = [None] * len(jobs)
    futures = {pool.submit(fn, j): i for i, j in enumerate(jobs)}
    for fut in cf.as_completed(futures):
        out[futures[fut]] = fut.result()
        if bar is not None:
            bar.update(1)
    return out


def vhacd_cache_dir() -> Path:
    """Where convex decompositions are cached: ``$MIHO_CACHE/vhacd`` (:func:`miho.files.cache_dir`)."""
    return files.cache_dir("vhacd")


def simulation_displacement(
    hand_verts,
    hand_faces,
    obj_verts,
    obj_faces,
    gravity=None,
    settings: SimSettings | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    start_method: str = "spawn",
) -> np.ndarray:
    """Simulation displacement of a batch of grasps (ObMan protocol), mm.

    Args:
        hand_verts: (B, V, 3) closed-hand vertices (numpy or torch, metres; e.g. from
            ``HandModel.closed``) or a list of (V_i, 3).
        hand_faces: (F, 3) shared faces, (B, F, 3) or a list of (F_i, 3).
        obj_verts: list of B (N_i, 3) object vertex arrays (objects may differ), or (B, N, 3).
        obj_faces: list of B (F_i, 3), (B, F, 3), or (F, 3) shared.
        gravity: (3,) or (B, 3) gravity vector(s), m/s^2; None: ``settings.gravity``.
        settings: :class:`SimSettings` (default: the protocol's values).
        workers: worker processes (default min(cpu count, B)); 1 runs in this process.
        cache_dir: VHACD cache folder (default ``$MIHO_CACHE/vhacd``, see :func:`miho.files.cache_dir`).
        progress: show a tqdm bar when there are more than 4 samples.
        start_method: multiprocessing start method of the pool ("spawn" is safe everywhere;
            "fork" starts faster on Linux when no threads or GPU are in use).

    Returns:
        (B,) float64 displacement of each object's centre of mass, mm.
    """
    settings = settings or SimSettings()
    ov = _per_sample(obj_verts, None, "obj_verts", np.float64)
    B = len(ov)
    of = _per_sample(obj_faces, B, "obj_faces", np.int64)
    hv = _per_sample(hand_verts, None, "hand_verts", np.float64)
    hf = _per_sample(hand_faces, B, "hand_faces", np.int64)
    if not (len(of) == len(hv) == len(hf) == B):
        raise ValueError(f"batch sizes differ: {len(ov)} objects, {len(of)} object faces, {len(hv)} hands, "
                         f"{len(hf)} hand faces")  # fmt: skip
    for name, vs, fs in (("object", ov, of), ("hand", hv, hf)):
        for i, (v, f) in enumerate(zip(vs, fs)):
            if f.min() < 0 or f.max() >= len(v):
                raise ValueError(f"{name} {i}: faces index vertices outside [0, {len(v)})")
    g = np.asarray(settings.gravity if gravity is None else _as_numpy(gravity, np.float64), dtype=np.float64)
    g = np.broadcast_to(g, (B, 3)) if g.shape in ((3,), (1, 3)) else g
    if g.shape != (B, 3) or not np.isfinite(g).all():
        raise ValueError(f"gravity must be finite with shape (3,) or ({B}, 3), got {g.shape}")
    workers = max(1, min(os.cpu_count() or 1, B) if workers is None else int(workers))
    cache_dir = vhacd_cache_dir() if cache_dir is None else cache_dir
    bar = None
    if progress and B > 4:
        from tqdm.auto import tqdm

        bar = tqdm(total=B, desc="simulation", unit="sample")
    pool = None
    if workers > 1 and B > 1:
        ctx = multiprocessing.get_context(start_method)
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        # 1) VHACD once per distinct object (cached on disk).
        keys = [mesh_key(v, f, settings) for v, f in zip(ov, of)]
        first = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        todo = [i for k, i in first.items() if not (Path(cache_dir).expanduser() / f"{k}.obj").exists()]
        made = _run(_decompose_job, [(ov[i], of[i], settings, cache_dir) for i in todo], pool)
        paths = dict(zip([keys[i] for i in todo], made))
        for k in first:
            paths.setdefault(k, str(Path(cache_dir).expanduser() / f"{k}.obj"))
        # 2) One simulation per sample.
        jobs = [(hv[i], hf[i], paths[keys[i]], centre_of_mass(ov[i], of[i]), g[i], settings) for i in range(B)]
        out = _run(_simulate_job, jobs, pool, bar)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    return np.asarray(out, dtype=np.float64)


__all__ = [
    "SimSettings",
    "centre_of_mass",
    "decompose",
    "mesh_key",
    "quiet_stdout",
    "simulate_one",
    "simulation_displacement",
]


def simulation_trace(hand_verts, hand_faces, obj_verts, obj_faces, gravity=None, settings=None, cache_dir=None):
    """Centre of mass of one object over a simulation, (steps + 1, 3) metres, for drawing.

    Arguments as one sample of :func:`simulation_displacement` (numpy or torch, metres).
    """
    settings = settings or SimSettings()
    hv, hf = _as_numpy(hand_verts, np.float64), _as_numpy(hand_faces, np.int64)
    ov, of = _as_numpy(obj_verts, np.float64), _as_numpy(obj_faces, np.int64)
    path = decompose(ov, of, settings, vhacd_cache_dir() if cache_dir is None else cache_dir)
    trace: list = []
    g = np.asarray(settings.gravity if gravity is None else _as_numpy(gravity, np.float64), dtype=np.float64)
    simulate_one(hv, hf, path, centre_of_mass(ov, of), g, settings, trace=trace)
    return np.stack(trace)
