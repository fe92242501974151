"""Rebuild miho/assets/vhacd.npz: the VHACD convex decompositions of the grasp library's objects.

    python data_scripts/build_vhacd_asset.py [--out PATH] [--workers N] [--recompute]

One decomposition per object and per simulation setting that the package uses: the default
(``SimSettings()``) and the published ObMan protocol (``OBMAN``), each named by
``miho.simulation.mesh_key`` (the mesh and the VHACD settings). Entries already shipped or
cached are reused unless ``--recompute``; VHACD takes a few seconds an object. Run it after
changing an object or a VHACD setting (tests/test_synthho.py checks that the asset matches).
The file is written atomically.
"""

import argparse
import os
import time

from miho.data.grasps import load_library
from miho.data.synthho import library_objects
from miho.simulation import SHIPPED_VHACD, build_vhacd_asset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(SHIPPED_VHACD), help="output .npz (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=None, help="VHACD processes (default: one per core)")
    ap.add_argument("--recompute", action="store_true", help="run VHACD on every object, reusing nothing")
    args = ap.parse_args()
    t0 = time.perf_counter()
    objects = library_objects(load_library())
    meshes = {o.name: (o.verts.double(), o.faces) for o in objects}
    index = build_vhacd_asset(meshes, path=args.out, workers=args.workers, recompute=args.recompute)
    size = os.path.getsize(args.out) / 1024
    print(f"wrote {args.out} ({size:.0f} KiB): {len(index)} decompositions of {len(meshes)} objects "
          f"in {time.perf_counter() - t0:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
