"""The ``miho`` command.

miho info [--hand anny|mano] [--mano-path PATH]   describe a hand model, its regions and anchors
miho bench hand|geo|recovery|siv|render|synth|...      time a hot path, run an experiment (--help)
                  ...|ablation|disturbed|picr|picr-geo
miho bench ablation [--field predicted|truth] [--start honet|disturbed] [--studies ...] [--batch N] [--out FILE]
                                                      the paper's ablations (Tables 2, 3, 5, 6, Figs. 7, 15)
miho bench picr --study hand [--out FILE]             PiCR variants and the heuristic as the coarse hand worsens
miho bench pipeline [--batches 1,8,32]                  miho evaluate's throughput and each stage's cost a sample
miho synth images [--split train] [--views 4]         render the image cache (DataLoader workers)
miho synth objects [--random-objects 300]            prepare and list the object library
miho synth grasps [--candidates 36] [--seed 0] ...   (re)build the grasp library, resumable
miho train picr [--config small] [--variant paper|hand_aware] [--epochs 10] [--resume] ...
                                                      train PiCR (torchrun for several processes)
miho train picr --init PICR.pt --honet HONET.pt ...   PiCR stage 2: fine-tuned on HoNet's objects
miho export picr [--run-dir runs/picr-small]          commit-ready weights and model card with figures
miho train honet [--config small] [--epochs 10] ...   train HoNet (image -> coarse hand and object)
miho train honet --init HONET.pt --contact-weight W   ObMan*: HoNet fine-tuned with Hasson et al.'s contact losses
miho evaluate [--split test-seen] [--settings ...]    a split through MIHO with the metrics (Table 1)
miho reconstruct --image IMG --K fx,fy,cx,cy --object MESH --out DIR
                                                      MIHO on one image: meshes (OBJ) and an HTML page
miho export honet [--run-dir runs/honet-small]        its weights and model card (MPJPE / MPVPE)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch


def _info(args) -> None:
    from miho import __version__
    from miho.anchors import REGION_NAMES, hand_regions
    from miho.hand import load_hand

    hand = load_hand(args.hand, path=args.mano_path)
    regions = hand_regions(hand)
    print(f"miho {__version__}, torch {torch.__version__}")
    print(hand)
    print(f"palm-side vertices: {int(regions.palm_side.sum())} of {hand.num_vertices}")
    counts = torch.bincount(regions.anchor_region, minlength=len(REGION_NAMES)).tolist()
    print(f"anchors: {sum(counts)}  " + ", ".join(f"{n} {c}" for n, c in zip(REGION_NAMES, counts)))


def _print_study(title: str, study) -> None:
    """A GeO study's title, its metric table and its per-sample fractions (:class:`miho.experiments.Ablation`)."""
    print(title)
    print(study.to_markdown())
    print()
    print(study.stats_markdown())


