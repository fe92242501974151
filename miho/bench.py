"""Benchmarks behind ``miho bench`` (results go in the README with the command that made them)."""

from __future__ import annotations

import statistics
import time

import torch

from miho.anchors import hand_regions
from miho.hand import load_hand


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench_hand(batch: int = 256, device: str = "cpu", repeats: int = 20, warmup: int = 2) -> float:
    """Median seconds of one forward + backward pass of ``batch`` posed hands.

    The pass computes vertices, the 21 joints and the 32 anchors, and back-propagates a scalar
    of all three to pose, shape and translation.
    """
    hand = load_hand(device=device)
    regions = hand_regions(hand)
    g = torch.Generator("cpu").manual_seed(0)
    pose = (0.3 * torch.randn(batch, 16, 3, generator=g, device=g.device)).to(device).requires_grad_(True)
    shape = torch.zeros(batch, hand.num_shape, device=device, requires_grad=True)
    trans = torch.zeros(batch, 3, device=device, requires_grad=True)
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = hand(pose, shape, trans)
        loss = out.vertices.square().sum() + out.joints21.sum() + regions.anchors(out.vertices).sum()
        loss.backward()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        pose.grad = shape.grad = trans.grad = None
    return statistics.median(times)


def geo_scene(batch: int, device: str = "cpu", seed: int = 0):
    """B hands near cylinders of about 2000 vertices, with a CPF: a GeO workload."""
    from miho import cpf
    from miho.amano import curl_pose
    from miho.mesh import Meshes, cylinder

    hand = load_hand(device=device)
    g = torch.Generator("cpu").manual_seed(seed)
    v, f = cylinder(0.03, 0.12, segments=48, rings=36)  # 2066 vertices
    objs = Meshes.from_list([(v + torch.tensor([-0.05, 0.085, 0.0]), f)] * batch, device=device)
    pose = (curl_pose(hand, 0.3).cpu() + 0.05 * torch.randn(batch, 16, 3, generator=g, device=g.device)).to(device)
    trans = (0.004 * torch.randn(batch, 3, generator=g, device=g.device)).to(device)
    with torch.no_grad():
        near = hand(pose, trans=trans + torch.tensor([-0.006, 0.0, 0.0], device=device))
    field = cpf.annotate(near.vertices, objs.verts, hand_regions(hand), objs.vert_mask)
    return hand, pose, trans, objs, field


def bench_geo(
    batch: int, device: str = "cpu", iterations: int = 20, loop: bool = False, loop_samples: int = 16
) -> tuple[float, float]:
    """Seconds per GeO iteration for a batch (CPF contact, hand-object mode), and peak GPU
    memory in GiB (0 on the CPU).

    With ``loop`` the samples are optimised one at a time, as the official code does: the first
    ``min(batch, loop_samples)`` of them are timed and the per-iteration time of the whole loop is
    that time scaled to ``batch`` samples (every sample of the scene costs the same)."""
    from miho import geo

    hand, pose, trans, objs, field = geo_scene(batch, device)
    geo.optimize(hand, pose[:1], objs[0], field[:1], trans=trans[:1], iterations=2)  # warm-up
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    if loop:
        timed = min(batch, loop_samples)
        for i in range(timed):
            geo.optimize(hand, pose[i : i + 1], objs[i], field[i], trans=trans[i : i + 1], iterations=iterations)
    else:
        geo.optimize(hand, pose, objs, field, trans=trans, iterations=iterations)
    _sync(device)
    dt = (time.perf_counter() - t0) / iterations
    if loop:
        dt *= batch / timed
    peak = torch.cuda.max_memory_allocated() / 2**30 if str(device).startswith("cuda") else 0.0
    return dt, peak


def bench_recovery(repeats: int = 8, device: str = "cpu", iterations: int = 400, resolution: int = 80):
    """The recovery experiment on 4 synthesised ground-truth grasps x ``repeats`` perturbations
    (32 pairs by default): returns the :class:`miho.experiments.Recovery` and the GeO seconds.

    The objects are the cylinder, ball, box and can of :func:`miho.synthesis.example_objects`; the
    mug is left out because its synthesised "ground truth" already sinks about 4 mm into the
    mug's thick wall (PD 4 mm, SIV 8 cm^3), which no refinement towards it can lower."""
    from miho import experiments, synthesis

    hand = load_hand(device=device)
    objects, pose, trans = synthesis.example_grasps(hand, names=("cylinder", "ball", "box", "can"))
    t0 = time.perf_counter()
    rec = experiments.recovery_experiment(hand, objects, pose, trans, repeats=repeats, resolution=resolution,
                                          iterations=iterations)  # fmt: skip
    return rec, time.perf_counter() - t0


