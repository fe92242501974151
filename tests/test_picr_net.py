"""PiCR's network and losses against hand-worked values and invariants (no dataset needed)."""

import pytest
import torch

from miho.anchors import NUM_REGIONS
from miho.nets.picr import CONFIGS, PiCRConfig, PiCROutput, build_picr, pixel_aligned_features
from miho.nets.pointnet import PointNetEncoder, SplitLinear
from miho.train.losses import binary_focal_loss, elasticity_loss, picr_loss, region_focal_loss
from miho.train.picr import subsample_vertices
from miho.train.picr_data import AUGMENT_DRAWS, augment

torch.set_num_threads(2)


def _fmap():
    # (1, 2, 4, 4): channel 0 holds 10 * row + col, channel 1 its negative
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    f0 = 10 * rows + cols
    return torch.stack([f0, -f0])[None]


def test_pixel_aligned_features_bilinear_by_hand():
    # Image 16 px, feature map 4 cells: cell (r, c) is centred on pixel (4 c + 2, 4 r + 2) (pixel
    # centres at integer + 0.5). With P = I a point (x, y, 1) projects to pixel (x, y).
    P = torch.eye(3)[None]
    verts = torch.tensor([[[6.0, 10.0, 1.0],  # exactly the centre of cell (row 2, col 1): 21
                           [7.0, 9.0, 1.0],  # col 1.25, row 1.75
                           [20.0, 5.0, 1.0],  # right of the image
                           [6.0, 10.0, -1.0],  # behind the camera
                           [6.0, 10.0, 1.0]]])  # padding  # fmt: skip
    mask = torch.tensor([[True, True, True, True, False]])
    feats, inside, uv = pixel_aligned_features(_fmap(), verts, P, mask, image_size=16)
    assert inside.tolist() == [[True, True, False, False, False]]
    assert feats[0, 0].tolist() == pytest.approx([21.0, -21.0])
    ax, ay = 0.25, 0.75
    f = lambda r, c: 10 * r + c  # noqa: E731
    want = (1 - ax) * (1 - ay) * f(1, 1) + ax * (1 - ay) * f(1, 2) + (1 - ax) * ay * f(2, 1) + ax * ay * f(2, 2)
    assert float(feats[0, 1, 0]) == pytest.approx(want, abs=1e-5)
    assert feats[0, 2:].abs().sum() == 0
    assert uv[0, 1].tolist() == pytest.approx([7.0, 9.0])


def test_pixel_aligned_features_follow_the_intrinsics():
    K = torch.tensor([[[100.0, 0.0, 8.0], [0.0, 100.0, 8.0], [0.0, 0.0, 1.0]]])
    verts = torch.tensor([[[-0.02, 0.02, 1.0]]])  # u = 100 * -0.02 + 8 = 6, v = 10
    feats, inside, _ = pixel_aligned_features(_fmap(), verts, K, torch.ones(1, 1, dtype=torch.bool), 16)
    assert bool(inside[0, 0]) and float(feats[0, 0, 0]) == pytest.approx(21.0)


