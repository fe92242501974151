"""The hand-aware PiCR (beyond the paper): the coarse hand's per-vertex features against hand-worked
values, their invariance to the camera, the variant's inputs and its refusal of the other
variant's weights, and the coarse hands it trains and is evaluated on."""

import json
import math

import pytest
import torch

from miho.anchors import NUM_REGIONS, HandRegions
from miho.data.synthho import Disturbance, disturb_hands
from miho.hand import load_hand
from miho.nets.hand_features import HAND_FEATURES, CoarseHand, hand_features
from miho.nets.picr import CONFIGS, build_picr, load_picr
from miho.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from miho.train.checkpoints import export_weights
from miho.train.picr_data import disturb_hand_params, scale_hand_disturbance

torch.set_num_threads(2)


def _square_hand():
    """A 10 mm square of two triangles in the plane z = 0, facing +z; vertices 0 and 1 on the palm
    side; anchor 0 on vertex 0 (region 3), anchor 1 on vertex 3 (region 7)."""
    verts = torch.tensor([[[0.0, 0, 0], [0.01, 0, 0], [0, 0.01, 0], [0.01, 0.01, 0]]])
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    regions = HandRegions(
        control_points=torch.zeros(2, 3), control_region=torch.tensor([3, 7]), labels=torch.tensor([3, 3, 7, 7]),
        palm_side=torch.tensor([True, True, False, False]), anchor_faces=torch.tensor([[0, 1, 2], [3, 1, 2]]),
        anchor_weights=torch.zeros(2, 2), anchor_region=torch.tensor([3, 7]), anchor_control_point=torch.tensor([0, 1]),
    )  # fmt: skip
    return verts, faces, regions


def test_hand_features_by_hand():
    verts, faces, regions = _square_hand()
    obj = torch.tensor([[[0.0, 0, 0.005], [0.01, 0.01, -0.03], [0, 0, 0.2], [5.0, 5, 5]]])
    normals = torch.tensor([[[0.0, 0, -1], [1.0, 0, 0], [0, 0, 1], [0, 0, 1]]])
    mask = torch.tensor([[True, True, True, False]])
    f = hand_features(verts, faces, regions, obj, normals, mask)
    assert f.shape == (1, 4, HAND_FEATURES) == (1, 4, 2 + NUM_REGIONS + 2)

    def row(signed, palm, region, elastic, facing):
        r = torch.zeros(HAND_FEATURES)
        r[0], r[1], r[2 + region], r[-2], r[-1] = signed, palm, 1.0, elastic, facing
        return r

    # 5 mm above vertex 0, facing the hand: 0.25 s on both distances, anchor 0 (region 3) at 5 mm
    # gives Eq. 4's 0.5 cos(pi / 4) + 0.5
    assert torch.allclose(f[0, 0], row(0.25, 0.25, 3, 0.5 * math.cos(math.pi / 4) + 0.5, -1.0), atol=1e-5)
    # 30 mm behind vertex 3 (inside): signed -1.5 s; nearest palm-side vertex 1 at sqrt(10^2 + 30^2) mm;
    # anchor 1 (region 7) at 30 mm >= s: elasticity 0; normals at right angles
    assert torch.allclose(f[0, 1], row(-1.5, math.hypot(0.01, 0.03) / 0.02, 7, 0.0, 0.0), atol=1e-5)
    # 200 mm away: both distances clipped at 4 s
    assert torch.allclose(f[0, 2], row(4.0, 4.0, 3, 0.0, 1.0), atol=1e-5)
    assert not f[0, 3].any()  # padding


def test_hand_features_do_not_depend_on_the_camera():
    """A rigid motion of hand and object together changes no feature (distances, regions, angles)."""
    hand = load_hand()
    coarse = CoarseHand(hand)
    g = torch.Generator().manual_seed(0)
    pose = 0.3 * torch.randn(2, 16, 3, generator=g)
    shape = torch.zeros(2, hand.num_shape)
    trans = torch.tensor([[0.0, 0.0, 0.4], [0.05, -0.02, 0.5]])
    palm = hand(pose, shape, trans).vertices.mean(1, keepdim=True)
    obj = palm + 0.03 * torch.randn(2, 300, 3, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(2, 300, 3, generator=g), dim=-1)
    before = coarse.features(pose, shape, trans, obj, normals)
    R = axis_angle_to_matrix(torch.tensor([0.3, -0.5, 0.2]))
    t = torch.tensor([0.1, 0.0, 0.2])
    # the hand's root turns by R about the root joint j: translation R (j + trans) + t - j
    j = hand(pose, shape, torch.zeros(2, 3)).joints[:, 0]
    pose2 = pose.clone()
    pose2[:, 0] = matrix_to_axis_angle(R @ axis_angle_to_matrix(pose[:, 0]))
    trans2 = (j + trans) @ R.T + t - j
    after = coarse.features(pose2, shape, trans2, obj @ R.T + t, normals @ R.T)
    assert torch.allclose(before[..., :2], after[..., :2], atol=1e-4)  # units of s: 2 micrometres
    flipped = (before[..., 2:19] != after[..., 2:19]).any(-1).float().mean()
    assert flipped < 0.01  # the nearest anchor's region (a near-tie may flip under float error)
    assert torch.allclose(before[..., 19:], after[..., 19:], atol=1e-3)
    assert (before[..., 1] < 1).any()  # some vertices are within 20 mm of the palm side


