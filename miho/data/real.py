"""Real hand-object datasets (FHB, HO3D v2) converted to MIHO's sample format.

The datasets and MANO are licensed and never shipped: the user downloads them, and
``data_scripts/convert_fhb.py`` / ``data_scripts/convert_ho3d.py`` call :func:`convert_fhb` /
:func:`convert_ho3d` to write one ``.npz`` per split. Samples are in the colour camera's frame
(OpenCV convention: x right, y down, z forward), metres:

* ``image`` (relative path under the dataset root), ``K`` (3, 3);
* ``hand_pose`` (16, 3) MANO axis-angle (wrist in camera space, flat hand mean), ``hand_shape``
  (10,), ``hand_trans`` (3,), ``joints`` (21, 3) in :data:`miho.hand.JOINTS21_ORDER`; absent
  (NaN) where a split has no hand ground truth (HO3D's evaluation split);
* ``obj_name``, ``obj_rot`` (3, 3), ``obj_trans`` (3,): the object model (in its own frame,
  metres, stored once per name in the same file) to camera.

:class:`ConvertedHO` reads such a file and yields the keys of :class:`miho.data.synthho.SynthHO`
(hand and object vertices, 2D projections, the ground-truth CPF; the image when it exists).

Dataset facts used here (from the datasets' own documentation):

* FHB (Garcia-Hernando et al., CVPR 2018): ``Hand_pose_annotation_v1/<subject>/<action>/<seq>/
  skeleton.txt`` (per line: frame, then 21 joints x 3 world coordinates, mm, in FHB's joint
  order :data:`FHB_JOINTS`); ``Object_6D_pose_annotation_v1_1/.../object_pose.txt`` (per line:
  frame, then a 4 x 4 model-to-world transform stored column by column, mm); object models
  ``Object_models/<obj>_model/<obj>_model.ply`` (metres); ``data_split_action_recognition.txt``
  (a ``Training N`` block and a ``Test N`` block of ``<subject>/<action>/<seq> <label>`` lines);
  the colour camera's extrinsics :data:`FHB_CAM_EXTR` and intrinsics :data:`FHB_K`. FHB gives
  joints, not MANO: the hand is fitted to them (:func:`miho.amano.fit_to_joints`).
* HO3D v2 (Hampali et al., CVPR 2020): ``<split>.txt`` lists ``<seq>/<frame>``; per frame
  ``<split>/<seq>/meta/<frame>.pkl`` holds ``handPose`` (48,), ``handBeta`` (10,), ``handTrans``
  (3,), ``handJoints3D``, ``objRot`` (3, 1) axis-angle, ``objTrans`` (3,), ``objName``,
  ``camMat`` (3, 3), in OpenGL camera coordinates (y up, z backwards); images
  ``<split>/<seq>/rgb/<frame>.png``; object models ``<ycb>/<objName>/textured_simple.obj``.
  The evaluation split hides the hand. :data:`HO3DV2_MINUS` is the paper's Table 4 selection.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch

from miho.rotations import RigidMotion, axis_angle_to_matrix

#: FHB's subset with object models and poses: objects and the actions that use them.
FHB_OBJECTS = {
    "juice_bottle": ("open_juice_bottle", "close_juice_bottle", "pour_juice_bottle"),
    "liquid_soap": ("open_liquid_soap", "close_liquid_soap", "pour_liquid_soap"),
    "milk": ("open_milk", "close_milk", "pour_milk"),
    "salt": ("put_salt",),
}
#: FHB's joint order.
FHB_JOINTS = ("Wrist", "TMCP", "IMCP", "MMCP", "RMCP", "PMCP", "TPIP", "TDIP", "TTIP", "IPIP", "IDIP", "ITIP",
              "MPIP", "MDIP", "MTIP", "RPIP", "RDIP", "RTIP", "PPIP", "PDIP", "PTIP")  # fmt: skip
#: FHB joint index of each of MIHO's 21 joints (wrist, then thumb, index, middle, ring, little:
#: MCP/CMC, PIP/MCP, DIP/IP, tip).
FHB_TO_MIHO = (0, 1, 6, 7, 8, 2, 9, 10, 11, 3, 12, 13, 14, 4, 15, 16, 17, 5, 18, 19, 20)
#: FHB colour camera: world (mm) -> camera (mm), and intrinsics (pixels, 1920 x 1080 images).
FHB_CAM_EXTR = np.array([
    [0.999988496304, -0.00468848412856, 0.000982563360594, 25.7],
    [0.00469115935266, 0.999985218048, -0.00273845880292, 1.22],
    [-0.000969709653873, 0.00274303671904, 0.99999576807, 3.902],
    [0.0, 0.0, 0.0, 1.0],
])  # fmt: skip
FHB_K = np.array([[1395.749023, 0.0, 935.732544], [0.0, 1395.749268, 540.681030], [0.0, 0.0, 1.0]])
#: HO3D v2 evaluation frames of the paper's HO3Dv2- (Supp Table 4): sequence -> frame ranges
#: (inclusive); None: every frame.
HO3DV2_MINUS = {
    "SM1": None,
    **{f"MPM{i}": ((30, 450), (585, 685)) for i in range(10, 15)},
    "SB11": ((340, 1355), (1415, 1686)),
    "SB13": ((340, 1355), (1415, 1686)),
}
#: OpenGL camera -> OpenCV camera.
GL_TO_CV = np.diag([1.0, -1.0, -1.0])
_KEYS = ("K", "hand_pose", "hand_shape", "hand_trans", "joints", "obj_rot", "obj_trans")


# ---------------------------------------------------------------------- small readers
def read_ply(path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, 3) float64 and triangles (F, 3) of an ASCII or binary little-endian PLY
    (x, y, z vertex properties; a face list property; polygons are fanned into triangles)."""
    types = {"char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "i2", "ushort": "u2",
             "int16": "i2", "uint16": "u2", "int": "i4", "uint": "u4", "int32": "i4", "uint32": "u4",
             "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}  # fmt: skip
    with open(path, "rb") as fh:
        if fh.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a PLY file")
        fmt, elements = None, []
        while True:
            line = fh.readline()
            if not line:
                raise ValueError(f"{path}: PLY header has no end_header")
            w = line.decode("ascii", "replace").split()
            if not w:
                continue
            if w[0] == "format":
                fmt = w[1]
            elif w[0] == "element":
                elements.append((w[1], int(w[2]), []))
            elif w[0] == "property":
                elements[-1][2].append(w[1:])
            elif w[0] == "end_header":
                break
        if fmt not in ("ascii", "binary_little_endian"):
            raise ValueError(f"{path}: unsupported PLY format {fmt!r}")
        data: dict[str, object] = {}
        text = fh.read().decode("ascii").split() if fmt == "ascii" else None
        raw = None if fmt == "ascii" else fh.read()
        pos = 0
        for name, count, props in elements:
            if all(p[0] != "list" for p in props):
                dt = np.dtype([(p[1], "<" + types[p[0]]) for p in props])
                if text is not None:
                    vals = np.array(text[pos : pos + count * len(props)], dtype=np.float64).reshape(count, len(props))
                    pos += count * len(props)
                    data[name] = {p[1]: vals[:, i] for i, p in enumerate(props)}
                else:
                    arr = np.frombuffer(raw, dtype=dt, count=count, offset=pos)
                    pos += count * dt.itemsize
                    data[name] = {p[1]: arr[p[1]].astype(np.float64) for p in props}
            else:  # faces: one list property (possibly after scalar ones, which are skipped)
                polys = []
                for _ in range(count):
                    for p in props:
                        if p[0] == "list":
                            ct, it = np.dtype("<" + types[p[1]]), np.dtype("<" + types[p[2]])
                            if text is not None:
                                n = int(text[pos])
                                polys.append([int(x) for x in text[pos + 1 : pos + 1 + n]])
                                pos += 1 + n
                            else:
                                n = int(np.frombuffer(raw, ct, 1, pos)[0])
                                polys.append(np.frombuffer(raw, it, n, pos + ct.itemsize).tolist())
                                pos += ct.itemsize + n * it.itemsize
                        else:
                            pos += 1 if text is not None else np.dtype("<" + types[p[0]]).itemsize
                data[name] = polys
    v = data.get("vertex")
    if not isinstance(v, dict) or not {"x", "y", "z"} <= set(v):
        raise ValueError(f"{path}: PLY without x, y, z vertices")
    tris = [(f[0], f[i], f[i + 1]) for f in data.get("face", []) for i in range(1, len(f) - 1)]
    return np.stack((v["x"], v["y"], v["z"]), 1), np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}: is the dataset root right? "
                                "(see miho/data/real.py for the expected layout)")  # fmt: skip
    return path