def test_pointnet_ignores_padding():
    torch.manual_seed(0)
    enc = PointNetEncoder((4, 8, 16)).eval()
    x = torch.randn(1, 5, 4)
    padded = torch.cat([x, 100 * torch.randn(1, 3, 4)], 1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    a = enc(x, torch.ones(1, 5, dtype=torch.bool))
    b = enc(padded, mask)
    assert enc.part_channels == (8, 16, 16) and [p.shape for p in a] == [(1, 5, 8), (1, 5, 16), (1, 1, 16)]
    for p, q in zip(a, b):
        assert torch.allclose(p, q[:, : p.shape[1]], atol=1e-6)


def test_split_linear_equals_a_linear_map_of_the_concatenation():
    torch.manual_seed(0)
    split = SplitLinear((3, 4, 2), 5)
    parts = [torch.randn(2, 6, 3), torch.randn(2, 6, 4), torch.randn(2, 1, 2)]
    whole = torch.nn.Linear(9, 5)
    with torch.no_grad():
        whole.weight.copy_(torch.cat([m.weight for m in split.maps], 1))
        whole.bias.copy_(split.maps[0].bias)
    cat = torch.cat([parts[0], parts[1], parts[2].expand(-1, 6, -1)], -1)
    assert torch.allclose(split(parts), whole(cat), atol=1e-6)


def _inputs(B=2, N=30, S=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(B, 3, S, S, generator=g)
    verts = torch.randn(B, N, 3, generator=g) * 0.03 + torch.tensor([0.0, 0.0, 0.4])
    K = torch.tensor([[150.0, 0, S / 2], [0, 150.0, S / 2], [0, 0, 1]]).expand(B, 3, 3).clone()
    return image, verts, K


def test_picr_shapes_stacks_and_predict():
    torch.manual_seed(0)
    net = build_picr("tiny")
    image, verts, K = _inputs()
    out = net.train()(image, verts, K)
    assert isinstance(out, PiCROutput) and len(out.vc_logits) == 2  # both stacks in training
    assert out.cr_logits[0].shape == (2, 30, NUM_REGIONS) and out.ae[0].shape == (2, 30)
    assert len(net.eval()(image, verts, K).vc_logits) == 1  # the last stack in eval
    field = net.predict(image, verts, K)
    assert field.vc.shape == (2, 30) and bool(((field.vc >= 0) & (field.vc <= 1)).all())
    assert bool(((field.cr >= 0) & (field.cr < NUM_REGIONS)).all())


def test_prediction_is_batch_and_padding_independent_and_deterministic():
    torch.manual_seed(1)
    net = build_picr("tiny").eval()
    image, verts, K = _inputs(B=2, N=30)
    both = net.predict(image, verts, K)
    alone = net.predict(image[1:], verts[1:, :20], K[1:])  # sample 1, its first 20 vertices as a smaller object
    padded = torch.cat([verts[1:, :20], torch.randn(1, 10, 3)], 1)
    mask = torch.tensor([[True] * 20 + [False] * 10])
    pad = net.predict(image[1:], padded, K[1:], mask)
    assert torch.allclose(pad.vc[0, :20], alone.vc[0], atol=1e-5) and torch.equal(pad.cr[0, :20], alone.cr[0])
    assert bool((pad.vc[0, 20:] == 0).all()) and bool((pad.cr[0, 20:] == -1).all())
    single = net.predict(image[:1], verts[:1], K[:1])
    assert torch.allclose(single.vc, both.vc[:1], atol=1e-5) and torch.allclose(single.ae, both.ae[:1], atol=1e-5)
    again = net.predict(image, verts, K)
    assert torch.equal(again.vc, both.vc)


def test_gradients_reach_the_image():
    torch.manual_seed(2)
    net = build_picr("tiny").train()
    image, verts, K = _inputs(B=1)
    image.requires_grad_(True)
    out = net(image, verts, K)
    vc = (verts[..., 0] > 0).float()
    cr = torch.randint(0, NUM_REGIONS, vc.shape)
    total, _ = picr_loss(out, vc, cr, torch.rand(vc.shape))
    total.backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0


def test_bad_inputs_are_named():
    net = build_picr("tiny")
    image, verts, K = _inputs()
    with pytest.raises(ValueError, match="image"):
        net(torch.rand(2, 3, 32, 32), verts, K)
    with pytest.raises(ValueError, match="obj_verts"):
        net(image, verts[:1], K)
    with pytest.raises(ValueError, match="NaN"):
        net(image, verts.clone().fill_(float("nan")), K)
    with pytest.raises(ValueError, match="config"):
        build_picr("huge")
    with pytest.raises(ValueError, match="image_size"):
        PiCRConfig(image_size=100)
    with pytest.raises(ValueError, match="unknown"):
        PiCRConfig.from_dict({**CONFIGS["small"].to_dict(), "colour": 3})


def test_focal_loss_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    target = torch.tensor([[1.0, 0.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # -0.9 (1 - 0.5)^2 log 0.5 and -0.1 sigmoid(2)^2 log(1 - sigmoid(2)), averaged
    assert float(binary_focal_loss(logits, target, mask, alpha=0.9, gamma=2.0)) == pytest.approx(0.1604830, abs=1e-6)
    # a masked vertex, whatever its values, changes nothing
    more = binary_focal_loss(torch.tensor([[0.0, 2.0, -7.0]]), torch.tensor([[1.0, 0.0, 1.0]]),
                             torch.tensor([[True, True, False]]))  # fmt: skip
    assert float(more) == pytest.approx(0.1604830, abs=1e-6)
    # per-sample means: a second sample with one vertex of loss L gives (0.1604830 + L) / 2
    two = binary_focal_loss(torch.tensor([[0.0, 2.0], [0.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]),
                            torch.tensor([[True, True], [True, False]]))  # fmt: skip
    assert float(two) == pytest.approx((0.1604830 + 0.1559581) / 2, abs=1e-6)


def test_region_and_elasticity_losses_by_hand():
    logits = torch.zeros(1, 2, 3)
    target = torch.tensor([[0, 2]])
    mask = torch.tensor([[True, False]])
    # m = 1/3: -(2/3)^2 log(1/3)
    assert float(region_focal_loss(logits, target, mask)) == pytest.approx(0.4882721, abs=1e-6)
    assert float(elasticity_loss(torch.tensor([[0.8, 0.1]]), torch.tensor([[0.5, 0.9]]), mask)) == pytest.approx(
        0.9162907, abs=1e-6
    )
    assert float(region_focal_loss(logits, target, torch.zeros_like(mask))) == 0.0  # no counted vertex


def test_out_of_image_vertices_change_nothing():
    B, N = 1, 3
    vc_logits = [torch.tensor([[0.3, -1.0, 5.0]])]
    cr_logits = [torch.randn(B, N, NUM_REGIONS, generator=torch.Generator().manual_seed(0))]
    ae = [torch.tensor([[0.4, 0.6, 0.01]])]
    vc, cr, aet = torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[3, -1, 5]]), torch.tensor([[0.5, 0.0, 0.9]])
    seen = PiCROutput(vc_logits, cr_logits, ae, torch.tensor([[True, True, False]]), torch.zeros(B, N, 2))
    total, terms = picr_loss(seen, vc, cr, aet)
    cut = PiCROutput([v[:, :2] for v in vc_logits], [c[:, :2] for c in cr_logits], [a[:, :2] for a in ae],
                     torch.tensor([[True, True]]), torch.zeros(B, 2, 2))  # fmt: skip
    total2, _ = picr_loss(cut, vc[:, :2], cr[:, :2], aet[:, :2])
    assert float(total) == pytest.approx(float(total2), abs=1e-6)
    assert float(total) == pytest.approx(float(10 * terms["vc"] + 10 * terms["cr"] + terms["ae"]), rel=1e-6)


def test_subsample_keeps_real_vertices():
    mask = torch.tensor([[True] * 6 + [False] * 4, [True] * 2 + [False] * 8])
    keys = torch.rand(2, 10, generator=torch.Generator().manual_seed(0))
    idx, keep = subsample_vertices(mask, 4, keys)
    assert idx.shape == (2, 4)
    assert bool(mask.gather(1, idx)[0].all()) and keep[1].sum() == 2  # sample 1 has only 2 real vertices
    assert len(set(idx[0].tolist())) == 4


def test_augmentation_moves_image_and_camera_together():
    S = 64
    image = torch.zeros(1, 3, S, S)
    image[:, :, 20:23, 40:43] = 1.0  # a bright 3x3 blob centred on pixel (41.5, 21.5)
    K = torch.tensor([[[100.0, 0.0, S / 2], [0.0, 100.0, S / 2], [0.0, 0.0, 1.0]]])
    point = torch.tensor([(41.5 - S / 2) / 100, (21.5 - S / 2) / 100, 1.0])
    identity = torch.full((1, AUGMENT_DRAWS), 0.5)  # every factor 1, no rotation, no shift
    same, P0 = augment(image, K, identity)
    assert torch.allclose(same, image, atol=1e-5) and torch.allclose(P0, K)
    draws = torch.tensor([[0.5, 0.5, 0.5, 0.9, 0.2, 0.8, 0.3]])  # rotated, scaled down, shifted
    warped, P = augment(image, K, draws)
    uvw = P[0] @ point
    u, v = float(uvw[0] / uvw[2]), float(uvw[1] / uvw[2])
    grey = warped[0].mean(0)
    rows, cols = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    cu, cv = float((grey * cols).sum() / grey.sum()), float((grey * rows).sum() / grey.sum())
    assert abs(cu - u) < 0.5 and abs(cv - v) < 0.5  # the blob's centre is where the camera now projects the point
    assert (abs(u - 41.5) + abs(v - 21.5)) > 3  # and it moved