def bench_siv(batch: int = 32, device: str = "cpu", resolution: int = 80) -> tuple[float, float]:
    """Samples per second of the solid intersection volume at ``resolution``^3 (GeO's scene:
    posed hands against cylinders of 2066 vertices, some intersecting), and peak GPU memory in
    GiB (0 on the CPU)."""
    from miho import metrics

    hand, pose, trans, objs, _ = geo_scene(batch, device)
    with torch.no_grad():
        cv, cf = hand.closed(hand(pose, trans=trans + torch.tensor([0.01, 0.0, 0.0], device=device)).vertices)
    metrics.solid_intersection_volume(cv[:1], cf, objs[0], resolution=resolution)  # warm-up
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    metrics.solid_intersection_volume(cv, cf, objs, resolution=resolution)
    _sync(device)
    rate = batch / (time.perf_counter() - t0)
    return rate, torch.cuda.max_memory_allocated() / 2**30 if str(device).startswith("cuda") else 0.0


def ablation_batch(samples: int = 32, seed: int = 0) -> tuple[object, dict]:
    """``samples`` disturbed held-out SynthHO grasps (one view each, spread evenly over the test
    split, :class:`~miho.data.synthho.Disturbance` defaults) as a collated batch, and the dataset."""
    from miho.data.synthho import Disturbance, SynthHO, collate

    ds = SynthHO("test", views=1, images=False, disturb=Disturbance(), seed=seed)
    idx = torch.linspace(0, len(ds) - 1, min(samples, len(ds))).round().long().tolist()
    return ds, collate([ds[i] for i in idx])


def _render_share(args) -> tuple[int, float]:
    """Render samples ``start::step`` of a SynthHO (images only); returns (count, seconds)."""
    from miho.data.synthho import SynthHO

    start, step, n, views, size = args
    ds = SynthHO("all", views=views, cache=False, size=size)
    firsts = range(start * views, n, step * views)  # this worker's grasps, all their views
    todo = [ds.index(j) for first in firsts for j in range(first, min(first + views, n))]
    g, v = todo[0]
    ds._image(g, v, ds.grasp_geometry(g), ds.camera(g, v))  # warm-up
    t0 = time.perf_counter()
    for g, v in todo:
        geo = ds.grasp_geometry(g)
        ds._image(g, v, geo, ds.camera(g, v, geo))
    return len(todo), time.perf_counter() - t0


def bench_render(samples: int = 256, workers: int = 2, views: int = 4, size: int = 256) -> tuple[float, float]:
    """Throughput of SynthHO images (no disk cache, the ``views`` views of a grasp in a row):

    * images per second of the renderer alone (camera, appearance, TinyRenderer, masks, depth),
      with ``workers`` processes each rendering its share of the grasps;
    * whole samples per second (geometry, ground-truth CPF, camera, image) through a torch
      DataLoader with ``workers`` worker processes.

    Uses the committed grasp library."""
    import multiprocessing

    from miho.data.synthho import SynthHO, collate

    ds = SynthHO("all", views=views, cache=False, size=size)
    n = min(samples, len(ds))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_render_share, [(w, workers, n, views, size) for w in range(workers)])
    images = sum(c for c, _ in parts) / max(t for _, t in parts)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(n)), batch_size=16, collate_fn=collate,
                                         num_workers=workers)  # fmt: skip
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return images, n / (time.perf_counter() - t0)