def _mano(mano_path, dtype=torch.float64):
    from miho.hand import load_hand

    return load_hand("mano", path=mano_path, dtype=dtype)  # a clear error says where MANO goes


def _min_distance(hand_verts: torch.Tensor, obj_verts: torch.Tensor) -> torch.Tensor:
    """(B,) smallest hand-vertex to object-vertex distance, metres."""
    return torch.stack([torch.cdist(h[None], o[None])[0].min() for h, o in zip(hand_verts, obj_verts)])


# ---------------------------------------------------------------------- HO3D v2
def _load_meta(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def _selected(seq: str, frame: int, selection) -> bool:
    if selection is None:
        return True
    if seq not in selection:
        return False
    ranges = selection[seq]
    return ranges is None or any(a <= frame <= b for a, b in ranges)


def convert_ho3d(root, ycb_models, split: str = "train", mano_path=None, selection=None,
                 min_distance: float = 0.005, progress: bool = True) -> tuple[dict, dict]:  # fmt: skip
    """HO3D v2 ``split`` ("train" or "evaluation") in MIHO's sample format.

    Args:
        root: the HO3D_v2 folder. ycb_models: the folder of YCB models (``<name>/textured_simple.obj``).
        mano_path: MANO_RIGHT.pkl or its folder (else ``$MIHO_MANO_DIR``).
        selection: sequence -> frame ranges to keep (e.g. :data:`HO3DV2_MINUS`), or None (all).
        min_distance: samples whose hand is farther than this from the object (metres; the
            closest vertex pair) are left out, as in the paper; only where the hand is known.

    Returns:
        (samples: dict of arrays and lists, objects: name -> (verts (N, 3), faces (F, 3))).
    """
    from tqdm.auto import tqdm

    from miho.mesh import load_obj

    root, ycb = Path(root), Path(ycb_models)
    if split not in ("train", "evaluation"):
        raise ValueError(f"HO3D split must be 'train' or 'evaluation', got {split!r}")
    names = _need(root / f"{split}.txt", f"HO3D's {split}.txt").read_text().split()
    hand = _mano(mano_path)
    rows, objects = [], {}
    for entry in tqdm(names, desc=f"HO3D {split}", disable=not progress):
        seq, frame = entry.split("/")
        if not _selected(seq, int(frame), selection):
            continue
        meta = _load_meta(_need(root / split / seq / "meta" / f"{frame}.pkl", "an HO3D meta file"))
        name = str(meta["objName"])
        if name not in objects:
            v, f = load_obj(_need(ycb / name / "textured_simple.obj", f"the YCB model {name}"), dtype=torch.float64)
            objects[name] = (v.numpy(), f.numpy())
        rot = torch.as_tensor(np.asarray(meta["objRot"], np.float64).reshape(3))
        R_o = GL_TO_CV @ axis_angle_to_matrix(rot).numpy()
        row = dict(image=f"{split}/{seq}/rgb/{frame}.png", K=np.asarray(meta["camMat"], np.float64), obj_name=name,
                   obj_rot=R_o, obj_trans=GL_TO_CV @ np.asarray(meta["objTrans"], np.float64).reshape(3))  # fmt: skip
        if meta.get("handPose") is not None:
            row["mano"] = (np.asarray(meta["handPose"], np.float64).reshape(16, 3),
                           np.asarray(meta["handBeta"], np.float64).reshape(10),
                           np.asarray(meta["handTrans"], np.float64).reshape(3))  # fmt: skip
        rows.append(row)
    if not rows:
        raise ValueError(f"no HO3D {split} sample selected under {root}")
    return _finish(hand, rows, objects, min_distance, dict(dataset="HO3D v2", split=split))


def _finish(hand, rows, objects, min_distance, info) -> tuple[dict, dict]:
    """Camera-space MANO parameters, joints and the distance filter for converted rows."""
    B = len(rows)
    known = torch.tensor(["mano" in r for r in rows])
    pose = torch.full((B, 16, 3), float("nan"), dtype=torch.float64)
    shape = torch.full((B, 10), float("nan"), dtype=torch.float64)
    trans = torch.full((B, 3), float("nan"), dtype=torch.float64)
    joints = torch.full((B, 21, 3), float("nan"), dtype=torch.float64)
    keep = torch.ones(B, dtype=torch.bool)
    idx = known.nonzero()[:, 0].tolist()
    if idx:
        p = torch.tensor(np.stack([rows[i]["mano"][0] for i in idx]))
        s = torch.tensor(np.stack([rows[i]["mano"][1] for i in idx]))
        t = torch.tensor(np.stack([rows[i]["mano"][2] for i in idx]))
        R = torch.tensor(np.stack([rows[i].get("mano_R", GL_TO_CV) for i in idx]))
        p, t = RigidMotion(R, torch.zeros(len(idx), 3, dtype=torch.float64)).hand(hand, p, s, t)
        with torch.no_grad():
            out = hand(p, s, t)
        ov = []
        for i in idx:
            verts = torch.as_tensor(objects[rows[i]["obj_name"]][0], dtype=torch.float64)
            ov.append(RigidMotion(rows[i]["obj_rot"], rows[i]["obj_trans"]).points(verts))
        near = _min_distance(out.vertices, ov)
        for j, i in enumerate(idx):
            pose[i], shape[i], trans[i], joints[i] = p[j], s[j], t[j], out.joints21[j]
            keep[i] = bool(near[j] <= min_distance)
    sel = keep.nonzero()[:, 0].tolist()
    samples = dict(
        image=[rows[i]["image"] for i in sel], obj_name=[rows[i]["obj_name"] for i in sel],
        K=np.stack([rows[i]["K"] for i in sel]), obj_rot=np.stack([rows[i]["obj_rot"] for i in sel]),
        obj_trans=np.stack([rows[i]["obj_trans"] for i in sel]), hand_pose=pose[sel].numpy(),
        hand_shape=shape[sel].numpy(), hand_trans=trans[sel].numpy(), joints=joints[sel].numpy(),
    )  # fmt: skip
    samples["info"] = dict(info, converted=B, kept=len(sel), min_distance=min_distance)
    return samples, objects


# ---------------------------------------------------------------------- FHB
def _fhb_lines(path: Path, width: int) -> dict[int, np.ndarray]:
    out = {}
    for line in _need(path, "an FHB annotation file").read_text().splitlines():
        w = line.split()
        if len(w) == width + 1:
            out[int(w[0])] = np.array(w[1:], dtype=np.float64)
    return out


def fhb_sequences(root, split: str) -> list[tuple[str, str, str]]:
    """(subject, action, sequence) of FHB's action split ``split`` ("train" or "test") that use
    one of :data:`FHB_OBJECTS`."""
    if split not in ("train", "test"):
        raise ValueError(f"FHB split must be 'train' or 'test', got {split!r}")
    text = _need(Path(root) / "data_split_action_recognition.txt", "FHB's data_split_action_recognition.txt")
    block, out = None, []
    actions = {a for acts in FHB_OBJECTS.values() for a in acts}
    for line in text.read_text().splitlines():
        w = line.split()
        if not w:
            continue
        if w[0] in ("Training", "Test"):
            block = "train" if w[0] == "Training" else "test"
        elif block == split:
            subject, action, seq = w[0].split("/")
            if action in actions:
                out.append((subject, action, seq))
    return out


def convert_fhb(root, split: str = "train", mano_path=None, min_distance: float = 0.005, fit_steps: int = 300,
                every: int = 1, progress: bool = True) -> tuple[dict, dict]:  # fmt: skip
    """FHB's object subset, action split ``split``, in MIHO's sample format (see the module
    docstring); MANO is fitted to each frame's 21 joints (with L_anat, all frames at once).
    ``every``: keep every n-th frame."""
    from tqdm.auto import tqdm

    from miho import amano

    root = Path(root)
    hand = _mano(mano_path)
    objects = {}
    for obj in FHB_OBJECTS:
        ply = root / "Object_models" / f"{obj}_model" / f"{obj}_model.ply"
        if ply.exists():
            objects[obj] = read_ply(ply)
    frames = []
    for subject, action, seq in tqdm(fhb_sequences(root, split), desc=f"FHB {split}", disable=not progress):
        obj = next(o for o, acts in FHB_OBJECTS.items() if action in acts)
        if obj not in objects:
            _need(root / "Object_models" / f"{obj}_model" / f"{obj}_model.ply", f"FHB's {obj} model")
        skel = _fhb_lines(root / "Hand_pose_annotation_v1" / subject / action / seq / "skeleton.txt", 63)
        objp = _fhb_lines(root / "Object_6D_pose_annotation_v1_1" / subject / action / seq / "object_pose.txt", 16)
        for f in sorted(set(skel) & set(objp))[::every]:
            world = np.c_[skel[f].reshape(21, 3), np.ones(21)]
            cam = (FHB_CAM_EXTR @ world.T).T[:, :3] / 1000.0
            T = FHB_CAM_EXTR @ objp[f].reshape(4, 4).T  # stored column by column; mm
            frames.append(dict(image=f"Video_files/{subject}/{action}/{seq}/color/color_{f:04d}.jpeg", K=FHB_K,
                               obj_name=obj, obj_rot=T[:3, :3], obj_trans=T[:3, 3] / 1000.0,
                               joints=cam[list(FHB_TO_MIHO)]))  # fmt: skip
    if not frames:
        raise ValueError(f"no FHB {split} frame found under {root}")
    target = torch.tensor(np.stack([r["joints"] for r in frames]))
    pose, fit = amano.fit_to_joints(hand, target, anat_weight=1.0, steps=fit_steps)
    for r, p, t in zip(frames, pose.detach(), fit["trans"].detach()):
        r["mano"], r["mano_R"] = (p.numpy(), np.zeros(10), t.numpy()), np.eye(3)
    samples, objects = _finish(hand, frames, objects, min_distance, dict(dataset="FHB", split=split))
    samples["info"]["fit_joint_error_mm"] = float(1000 * fit["joint_error"].mean())
    return samples, objects


# ---------------------------------------------------------------------- the converted format
def save_converted(path, samples: dict, objects: dict) -> None:
    """Write converted samples and their object models to ``path`` (.npz, atomically)."""
    arrays = {k: np.asarray(samples[k]) for k in _KEYS}
    arrays.update(image=np.array(samples["image"], dtype=str), obj_name=np.array(samples["obj_name"], dtype=str),
                  info=np.array(json.dumps(samples["info"])),
                  object_names=np.array(sorted(objects), dtype=str))  # fmt: skip
    for i, name in enumerate(sorted(objects)):
        arrays[f"object_{i}_verts"], arrays[f"object_{i}_faces"] = objects[name]
    from miho.files import atomic_savez

    atomic_savez(path, arrays)


class ConvertedHO(torch.utils.data.Dataset):
    """Samples of a converted real dataset with :class:`~miho.data.synthho.SynthHO`'s keys.

    Args:
        path: a file written by :func:`save_converted`. root: the dataset root, for images
            (None: no images). mano_path: MANO (else ``$MIHO_MANO_DIR``).
    """

    def __init__(self, path, root=None, mano_path=None) -> None:
        from miho.anchors import hand_regions

        with np.load(_need(Path(path), "the converted dataset"), allow_pickle=False) as z:
            self.data = {k: torch.from_numpy(z[k]) for k in _KEYS}
            self.image, self.obj_name = [str(s) for s in z["image"]], [str(s) for s in z["obj_name"]]
            self.info = json.loads(str(z["info"]))
            names = [str(s) for s in z["object_names"]]
            self.objects = {n: (torch.from_numpy(z[f"object_{i}_verts"]), torch.from_numpy(z[f"object_{i}_faces"]))
                            for i, n in enumerate(names)}  # fmt: skip
        self.root = Path(root) if root else None
        self.hand = _mano(mano_path)
        self.regions = hand_regions(self.hand)

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, i: int) -> dict:
        from miho import cpf
        from miho.mesh import vertex_normals

        d = {k: v[i] for k, v in self.data.items()}
        v, f = self.objects[self.obj_name[i]]
        ov = RigidMotion(d["obj_rot"], d["obj_trans"]).points(v)
        K = d["K"]

        def project(x):
            return (x @ K.T)[:, :2] / x[:, 2:3]

        s = dict(K=K, obj_rot=d["obj_rot"], obj_trans=d["obj_trans"], obj_verts=ov, obj_faces=f,
                 obj_normals=vertex_normals(ov[None], f[None])[0], obj_verts_2d=project(ov), obj_name=self.obj_name[i],
                 hand_pose=d["hand_pose"], hand_shape=d["hand_shape"], hand_trans=d["hand_trans"],
                 image_path=self.image[i])  # fmt: skip
        if bool(torch.isfinite(d["hand_pose"]).all()):
            with torch.no_grad():
                out = self.hand(d["hand_pose"][None], d["hand_shape"][None], d["hand_trans"][None])
            field = cpf.annotate(out.vertices, ov[None], self.regions)
            s.update(hand_verts=out.vertices[0], joints=out.joints21[0], joints_2d=project(out.joints21[0]),
                     hand_verts_2d=project(out.vertices[0]))  # fmt: skip
            s.update(vc=field.vc[0], cr=field.cr[0], ae=field.ae[0])
        if self.root is not None and (self.root / self.image[i]).exists():
            from PIL import Image

            img = np.asarray(Image.open(self.root / self.image[i]).convert("RGB"), dtype=np.float32) / 255
            s["image"] = torch.from_numpy(img).permute(2, 0, 1)
        return s


__all__ = [
    "FHB_CAM_EXTR",
    "FHB_JOINTS",
    "FHB_K",
    "FHB_OBJECTS",
    "HO3DV2_MINUS",
    "ConvertedHO",
    "convert_fhb",
    "convert_ho3d",
    "fhb_sequences",
    "read_ply",
    "save_converted",
]