def _bench(args) -> None:
    from miho.bench import bench_geo, bench_hand, bench_recovery, bench_render, bench_siv, bench_synth

    torch.set_num_threads(args.threads)
    where = f"{args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else
                                f", {torch.get_num_threads()} threads")  # fmt: skip
    if args.what == "hand":
        t = bench_hand(args.batch, args.device, args.repeats)
        print(
            f"hand forward+backward: batch {args.batch}, {where}: "
            f"{t * 1e3:.1f} ms (median of {args.repeats}), {t / args.batch * 1e6:.0f} us per hand"
        )
        return
    if args.what == "siv":
        rate, peak = bench_siv(args.batch, args.device, args.resolution)
        print(f"SIV at {args.resolution}^3: batch {args.batch}, {where}: {rate:.0f} samples/s"
              + (f", peak GPU memory {peak:.2f} GiB" if args.device.startswith("cuda") else ""))  # fmt: skip
        return
    if args.what == "render":
        images, samples = bench_render(args.batch, args.workers)
        print(
            f"SynthHO, {args.batch} samples, 256x256, 4 views per grasp, no cache, {args.workers} processes: "
            f"rendering {images:.0f} images/s; whole samples (geometry, CPF, image) {samples:.0f} samples/s"
        )
        return
    if args.what == "synth":
        t, accepted = bench_synth(args.batch, args.geo_iterations, args.device)
        print(
            f"grasp synthesis, {args.batch} candidates, {args.geo_iterations} GeO iterations, {where}: {t:.1f} s "
            f"({args.batch / t:.2f} candidates/s), {accepted} accepted"
        )
        return
    if args.what == "disturbed":
        from miho.bench import bench_disturbed

        study = bench_disturbed(args.batch, args.geo_iterations, args.resolution, args.device)
        _print_study(f"GeO from {len(study.start)} disturbed held-out SynthHO grasps, ground-truth CPF, hand-object "
                     f"mode, {args.geo_iterations} iterations, {where}", study)  # fmt: skip
        return
    if args.what == "ablation":
        from miho.studies import TITLES, run_ablations, study_runs, study_tables

        out = args.out or f"runs/ablation-{args.field}-{args.start}-{args.split}-{args.batch}.json"
        result = run_ablations(out, args.field, args.start, args.split, args.batch, args.chunk, args.geo_iterations,
                               args.resolution, study_runs(args.studies.split(",")), device=args.device,
                               command=" ".join(["miho", *sys.argv[1:]]), stride=args.stride)  # fmt: skip
        n = len(result["settings"]["samples"])
        print(f"GeO ablations (paper §6.4, Supp D.2) from {args.start} starts driven by the {args.field} field: "
              f"{n} SynthHO {args.split} samples (one view a grasp, spread evenly), hand-object mode, "
              f"{args.geo_iterations} iterations, SIV at {args.resolution}^3, {where}; results in {out}")  # fmt: skip
        for name, table in study_tables(result).items():
            print(f"\n{TITLES[name]}\n\n{table}")
        return
    if args.what == "picr" and args.study == "hand":
        import json

        from miho import files
        from miho.bench import bench_picr_hand
        from miho.train.picr import hand_study_markdown

        result = bench_picr_hand(args.views, args.device)
        if args.out:
            with files.atomic_write(args.out) as tmp:
                Path(tmp).write_text(json.dumps(result, indent=1))
        print(f"PiCR's field as the coarse hand gets worse ({where}; {result['command']}):")
        print(hand_study_markdown(result["study"]))
        return
    if args.what == "picr":
        from miho.bench import bench_picr, bench_picr_loader

        r = bench_picr(args.config, args.batch, args.device, amp=args.amp)
        print(f"PiCR {args.config} ({r['parameters'] / 1e6:.2f} M parameters), batch {args.batch}, {where}"
              f"{', bf16' if args.amp else ''}: training {r['train']:.1f} samples/s (800 vertices a sample), "
              f"prediction {', '.join(f'{v:.1f} samples/s ({n} vertices)' for n, v in r['predict'].items())}"
              + (f", peak GPU memory {r['peak_gib']:.2f} GiB" if args.device.startswith("cuda") else ""))  # fmt: skip
        if not args.device.startswith("cuda"):
            rate = bench_picr_loader(args.batch)
            print(f"PiCR batch assembly (gather, disturbance, augmentation), batch {args.batch}, {where}: "
                  f"{rate:.0f} samples/s")  # fmt: skip
        return
    if args.what == "pipeline":
        from miho.bench import bench_pipeline
        from miho.tables import markdown_table

        batches = tuple(int(b) for b in args.batches.split(","))
        rows = bench_pipeline(args.split, batches, args.geo_iterations, args.resolution, args.device)
        names = {"honet": "HoNet (ms)", "obman": "ObMan* (ms)", "picr": "PiCR (ms)", "miho-hand": "GeO hand (s)",
                 "miho-hand-object": "GeO hand-object (s)", "metrics": "metrics (s)"}  # fmt: skip
        ms = {"honet", "obman", "picr"}
        table = [[r["batch"], f"{r['samples_per_s']:.3g}"] + [f"{r[k] * (1000 if k in ms else 1):.3g}"
                                                              for k in names if k in r] for r in rows]  # fmt: skip
        print(f"miho evaluate on {args.split} (one view a grasp, the first b grasps), {where}, GeO "
              f"{args.geo_iterations} iterations, SIV at {args.resolution}^3; stage times per sample")  # fmt: skip
        print(markdown_table(["batch", "samples/s"] + [v for k, v in names.items() if k in rows[0]], table))
        return
    if args.what == "picr-geo":
        from miho.bench import bench_picr_geo

        study = bench_picr_geo(args.split, args.batch, args.geo_iterations, args.resolution, args.device,
                               tuple(args.fields.split(",")))  # fmt: skip
        _print_study(f"GeO from {len(study.start)} disturbed SynthHO {args.split} samples (one view each), "
                     f"hand-object mode, {args.geo_iterations} iterations, {where}, driven by the fields of: "
                     f"{args.fields}", study)  # fmt: skip
        return
    if args.what == "recovery":
        rec, t = bench_recovery(args.perturbations, args.device, args.geo_iterations)
        n = len(rec.before)
        print(f"recovery of {n} perturbed grasps (10-20 mm), GeO hand mode with the ground-truth CPF, {where}, "
              f"{args.geo_iterations} iterations, {t:.1f} s (GeO + metrics)")  # fmt: skip
        for name, table in (("ground truth", rec.truth), ("perturbed start", rec.before), ("after GeO", rec.after)):
            print(f"\n{name}:\n{table.to_markdown()}")
        ok = rec.improved()
        print(f"\nlower after GeO: HE {int(ok['HE'].sum())}/{n}, PD {int(ok['PD'].sum())}/{n}, "
              f"SIV {int(ok['SIV'].sum())}/{n}; all three: {int(rec.success().sum())}/{n}")  # fmt: skip
        return
    print(f"GeO (CPF, hand-object), hand 1609 vertices, objects 2066 vertices, {where}, {args.iterations} iterations")
    print("| batch | ms / iteration | ms / iteration / sample | 400 iterations (s) | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|")
    for b in (int(x) for x in args.batches.split(",")):
        for loop in (False, True) if args.loop else (False,):
            t, peak = bench_geo(b, args.device, args.iterations, loop=loop, loop_samples=args.loop_samples)
            name = f"{b} (one at a time, {min(b, args.loop_samples)} timed)" if loop else str(b)
            print(f"| {name} | {t * 1e3:.1f} | {t / b * 1e3:.2f} | {400 * t:.1f} | {peak:.2f} |", flush=True)


