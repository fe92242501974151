"""MIHO end to end (miho.pipeline) at tiny size: untrained tiny HoNet and PiCR, a few GeO
iterations. What is checked is the plumbing: each stage receives what the previous one gave
(poses, meshes, field, resized images and their intrinsics), and bad input is refused."""

import numpy as np
import pytest
import torch
from PIL import Image

from miho import cli
from miho.hand import load_hand
from miho.mesh import Meshes, box, is_closed, load_obj, save_obj
from miho.nets.honet import build_honet
from miho.nets.picr import build_picr
from miho.pipeline import load_image, reconstruct, resize_images, user_object
from miho.train.checkpoints import export_weights, write_card
from miho.train.picr_data import build_picr_data

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    data = build_picr_data("val", views=1, size=64, grasps=2, workers=0, progress=False)
    b = data.batch(torch.arange(2))
    objects = Meshes(b["obj_canonical"], b["obj_faces"], b["obj_mask"], b["obj_face_mask"])
    return dict(b=b, objects=objects, honet=build_honet("tiny").eval(), picr=build_picr("tiny").eval(),
                aware=build_picr("tiny", "hand_aware").eval(), hand=load_hand())  # fmt: skip


def _run(s, images=None, K=None, **kw):
    b = s["b"]
    kw = {"honet": s["honet"], "picr": s["picr"], "hand": s["hand"], "t_vc": 0.3, "iterations": 3, **kw}
    return reconstruct(b["image"] if images is None else images, b["K"] if K is None else K, s["objects"], **kw)


def test_each_stage_gets_what_the_previous_one_gave(setup):
    s, b = setup, setup["b"]
    r = _run(s)
    c = r.coarse
    out = s["honet"](b["image"], b["K"])
    assert torch.allclose(c["obj_trans"], out.obj_trans, atol=1e-6) and torch.allclose(c["obj_rot"], out.obj_rot)
    expected = (s["objects"].verts @ out.obj_rot.transpose(1, 2) + out.obj_trans[:, None]) * b["obj_mask"][..., None]
    assert torch.allclose(r.objects.verts, expected, atol=1e-6)
    assert torch.allclose(c["hand_verts"], s["hand"](c["hand_pose"], c["hand_shape"], c["hand_trans"]).vertices)
    field = s["picr"].predict(b["image"], r.objects.verts, b["K"], b["obj_mask"])
    assert torch.allclose(r.field.vc, field.vc, atol=1e-6) and torch.equal(r.field.cr, field.cr)
    assert r.refined.hand_verts.shape == c["hand_verts"].shape and r.refined.skipped.shape == (2,)
    # GeO started from HoNet's hand and moved it a little in 3 iterations (the untrained PiCR gives vc about
    # 0.5 everywhere: above t_vc = 0.3, so no sample is skipped)
    assert not bool(r.refined.skipped.any())
    moved = (r.refined.hand_verts - c["hand_verts"]).norm(dim=-1).amax(1)
    assert bool((moved > 0).all()) and float(moved.max()) < 0.02
    hand_only = _run(s, mode="hand")
    assert torch.allclose(hand_only.refined.obj_verts, r.objects.verts, atol=1e-6)  # hand mode: the object stays
    aware = _run(s, picr=s["aware"])  # the hand-aware PiCR reads HoNet's coarse hand
    assert aware.field.vc.shape == r.field.vc.shape


def test_larger_images_are_resized_with_their_intrinsics(setup):
    s, b = setup, setup["b"]
    big = torch.nn.functional.interpolate(b["image"], scale_factor=2, mode="bilinear")
    K2 = b["K"].clone()
    K2[:, :2] *= 2  # the same camera at twice the resolution (pixel corners scale by 2)
    small, P = resize_images(big, K2, 64)
    assert small.shape == b["image"].shape and torch.allclose(P, b["K"], atol=1e-5)
    assert float((small - b["image"]).abs().mean()) < 0.02  # up and down again: nearly the image
    r = _run(s, images=big, K=K2)
    assert torch.isfinite(r.refined.hand_verts).all()