def bench_synth(batch: int = 32, iterations: int = 200, device: str = "cpu") -> tuple[float, int]:
    """Seconds for one batch of grasp candidates (start, GeO, filters incl. simulation) on the
    first ``batch`` objects of the library, and how many were accepted."""
    from miho.data import grasps
    from miho.data.objects import object_library

    hand = load_hand(device=device)
    objects, _ = object_library(batch)
    objs = (objects * (batch // len(objects) + 1))[:batch]
    t0 = time.perf_counter()
    out = grasps.synthesize_batch(hand, objs, [grasps.candidate_seed(0, o.hash, 0) for o in objs],
                                  grasps.SynthesisSettings(iterations=iterations))  # fmt: skip
    return time.perf_counter() - t0, int(out["accepted"].sum())


def bench_disturbed(samples: int = 32, iterations: int = 400, resolution: int = 80, device: str = "cpu"):
    """GeO from disturbed held-out SynthHO grasps (:func:`ablation_batch`: random directions,
    the official jitter), driven by the ground-truth CPF, hand-object mode, with E_rpl summed over
    the 50 nearest hand vertices of each object vertex (the official code, the package's default
    before issue 10) and over every pair within t_rpl (paper Eq. 3, the default now). Returns the
    :class:`miho.experiments.Ablation`; its ``stats_markdown`` gives the per-sample fractions."""
    from miho import experiments

    ds, batch = ablation_batch(samples)
    settings = {"E_rpl on the 50 nearest (before)": dict(rpl_neighbours=50), "E_rpl on every pair (after)": {}}
    return experiments.ablation_study(ds.hand.to(device), batch, settings, iterations=iterations, resolution=resolution)


def bench_picr(config: str = "small", batch: int = 8, device: str = "cpu", points: int = 800,
               eval_points: tuple[int, ...] = (1000, 2000), repeats: int = 5, amp: bool = False) -> dict:  # fmt: skip
    """PiCR throughput on random inputs of the real shapes: training (forward of both stacks,
    the losses, backward, an Adam step) with ``points`` object vertices a sample, and prediction
    (the last stack) with each of ``eval_points``; samples/s (medians of ``repeats`` after a
    warm-up; ``predict`` maps vertex count -> rate) and the peak GPU memory (GiB, 0 on the CPU)."""
    from miho.nets.picr import build_picr
    from miho.train.losses import picr_loss

    torch.manual_seed(0)
    net = build_picr(config).to(device)
    S = net.config.image_size
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    K = torch.tensor([[1.5 * S, 0, S / 2], [0, 1.5 * S, S / 2], [0, 0, 1]], device=device).expand(batch, 3, 3)

    def inputs(n):
        image = torch.rand(batch, 3, S, S, device=device)
        verts = torch.randn(batch, n, 3, device=device) * 0.04 + torch.tensor([0.0, 0.0, 0.5], device=device)
        return image, verts

    def timed(fn) -> float:
        times = []
        for i in range(repeats + 1):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
        return batch / statistics.median(times)

    image, verts = inputs(points)
    vc = (torch.rand(batch, points, device=device) < 0.15).float()
    cr = torch.randint(0, 17, (batch, points), device=device)
    ae = torch.rand(batch, points, device=device)

    def step():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = picr_loss(net.train()(image, verts, K), vc, cr, ae)
        opt.zero_grad()
        loss.backward()
        opt.step()

    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    train_rate = timed(step)

    def predictor(n):
        image2, verts2 = inputs(n)

        def predict():
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
                net.predict(image2, verts2, K)

        return predict

    predict_rate = {n: timed(predictor(n)) for n in eval_points}
    peak = torch.cuda.max_memory_allocated() / 2**30 if str(device).startswith("cuda") else 0.0
    params = sum(p.numel() for p in net.parameters())
    return {"train": train_rate, "predict": predict_rate, "peak_gib": peak, "parameters": params}


def bench_picr_loader(batch: int = 8, grasps: int = 32, views: int = 2, size: int = 128, repeats: int = 20) -> float:
    """Samples/s of PiCR's batch assembly (gathering a batch of in-memory samples, the fresh object
    disturbance, the image augmentation), what feeds each training step; on ``grasps`` training
    grasps rendered at ``size``."""
    from miho.train.picr_data import AUGMENT_DRAWS, augment, build_picr_data, disturb_objects

    data = build_picr_data("train", views=views, size=size, grasps=grasps, progress=False)
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        idx = torch.randint(len(data), (batch,), generator=g)
        rot, trans = disturb_objects(data.obj_rot[idx].double(), data.obj_trans[idx].double(), g)
        b = data.batch(idx, rot=rot, trans=trans)
        augment(b["image"], b["K"], torch.rand(batch, AUGMENT_DRAWS, generator=g))
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


#: the fields :func:`bench_picr_geo` can drive GeO with
PICR_GEO_FIELDS = ("heuristic", "paper", "hand_aware", "truth")


def bench_picr_geo(split: str = "test-seen", samples: int = 32, iterations: int = 400, resolution: int = 80,
                   device: str = "cpu", fields: tuple[str, ...] = PICR_GEO_FIELDS):  # fmt: skip
    """GeO (hand-object mode) from the fixed disturbed starts of ``samples`` grasps of ``split`` (one
    view each, spread evenly over the split), driven by each predictor's field (``fields``, of
    :data:`PICR_GEO_FIELDS`: the distance heuristic from the coarse hand, the committed stage-1 paper
    and hand-aware PiCR models (trained on such disturbed objects), each at its card's threshold
    chosen on ``val``, and the true field).
    GeO is deterministic, so a run with some of the fields gives the rows a run with all would.
    Returns the :class:`miho.experiments.Ablation` (its ``stats_markdown``: the fractions of
    samples each lowers)."""
    from miho import cpf, experiments
    from miho.anchors import hand_regions
    from miho.nets.picr import load_picr, picr_card
    from miho.train.picr import heuristic_field, predict_batch
    from miho.train.picr_data import build_picr_data

    unknown = sorted(set(fields) - set(PICR_GEO_FIELDS))
    if unknown or not fields:
        raise ValueError(f"fields must be some of {PICR_GEO_FIELDS}, got {fields!r}")
    hand = load_hand(device=device)
    paper, aware = load_picr(device=device, stage=1), load_picr(device=device, variant="hand_aware", stage=1)
    data = build_picr_data(split, views=1, size=paper.config.image_size, progress=False)
    idx = torch.linspace(0, len(data) - 1, min(samples, len(data))).round().long()
    b = data.batch(idx, device, pose="noisy")
    chosen = {}
    if "heuristic" in fields:
        chosen["the distance heuristic's field"] = (heuristic_field(hand, hand_regions(hand), b), {"t_vc": 0.5})
    for name, model in (("paper", paper), ("hand_aware", aware)):
        if name in fields:
            label = "PiCR's field" if name == "paper" else "hand-aware PiCR's field"
            chosen[label] = (predict_batch(model, b), {"t_vc": picr_card(variant=name, stage=1)["threshold"]})
    if "truth" in fields:
        chosen["the true field"] = cpf.CPF(b["vc"], b["cr"], b["ae"])
    return experiments.field_study(hand, data.batch(idx, device), chosen, iterations=iterations,
                                   resolution=resolution)  # fmt: skip


def bench_pipeline(split: str = "test-seen", batches: tuple[int, ...] = (1, 8, 32), iterations: int = 400,
                   resolution: int = 80, device: str = "cpu", settings=None) -> list[dict]:  # fmt: skip
    """``miho evaluate``'s cost at each batch size: one batch of ``b`` samples (the first ``b``
    grasps of ``split``, one view each) through :func:`miho.evaluation.evaluate_split` with
    ``settings`` (default all) at ``iterations`` GeO iterations, after a warm-up and with the
    images already cached. Returns a row a batch size: ``batch``, ``samples_per_s`` (the whole
    evaluation), and per sample the seconds of each stage of :data:`miho.evaluation.STAGES` that
    ran (HoNet, ObMan*, PiCR, GeO in each mode, the metrics)."""
    import tempfile

    from miho.evaluation import SETTINGS, evaluate_split
    from miho.nets.honet import load_honet
    from miho.nets.picr import load_picr
    from miho.train.picr_data import build_picr_data

    settings = tuple(settings or SETTINGS)
    honet, picr = load_honet(device=device), load_picr(device=device)
    obman = load_honet(device=device, variant="obman") if "obman" in settings else None
    build_picr_data(split, views=1, size=honet.config.image_size, grasps=max(batches), workers=0, progress=False)
    nets = dict(honet=honet, picr=picr, obman=obman, device=device, progress=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        evaluate_split(split, f"{tmp}/warm-up", settings, grasps=1, batch_size=1, iterations=2, resolution=16, **nets)
        for b in batches:
            timings: dict = {}
            start = time.perf_counter()
            evaluate_split(split, f"{tmp}/{b}", settings, grasps=b, batch_size=b, iterations=iterations,
                           resolution=resolution, timings=timings, **nets)  # fmt: skip
            wall = time.perf_counter() - start
            rows.append({"batch": b, "samples_per_s": b / wall, **{k: v / b for k, v in timings.items()}})
    return rows


#: the slice of the hand study that :func:`bench_picr_hand` measures for the tests to re-run
HAND_STUDY_CHECK = {"splits": ["test-seen"], "scales": [2.0], "views": 1, "grasps": 12}


def bench_picr_hand(views: int = 2, device: str = "cpu", progress: bool = True) -> dict:
    """Issue 16's study with the committed stage-1 models (:func:`miho.train.picr.hand_study`): the distance
    heuristic, the paper's PiCR and the hand-aware PiCR on ``test-seen`` and ``test`` at every hand
    disturbance scale, each model at its card's threshold; plus the same on
    :data:`HAND_STUDY_CHECK` (what a test re-measures). Returns the study with its provenance."""
    from miho.nets.picr import load_picr, picr_card
    from miho.train.checkpoints import git_commit
    from miho.train.picr import hand_study

    models = {"PiCR (paper)": load_picr(device=device, stage=1),
              "hand-aware PiCR": load_picr(device=device, variant="hand_aware", stage=1)}  # fmt: skip
    thresholds = {name: picr_card(variant=m.config.variant, stage=1)["threshold"] for name, m in models.items()}
    t0 = time.perf_counter()
    study = hand_study(models, thresholds, views=views, device=device, progress=progress)
    wall = time.perf_counter() - t0
    check = hand_study(models, thresholds, device=device, progress=False, **HAND_STUDY_CHECK)
    return {"command": f"miho bench picr --study hand --views {views}", "commit": git_commit(), "views": views,
            "thresholds": thresholds, "wall_s": round(wall, 1), "study": study, "check": check,
            "check_subset": HAND_STUDY_CHECK}  # fmt: skip