GRASP_RANDOM_OBJECTS = 60  # the random_urdfs of the committed grasp library


def _synth(args) -> None:
    torch.set_num_threads(args.threads)
    if args.what == "images":
        from tqdm.auto import tqdm

        from miho.data.synthho import SynthHO, collate

        ds = SynthHO(args.split, views=args.views, seed=args.seed)
        loader = torch.utils.data.DataLoader(ds, batch_size=16, collate_fn=collate, num_workers=args.workers or 2)
        for _ in tqdm(loader, desc=f"rendering {args.split}", unit="batch"):
            pass
        print(f"{len(ds)} images of split {args.split!r} cached in {ds.cache_dir}")
        return
    from miho.data.objects import object_library

    count = args.random_objects  # the committed grasp library was made on the first 60 random_urdfs
    if count is None:
        count = 300 if args.what == "objects" else GRASP_RANDOM_OBJECTS
    objects, errors = object_library(count)
    if args.what == "objects":
        print(f"{len(objects)} objects ({sum(o.split == 'test' for o in objects)} held out for test)")
        print("| name | split | vertices | size (cm) | source | hash |\n|---|---|---|---|---|---|")
        for o in objects:
            print(f"| {o.name} | {o.split} | {o.verts.shape[0]} | {100 * o.size:.1f} | {o.source} | {o.hash} |")
        for name, err in errors.items():
            print(f"skipped {name}: {err}")
        return
    from miho.data import grasps
    from miho.hand import load_hand

    hand = load_hand(device=args.device)
    settings = grasps.SynthesisSettings(iterations=args.iterations)
    out = args.out or grasps.DEFAULT_PATH
    lib = grasps.build_library(hand, objects, args.candidates, path=out, seed=args.seed, batch=args.batch,
                               settings=settings, sim_options=dict(workers=args.workers),
                               max_per_object=args.max_per_object)  # fmt: skip
    counts = lib.provenance["counts"]
    print(f"wrote {out}: {len(lib)} grasps on {len(lib.counts())} objects "
          f"(train {len(lib.split('train'))}, test {len(lib.split('test'))})")  # fmt: skip
    print("candidates passing each filter in turn: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _train(args) -> None:
    from miho.train.picr import train_picr
    from miho.train.trainer import TrainSettings

    torch.set_num_threads(args.threads)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
                             step_epochs=args.step_epochs, grad_clip=args.grad_clip, seed=args.seed,
                             steps_per_epoch=args.steps_per_epoch, amp=args.amp, compile=args.compile)  # fmt: skip
    if args.what == "honet":
        from miho.train.honet import train_honet
        from miho.train.losses import HoNetLossWeights

        w, c = args.param_weight, args.contact_weight
        weights = HoNetLossWeights(rot=w, pca_fit=w, shape_fit=w, attraction=c, repulsion=c)
        name = f"obman-{args.config}" if c else f"honet-{args.config}"
        train_honet(args.config, settings, args.run_dir or f"runs/{name}", resume=args.resume,
                    views=args.views, val_views=args.val_views, train_grasps=args.train_grasps,
                    val_grasps=args.val_grasps, augment_images=not args.no_augment, device=args.device,
                    workers=args.workers, weights=weights, init=args.init)  # fmt: skip
        return
    run_dir = args.run_dir or (f"runs/picr-{args.config}" + ("-hand-aware" if args.variant == "hand_aware" else "")
                               + ("-stage2" if args.honet else ""))  # fmt: skip
    train_picr(args.config, settings, run_dir, resume=args.resume,
               views=args.views, val_views=args.val_views, train_grasps=args.train_grasps,
               val_grasps=args.val_grasps, max_points=args.max_points, augment_images=not args.no_augment,
               device=args.device, workers=args.workers, variant=args.variant, init=args.init,
               honet=args.honet)  # fmt: skip