def test_variants_take_their_inputs():
    S = CONFIGS["tiny"].image_size
    image, verts = torch.rand(2, 3, S, S), torch.randn(2, 30, 3) * 0.03 + torch.tensor([0, 0, 0.5])
    K = torch.tensor([[1.5 * S, 0, S / 2], [0, 1.5 * S, S / 2], [0, 0, 1]]).expand(2, 3, 3)
    feats = torch.rand(2, 30, HAND_FEATURES)
    paper, aware = build_picr("tiny"), build_picr("tiny", "hand_aware")
    assert paper.config.variant == "paper" and aware.config.variant == "hand_aware"
    with pytest.raises(ValueError, match="hand_features is required"):
        aware.predict(image, verts, K)
    with pytest.raises(ValueError, match="reads no hand"):
        paper.predict(image, verts, K, hand_features=feats)
    with pytest.raises(ValueError, match="hand_features must have shape"):
        aware.predict(image, verts, K, hand_features=feats[..., :5])
    a = aware.predict(image, verts, K, hand_features=feats)
    b = aware.predict(image, verts, K, hand_features=feats.flip(0))  # each sample gets the other's hand
    assert a.vc.shape == (2, 30) and not torch.allclose(a.vc, b.vc)  # the hand features are read


def test_weights_of_the_other_variant_are_refused(tmp_path):
    for variant in ("paper", "hand_aware"):
        model = build_picr("tiny", variant)
        path = tmp_path / f"{variant}.pt"
        export_weights(model, path, {"config": model.config.to_dict()})
        path.with_suffix(".json").write_text(json.dumps({"config": model.config.to_dict()}))
        assert load_picr(path=path).config.variant == variant
        other = "paper" if variant == "hand_aware" else "hand_aware"
        with pytest.raises(ValueError, match=f"holds the '{variant}' PiCR, not the '{other}'"):
            load_picr(path=path, variant=other)
    with pytest.raises(ValueError, match="variant must be one of"):
        build_picr("tiny", "image_only")


def test_scaled_hand_disturbance():
    """Scale 0 is the true hand, 1 the given coarse one; scale k turns the root by k times the
    angle and moves it k times as far."""
    g = torch.Generator().manual_seed(1)
    pose = 0.4 * torch.randn(5, 16, 3, generator=g, dtype=torch.float64)
    trans = torch.randn(5, 3, generator=g, dtype=torch.float64)
    noisy, noisy_trans = disturb_hands(pose, trans, Disturbance(joint_std=0.05).draw(5, g))
    p0, t0 = scale_hand_disturbance(pose, trans, noisy, noisy_trans, 0.0)
    p1, t1 = scale_hand_disturbance(pose, trans, noisy, noisy_trans, 1.0)
    p3, t3 = scale_hand_disturbance(pose, trans, noisy, noisy_trans, torch.full((5,), 3.0, dtype=torch.float64))

    def angle(a, b):
        d = axis_angle_to_matrix(a[:, 0]) @ axis_angle_to_matrix(b[:, 0]).transpose(1, 2)
        return torch.arccos(((d.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))

    assert torch.allclose(axis_angle_to_matrix(p0), axis_angle_to_matrix(pose), atol=1e-9)
    assert torch.allclose(t0, trans) and torch.allclose(t1, noisy_trans)
    assert torch.allclose(axis_angle_to_matrix(p1), axis_angle_to_matrix(noisy), atol=1e-9)
    assert torch.allclose(angle(p3, pose), 3 * angle(noisy, pose), atol=1e-9)
    assert torch.allclose(t3 - trans, 3 * (noisy_trans - trans)) and torch.allclose(
        p3[:, 1:] - pose[:, 1:], 3 * (noisy[:, 1:] - pose[:, 1:])
    )
    # training draws: scales max_scale u^2, so offsets from 0 up to about 4 x (10 + 2 x 5) mm
    tp, tt = disturb_hand_params(pose.float(), trans.float(), torch.Generator().manual_seed(0), max_scale=4.0)
    offset = (tt - trans.float()).norm(dim=-1)
    assert tp.dtype == torch.float32 and bool((offset < 0.1).all()) and offset.std() > 0
