"""Headless rendering of hand-object grasps with pybullet's TinyRenderer (CPU, no display).

A :class:`Camera` is a pinhole camera in the OpenCV convention (x right, y down, z forward;
pixel (u, v) = (fx x / z + cx, fy y / z + cy), pixel centres at integer + 0.5), with a
world-to-camera rotation R and translation t (metres). :func:`random_view` draws one looking at
a grasp from a random direction; :func:`render` draws the hand and the object with a skin tone,
an object colour, a light and a background, all drawn from one seed, and returns

* ``rgb`` (H, W, 3) uint8,
* ``depth`` (H, W) float32 metres along the optical axis (0 on the background),
* ``mask`` (H, W) uint8: 0 background, 1 hand, 2 object (what is visible at each pixel).

The same (meshes, camera, seed) always gives the same image.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from miho.simulation import quiet_stdout

#: Bumped whenever the same inputs would render differently (it is part of cached image names).
VERSION = 3
BACKGROUND, HAND, OBJECT = 0, 1, 2
#: Object surface patterns (grey levels, tinted by the object colour), mapped by spherical
#: coordinates about the object's centre.
TEXTURES = ("plain", "checker", "stripes", "grain")
#: Skin tones (sRGB 0-1), from light to dark.
SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.80, 0.60, 0.45], [0.66, 0.46, 0.32],
                       [0.49, 0.33, 0.22], [0.36, 0.24, 0.16]])  # fmt: skip


@dataclass
class Camera:
    """Pinhole camera: intrinsics (pixels), image size, world-to-camera R (3, 3) and t (3,)
    (metres), clipping planes (metres)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    R: np.ndarray
    t: np.ndarray
    near: float = 0.05
    far: float = 2.0

    @property
    def K(self) -> np.ndarray:
        """(3, 3) intrinsic matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> camera coordinates (..., 3), metres."""
        return np.asarray(points) @ self.R.T + self.t

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixel coordinates (..., 2) (u right, v down)."""
        c = self.to_camera(points)
        return np.stack((self.fx * c[..., 0] / c[..., 2] + self.cx, self.fy * c[..., 1] / c[..., 2] + self.cy), -1)

    def view_matrix(self) -> list:
        """OpenGL view matrix (column-major, 16 floats): camera looks along -z with y up."""
        M = np.eye(4)
        M[:3, :3], M[:3, 3] = self.R, self.t
        return (np.diag([1.0, -1.0, -1.0, 1.0]) @ M).T.reshape(-1).tolist()

    def projection_matrix(self) -> list:
        """OpenGL projection matrix (column-major) equivalent to the intrinsics."""
        W, H, n, f = self.width, self.height, self.near, self.far
        P = np.array([
            [2 * self.fx / W, 0, 1 - 2 * self.cx / W, 0],
            [0, 2 * self.fy / H, 2 * self.cy / H - 1, 0],
            [0, 0, -(f + n) / (f - n), -2 * f * n / (f - n)],
            [0, 0, -1, 0],
        ])  # fmt: skip
        return P.T.reshape(-1).tolist()

    def as_dict(self) -> dict:
        return dict(K=self.K, R=self.R, t=self.t, width=self.width, height=self.height)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) of a camera at ``eye`` looking at ``target``; ``up`` is the world
    direction that appears upwards in the image (-y of the camera)."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-8:
        x = np.cross(z, np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack((x, y, z))
    return R, -R @ eye


def random_view(
    points: np.ndarray,
    rng: np.random.Generator,
    size: int = 256,
    focal: float = 320.0,
    fill: tuple[float, float] = (0.5, 0.8),
) -> Camera:
    """A camera looking at the centre of ``points`` (N, 3) from a uniformly random direction,
    with a random roll, at the distance where the points' bounding sphere spans ``fill`` (a
    random fraction in the range) of the image width."""
    centre = (points.max(0) + points.min(0)) / 2
    radius = float(np.linalg.norm(points - centre, axis=1).max())
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    frac = rng.uniform(*fill)
    dist = 2 * radius * focal / (frac * size)
    up = rng.normal(size=3)
    R, t = look_at(centre + dist * d, centre, up - (up @ d) * d)
    return Camera(focal, focal, size / 2, size / 2, size, size, R, t, near=max(0.01, dist - 2 * radius),
                  far=dist + 2 * radius)  # fmt: skip


@dataclass
class Appearance:
    """Colours (0-1 RGB) and light of one image."""

    skin: np.ndarray
    object: np.ndarray
    light_direction: np.ndarray
    ambient: float
    diffuse: float
    specular: float
    background: np.ndarray  # (2, 3): the colours of a vertical gradient
    texture: str = "plain"  # one of TEXTURES


def random_appearance(rng: np.random.Generator) -> Appearance:
    """Skin tone from :data:`SKIN_TONES` (slightly varied), a random saturated object colour and
    surface pattern (:data:`TEXTURES`), a light from the camera's side, and a two-colour
    background gradient."""
    skin = np.clip(SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.1, 3), 0, 1)
    hue = rng.uniform(0, 1)
    obj = np.clip(np.abs(((hue * 6 + np.array([0, 4, 2])) % 6) - 3) - 1, 0, 1)  # hue -> RGB
    obj = np.clip(0.25 + 0.75 * obj * rng.uniform(0.6, 1.0), 0, 1)
    light = np.array([0.0, 0.0, 1.0]) + rng.normal(scale=0.6, size=3)
    light = light / np.linalg.norm(light)
    shading = rng.uniform(0.4, 0.7), rng.uniform(0.4, 0.7), rng.uniform(0.0, 0.3)
    return Appearance(skin, obj, light, *shading, rng.uniform(0, 1, (2, 3)), TEXTURES[rng.integers(len(TEXTURES))])


class Renderer:
    """A pybullet DIRECT client kept open for many images (one per process).

    Building a mesh body is the slow part of an image, so the last ``keep`` meshes of each kind
    (hands, objects) stay loaded, recognised by a hash of their arrays; those not in the current
    image wait far outside every view."""

    def __init__(self, keep: int = 1) -> None:
        import pybullet

        self.p, self.keep = pybullet, keep
        with quiet_stdout():
            self.cid = pybullet.connect(pybullet.DIRECT)
        self._bodies: dict[tuple, int] = {}  # (kind, hash) -> body id, oldest first
        self._textures: dict[str, int] = {}

    def _texture(self, name: str) -> int:
        """pybullet texture id of pattern ``name`` (written once as a PNG in a private folder)."""
        if name not in self._textures:
            import tempfile

            from PIL import Image

            i, j = np.indices((64, 64))
            grey = {"plain": np.ones((64, 64)), "checker": 0.55 + 0.45 * ((i // 8 + j // 8) % 2),
                    "stripes": 0.6 + 0.4 * ((j // 6) % 2),
                    "grain": 0.7 + 0.3 * np.random.default_rng(7).random((64, 64))}[name]  # fmt: skip
            folder = getattr(self, "_folder", None) or tempfile.mkdtemp(prefix="miho-textures-")
            self._folder = folder
            path = os.path.join(folder, f"{name}.png")
            Image.fromarray((255 * np.repeat(grey[..., None], 3, -1)).astype(np.uint8)).save(path)
            self._textures[name] = self.p.loadTexture(path, physicsClientId=self.cid)
        return self._textures[name]

    def close(self) -> None:
        if self.cid is not None:
            self.p.disconnect(self.cid)
            self.cid = None
        if getattr(self, "_folder", None):
            import shutil

            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _body(self, kind: str, verts: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> int:
        p = self.p
        v, f, n = (np.ascontiguousarray(x, dtype=t) for x, t in ((verts, np.float64), (faces, np.int64),
                                                                  (normals, np.float64)))  # fmt: skip
        key = (kind, hashlib.sha1(v.tobytes() + f.tobytes() + n.tobytes()).hexdigest())
        if key in self._bodies:
            self._bodies[key] = self._bodies.pop(key)  # most recently used last
            return self._bodies[key]
        same = [k for k in self._bodies if k[0] == kind]
        if len(same) >= self.keep:
            p.removeBody(self._bodies.pop(same[0]), physicsClientId=self.cid)
        c = v - v.mean(0)  # spherical texture coordinates about the centre
        r = np.linalg.norm(c, axis=1).clip(1e-12)
        uv = np.c_[0.5 + np.arctan2(c[:, 1], c[:, 0]) / (2 * np.pi), 0.5 + np.arcsin((c[:, 2] / r).clip(-1, 1)) / np.pi]
        vs = p.createVisualShape(p.GEOM_MESH, vertices=v.tolist(), indices=f.reshape(-1).tolist(), normals=n.tolist(),
                                 uvs=uv.tolist(), physicsClientId=self.cid)  # fmt: skip
        if vs < 0:
            raise RuntimeError("pybullet could not build a visual mesh")
        self._bodies[key] = p.createMultiBody(baseMass=0, baseVisualShapeIndex=vs, physicsClientId=self.cid)
        return self._bodies[key]

    def render(self, hand: tuple | None, obj: tuple, camera: Camera, appearance: Appearance) -> dict:
        """Draw ``hand`` (or no hand: None) and ``obj``, each (verts (N, 3) world metres, faces
        (F, 3), normals (N, 3)), seen by ``camera``. Returns rgb, depth and mask (see the module
        docstring)."""
        p, a = self.p, appearance
        h = self._body("hand", *hand) if hand is not None else -2
        o = self._body("object", *obj)
        for body in self._bodies.values():
            place = [0.0, 0.0, 0.0] if body in (h, o) else [1e4, 1e4, 1e4]
            p.resetBasePositionAndOrientation(body, place, [0, 0, 0, 1], physicsClientId=self.cid)
        for body, colour, texture in ((h, a.skin, "plain"), (o, a.object, a.texture)):
            if body >= 0:
                tex = self._texture(texture)
                p.changeVisualShape(body, -1, rgbaColor=[*map(float, colour), 1.0], textureUniqueId=tex,
                                    physicsClientId=self.cid)  # fmt: skip
        # TinyRenderer lights from a world direction; the camera-space light is turned into world.
        light = camera.R.T @ (np.array([1.0, -1.0, -1.0]) * a.light_direction)
        _, _, rgba, depth, seg = p.getCameraImage(
            camera.width, camera.height, camera.view_matrix(), camera.projection_matrix(),
            lightDirection=light.tolist(), lightColor=[1.0, 1.0, 1.0], lightDistance=2.0,
            lightAmbientCoeff=a.ambient, lightDiffuseCoeff=a.diffuse, lightSpecularCoeff=a.specular,
            shadow=0, renderer=p.ER_TINY_RENDERER, physicsClientId=self.cid,
        )  # fmt: skip
        H, W = camera.height, camera.width
        seg = np.asarray(seg).reshape(H, W)
        mask = np.where(seg == h, HAND, np.where(seg == o, OBJECT, BACKGROUND)).astype(np.uint8)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(H, W, 4)[..., :3].copy()
        ramp = np.linspace(0, 1, H)[:, None, None]
        bg = ((1 - ramp) * a.background[0] + ramp * a.background[1]) * 255
        rgb = np.where(mask[..., None] == BACKGROUND, np.broadcast_to(bg, (H, W, 3)), rgb).astype(np.uint8)
        d = np.asarray(depth, dtype=np.float64).reshape(H, W)
        n, f = camera.near, camera.far
        z = f * n / (f - (f - n) * d)
        return dict(rgb=rgb, depth=np.where(mask > 0, z, 0.0).astype(np.float32), mask=mask)


_RENDERER: Renderer | None = None


def render(hand: tuple, obj: tuple, camera: Camera, appearance: Appearance) -> dict:
    """:meth:`Renderer.render` with this process's renderer (made on first use)."""
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = Renderer()
    return _RENDERER.render(hand, obj, camera, appearance)


__all__ = ["Appearance", "Camera", "Renderer", "look_at", "random_appearance", "random_view", "render"]