def _export(args) -> None:
    from miho.nets.picr import asset_path
    from miho.train.checkpoints import load_checkpoint
    from miho.train.picr import export_picr

    torch.set_num_threads(args.threads)
    if args.what == "honet":
        from miho.nets import honet
        from miho.train.honet import export_honet

        run_dir = args.run_dir or "runs/honet-small"
        if args.out is None:
            task = load_checkpoint(f"{run_dir}/{args.checkpoint}")["meta"]["task"]
            contact = task["weights"].get("attraction") or task["weights"].get("repulsion")
            args.out = honet.asset_path(task["config"]["name"], "obman" if contact else "honet")
        card = export_honet(run_dir, args.out, checkpoint=args.checkpoint, views=args.views, note=args.note)
        for split, f in card["figures"].items():
            print(f"{split:9s} hand MPJPE {f['hand_mpjpe']:.1f} mm (root-relative {f['hand_mpjpe_rr']:.1f}), "
                  f"MPVPE {f['hand_mpvpe']:.1f} mm; object MPVPE {f['obj_mpvpe']:.1f} mm; "
                  f"{f['samples']} samples")  # fmt: skip
        return
    args.run_dir = args.run_dir or "runs/picr-small"
    if args.out is None:
        config = load_checkpoint(f"{args.run_dir}/{args.checkpoint}")["meta"]["task"]["config"]
        args.out = asset_path(config["name"], "hand_aware" if config.get("hand_aware") else "paper")
    card = export_picr(args.run_dir, args.out, checkpoint=args.checkpoint,
                       views=args.views, note=args.note)  # fmt: skip
    for split, row in card["figures"].items():
        for who in ("picr", "heuristic"):
            f = row[who]
            print(f"{split:9s} {who:9s} P/R/F1 at {f['threshold']}: "
                  f"{f['precision']:.3f}/{f['recall']:.3f}/{f['f1']:.3f}"
                  f"  best F1 {f['best_f1']:.3f} at {f['best_threshold']}  CR {f['cr_accuracy']:.3f}"
                  f"  AE MAE {f['ae_mae']:.3f}")  # fmt: skip