def test_user_objects_are_checked_centred_and_subdivided():
    v, f = box((0.06, 0.04, 0.08), divisions=2)
    v = v + torch.tensor([0.3, -0.1, 0.5])
    verts, faces = user_object(v, f, min_vertices=500)
    assert verts.shape[0] >= 500 and is_closed(faces)
    assert torch.allclose(verts.mean(0), torch.zeros(3), atol=1e-3)  # a box's centroid is its centre
    size = verts.max(0).values - verts.min(0).values
    assert torch.allclose(size, torch.tensor([0.06, 0.04, 0.08]), atol=1e-6)  # never rescaled
    with pytest.raises(ValueError, match="watertight"):
        user_object(v, f[:-2])
    with pytest.raises(ValueError, match="inwards"):
        user_object(v, f[:, [0, 2, 1]])
    with pytest.raises(ValueError, match="at least 4"):
        user_object(v[:3], f[:1])


def test_bad_input_is_refused(setup):
    s, b = setup, setup["b"]
    with pytest.raises(ValueError, match="square"):
        _run(s, images=b["image"][..., :48])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _run(s, images=b["image"] * 255)
    K = b["K"].clone()
    K[:, 0, 0] = -K[:, 0, 0]
    with pytest.raises(ValueError, match="behind the camera"):
        _run(s, K=K)
    with pytest.raises(ValueError, match="mode"):
        _run(s, mode="object")
    with pytest.raises(ValueError, match="one mesh an image"):
        reconstruct(b["image"][:1], b["K"][:1], s["objects"], honet=s["honet"], picr=s["picr"], t_vc=0.5)


def test_reconstruct_command_on_an_image_and_a_mesh_written_to_disk(setup, tmp_path):
    """``miho reconstruct`` on a SynthHO image saved as PNG (padded to 64 x 80: the central square
    is the image) with its object saved as OBJ, tiny untrained networks given as weight files."""
    s, b = setup, setup["b"]
    rgb = (b["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(np.pad(rgb, ((0, 0), (8, 8), (0, 0)))).save(tmp_path / "image.png")
    K = b["K"][0]
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]) + 8, float(K[1, 2])
    image, Kc = load_image(tmp_path / "image.png", torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]))
    assert torch.allclose(image, torch.from_numpy(rgb).permute(2, 0, 1)[None] / 255.0) and torch.allclose(Kc, K)
    n = int(b["obj_mask"][0].sum())
    nf = int(b["obj_face_mask"][0].sum())
    save_obj(tmp_path / "object.obj", s["objects"].verts[0, :n], s["objects"].faces[0, :nf])
    for name, net in (("honet", s["honet"]), ("picr", s["picr"])):
        export_weights(net, tmp_path / f"{name}.pt", {"config": net.config.to_dict()})
        write_card(tmp_path / f"{name}.pt", {"config": net.config.to_dict()})
    args = ["reconstruct", "--image", str(tmp_path / "image.png"), "--K", f"{fx},{fy},{cx},{cy}", "--object",
            str(tmp_path / "object.obj"), "--out", str(tmp_path / "out"), "--iterations", "3", "--t-vc", "0.3",
            "--honet", str(tmp_path / "honet.pt"), "--picr", str(tmp_path / "picr.pt"), "--threads", "2"]  # fmt: skip
    cli.main(args)
    out = tmp_path / "out"
    hand_v, hand_f = load_obj(out / "hand.obj")
    assert hand_v.shape == (s["hand"].num_vertices, 3) and torch.equal(hand_f, s["hand"].faces.long())
    obj_v, _ = load_obj(out / "object.obj")
    assert obj_v.shape[0] >= n  # the user's mesh, subdivided to PiCR's density
    assert 0.2 < float(obj_v[:, 2].mean()) < 3.0  # in front of the camera, metres
    assert "plotly" in (out / "reconstruction.html").read_text()[:20000]
    bad = tmp_path / "open.obj"
    save_obj(bad, s["objects"].verts[0, :n], s["objects"].faces[0, : nf - 3])
    with pytest.raises(SystemExit, match="watertight"):  # the command prints the ValueError's message
        cli.main([*args[:5], "--object", str(bad), *args[7:]])