def _reconstruct(args) -> None:
    import json

    from miho.hand import load_hand
    from miho.mesh import Meshes, save_obj
    from miho.nets.honet import load_honet
    from miho.nets.picr import load_picr, picr_card
    from miho.pipeline import load_image, load_mesh, reconstruct, user_object
    from miho.viz.pipeline_figures import reconstruction_figure

    torch.set_num_threads(args.threads)
    try:
        K = [float(x) for x in args.K.split(",")]
    except ValueError:
        K = []
    if len(K) != 4:
        raise SystemExit(f"--K must be fx,fy,cx,cy in pixels, got {args.K!r}")
    fx, fy, cx, cy = K
    image, Kc = load_image(args.image, torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]))
    verts, faces = user_object(*load_mesh(args.object, args.object_scale), name=str(args.object))
    objects = Meshes.from_list([(verts, faces)])
    honet = load_honet(path=args.honet) if args.honet else load_honet()
    picr = load_picr(path=args.picr) if args.picr else load_picr(variant=args.variant)
    hand = load_hand()
    t_vc = args.t_vc
    if t_vc is None and args.picr:
        t_vc = picr_card(path=args.picr).get("threshold")
        if t_vc is None:
            raise SystemExit(f"{args.picr}'s card has no VC threshold: give --t-vc")
    r = reconstruct(image, Kc, objects, mode=args.mode, honet=honet, picr=picr, hand=hand, t_vc=t_vc,
                    iterations=args.iterations, progress=True)  # fmt: skip
    out = Path(args.out)
    n = verts.shape[0]
    save_obj(out / "hand_coarse.obj", r.coarse["hand_verts"][0], hand.faces)
    save_obj(out / "object_coarse.obj", r.objects.verts[0, :n], faces)
    save_obj(out / "hand.obj", r.refined.hand_verts[0], hand.faces)
    save_obj(out / "object.obj", r.refined.obj_verts[0, :n], faces)
    summary = {
        "image": str(args.image), "K_crop": Kc.tolist(), "mode": args.mode, "iterations": args.iterations,
        "skipped": bool(r.refined.skipped[0]), "hand_pose": r.refined.pose[0].tolist(),
        "hand_shape": r.refined.shape[0].tolist(), "hand_trans": r.refined.trans[0].tolist(),
        "coarse_obj_rot": r.coarse["obj_rot"][0].tolist(), "coarse_obj_trans": r.coarse["obj_trans"][0].tolist(),
        "t_vc": t_vc, "units": "metres",
    }  # fmt: skip
    (out / "reconstruction.json").write_text(json.dumps(summary, indent=1))
    fig = reconstruction_figure(image[0], hand.faces, r, title=f"MIHO on {Path(args.image).name}")
    fig.write_html(out / "reconstruction.html", include_plotlyjs=True, full_html=True)
    note = " (GeO skipped it: too little predicted contact)" if summary["skipped"] else ""
    print(f"wrote {out}/hand.obj, object.obj, their coarse versions, reconstruction.json and reconstruction.html{note}")


def _evaluate(args) -> None:
    from miho.evaluation import evaluate_split, summarise
    from miho.nets.honet import load_honet
    from miho.nets.picr import load_picr, picr_card
    from miho.tables import markdown_table

    torch.set_num_threads(args.threads)
    honet = load_honet(path=args.honet) if args.honet else None
    obman = load_honet(path=args.obman) if args.obman else None
    picr = load_picr(path=args.picr) if args.picr else load_picr(variant=args.variant)
    t_vc = args.t_vc
    if t_vc is None:
        t_vc = (picr_card(path=args.picr) if args.picr else picr_card(variant=args.variant)).get("threshold")
        if t_vc is None:
            raise SystemExit(f"{args.picr}'s card has no VC threshold: give --t-vc")
    out = args.out or f"runs/evaluate-{args.split}"
    rows = evaluate_split(args.split, out, settings=args.settings.split(","), views=args.views, grasps=args.grasps,
                          batch_size=args.batch_size, iterations=args.iterations, resolution=args.resolution,
                          simulate=args.simulate, t_vc=t_vc, honet=honet, picr=picr, obman=obman,
                          device=args.device)  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        print(markdown_table(*summarise(rows, args.settings.split(","))))
        print(f"per-sample rows and the summary (Markdown, CSV) in {out}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="miho", description="MIHO: hand-object contact (CPF), batched in PyTorch")
    sub = ap.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="describe a hand model, its subregions and anchors")
    info.add_argument("--hand", default="anny", choices=["anny", "mano"])
    info.add_argument("--mano-path", default=None, help="MANO_RIGHT.pkl or its folder (else $MIHO_MANO_DIR)")
    info.set_defaults(run=_info)
    bench = sub.add_parser("bench", help="time a hot path")
    bench.add_argument(
        "what",
        choices=[
            "hand",
            "geo",
            "recovery",
            "siv",
            "render",
            "synth",
            "ablation",
            "disturbed",
            "picr",
            "picr-geo",
            "pipeline",
        ],
    )
    bench.add_argument("--split", default="test-seen", help="picr-geo, pipeline: the SynthHO split")
    bench.add_argument(
        "--fields", default="heuristic,paper,hand_aware,truth", help="picr-geo: the fields driving GeO, comma separated"
    )
    bench.add_argument("--config", default="small", help="picr: the network configuration")
    bench.add_argument("--amp", action="store_true", help="picr: bf16 autocast")
    bench.add_argument(
        "--study",
        default=None,
        choices=["hand"],
        help="picr: the hand study (heuristic, paper and hand-aware PiCR as the coarse hand worsens)",
    )
    bench.add_argument("--views", type=int, default=2, help="picr --study hand: views a grasp")
    bench.add_argument("--out", default=None, help="picr --study hand, ablation: also write the results (JSON) here")
    bench.add_argument("--field", default="predicted", choices=["predicted", "truth"],
                       help="ablation: the field driving GeO (PiCR's or the ground truth)")  # fmt: skip
    bench.add_argument("--start", default="honet", choices=["honet", "disturbed"],
                       help="ablation: GeO starts from HoNet's estimate or the disturbed grasp")  # fmt: skip
    bench.add_argument("--studies", default="contact,k_rpl,pose,anatomy,twist",
                       help="ablation: the studies, comma separated (contact: Tables 2-3, k_rpl: Table 5, pose: "
                            "Table 6, anatomy: Fig. 7, twist: Fig. 15)")  # fmt: skip
    bench.add_argument("--chunk", type=int, default=8, help="ablation: samples refined together")
    bench.add_argument("--stride", type=int, default=1,
                       help="ablation: every stride-th of the --batch samples (fewer, the same starts)")  # fmt: skip
    bench.add_argument("--batch", type=int, default=256, help="the batch; ablation: samples of the split (0: all)")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    bench.add_argument("--repeats", type=int, default=20)
    bench.add_argument("--batches", default="1,8,32", help="GeO, pipeline: batch sizes, comma separated")
    bench.add_argument("--iterations", type=int, default=20, help="GeO iterations timed")
    bench.add_argument("--loop", action="store_true", help="also time a sample-at-a-time loop")
    bench.add_argument("--loop-samples", type=int, default=16, help="samples the loop times (scaled to the batch)")
    bench.add_argument("--resolution", type=int, default=80, help="SIV voxels per axis")
    bench.add_argument("--perturbations", type=int, default=8, help="recovery: perturbations per grasp (x4 grasps)")
    bench.add_argument("--geo-iterations", type=int, default=400, help="GeO iterations (recovery, synth, pipeline)")
    bench.add_argument("--workers", type=int, default=2, help="render: DataLoader worker processes")
    bench.set_defaults(run=_bench)
    synth = sub.add_parser("synth", help="build the synthetic dataset: object library, grasp library")
    synth.add_argument("what", choices=["objects", "grasps", "images"])
    synth.add_argument(
        "--split", default="train", choices=["train", "val", "test", "test-seen", "all"], help="images: split"
    )
    synth.add_argument("--views", type=int, default=4, help="images: camera views per grasp")
    synth.add_argument("--random-objects", type=int, default=None,
                       help="pybullet random_urdfs to include (default: 300 for objects, 60 for grasps)")  # fmt: skip
    synth.add_argument("--candidates", type=int, default=36, help="grasp candidates per object")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--batch", type=int, default=32, help="candidates optimised together")
    synth.add_argument("--max-per-object", type=int, default=20, help="accepted grasps kept per object")
    synth.add_argument("--iterations", type=int, default=200, help="GeO iterations per candidate")
    synth.add_argument("--device", default="cpu")
    synth.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    synth.add_argument("--workers", type=int, default=None, help="simulation or rendering processes")
    synth.add_argument("--out", default=None, help="grasp library path (default: the package's own)")
    synth.set_defaults(run=_synth)
    tr = sub.add_parser("train", help="train a network (under torchrun: several processes, DDP)")
    tr.add_argument("what", choices=["picr", "honet"])
    tr.add_argument("--config", default="small", help="named configuration (small: 2 CPU cores; paper: GPUs)")
    tr.add_argument(
        "--variant",
        default="paper",
        choices=["paper", "hand_aware"],
        help="paper: image and object (Eq. 8); hand_aware: also the coarse hand (beyond the paper)",
    )
    tr.add_argument("--run-dir", default=None, help="checkpoints and logs (default runs/picr-<config>[-hand-aware])")
    tr.add_argument("--resume", action="store_true", help="continue from <run-dir>/last.pt")
    tr.add_argument("--epochs", type=int, default=10)
    tr.add_argument("--batch-size", type=int, default=8, help="samples a process a step")
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--schedule", default="step", choices=["step", "cosine"])
    tr.add_argument("--step-epochs", type=int, default=100, help="step schedule: halve the rate this often")
    tr.add_argument("--grad-clip", type=float, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--steps-per-epoch", type=int, default=None)
    tr.add_argument("--views", type=int, default=8, help="training views a grasp")
    tr.add_argument("--val-views", type=int, default=2)
    tr.add_argument("--train-grasps", type=int, default=None, help="cap (small runs)")
    tr.add_argument("--val-grasps", type=int, default=None)
    tr.add_argument("--max-points", type=int, default=800, help="object vertices a sample a step")
    tr.add_argument("--no-augment", action="store_true")
    tr.add_argument(
        "--param-weight",
        type=float,
        default=0.0,
        help="honet: weight of the hand-parameter terms (rotation, PCA pose, shape; official: 0)",
    )
    tr.add_argument(
        "--contact-weight",
        type=float,
        default=0.0,
        help="honet: weight of Hasson et al.'s attraction and repulsion (ObMan*; official HoNet: 0)",
    )
    tr.add_argument("--init", default=None, help="weights to start from (fine-tuning), e.g. miho/assets/honet_small.pt")
    tr.add_argument(
        "--honet",
        default=None,
        help="picr stage 2: HoNet weights whose predicted objects (and hand) it trains on, with --init",
    )
    tr.add_argument("--amp", action="store_true", help="bf16 autocast (GPUs)")
    tr.add_argument("--compile", action="store_true", help="torch.compile (GPUs)")
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("--workers", type=int, default=2, help="DataLoader processes building the data")
    tr.set_defaults(run=_train)
    ex = sub.add_parser("export", help="export a trained run's weights (fp16) and write its model card")
    ex.add_argument("what", choices=["picr", "honet"])
    ex.add_argument("--run-dir", default=None, help="default runs/picr-small or runs/honet-small")
    ex.add_argument("--checkpoint", default="best.pt")
    ex.add_argument("--out", default=None, help="weights path (default miho/assets/picr_<config>[_hand_aware].pt)")
    ex.add_argument("--views", type=int, default=2, help="views a grasp of the evaluated splits")
    ex.add_argument("--threads", type=int, default=2)
    ex.add_argument("--note", default="", help="a remark stored in the card (how the run went)")
    ex.set_defaults(run=_export)
    ev = sub.add_parser("evaluate", help="a SynthHO split through MIHO with the metrics (torchrun: sharded)")
    ev.add_argument("--split", default="test-seen", choices=["val", "test-seen", "test"])
    ev.add_argument(
        "--settings",
        default="honet,obman,miho-hand,miho-hand-object,truth",
        help="comma-separated: honet, obman (ObMan*), miho-hand, miho-hand-object, truth",
    )
    ev.add_argument("--out", default=None, help="results folder (default runs/evaluate-<split>); resumes there")
    ev.add_argument("--views", type=int, default=1)
    ev.add_argument("--grasps", type=int, default=None, help="only the split's first grasps (small runs)")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--iterations", type=int, default=400, help="GeO iterations")
    ev.add_argument("--resolution", type=int, default=80, help="SIV voxels per axis")
    ev.add_argument("--simulate", action="store_true", help="add simulation displacement (pybullet)")
    ev.add_argument("--variant", default="paper", choices=["paper", "hand_aware"], help="the committed PiCR to use")
    ev.add_argument("--honet", default=None, help="HoNet weights (default: the committed model)")
    ev.add_argument("--obman", default=None, help="ObMan* weights (default: the committed model)")
    ev.add_argument("--picr", default=None, help="PiCR weights (default: the committed model of --variant)")
    ev.add_argument("--t-vc", type=float, default=None, help="GeO's VC threshold (default: the PiCR card's)")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--threads", type=int, default=2)
    ev.set_defaults(run=_evaluate)
    rc = sub.add_parser("reconstruct", help="MIHO on one image: HoNet, PiCR, GeO; meshes and an HTML page")
    rc.add_argument("--image", required=True, help="RGB image (its central square is used)")
    rc.add_argument("--K", required=True, help="intrinsics of the image, pixels: fx,fy,cx,cy")
    rc.add_argument("--object", required=True, help="the object's closed mesh (OBJ; PLY, STL... with trimesh)")
    rc.add_argument("--object-scale", type=float, default=1.0, help="mesh units to metres (0.001 for mm)")
    rc.add_argument("--out", required=True, help="output folder")
    rc.add_argument("--mode", default="hand-object", choices=["hand", "hand-object"])
    rc.add_argument("--iterations", type=int, default=400, help="GeO iterations")
    rc.add_argument("--variant", default="paper", choices=["paper", "hand_aware"], help="the committed PiCR to use")
    rc.add_argument("--honet", default=None, help="HoNet weights (default: the committed model)")
    rc.add_argument("--picr", default=None, help="PiCR weights (default: the committed model of --variant)")
    rc.add_argument("--t-vc", type=float, default=None, help="GeO's VC threshold (default: the PiCR card's)")
    rc.add_argument("--threads", type=int, default=2)
    rc.set_defaults(run=_reconstruct)
    args = ap.parse_args(argv)
    try:
        args.run(args)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"miho: error: {e}")


if __name__ == "__main__":
    main()
