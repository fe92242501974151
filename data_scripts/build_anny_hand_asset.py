"""Rebuild miho/assets/anny_hand_right.npz from the installed ``anny`` package.

    python data_scripts/build_anny_hand_asset.py [--out PATH]

The first run compiles anny's warp kernels (about a minute). The file is written atomically.
"""

import argparse
import os
import tempfile

import numpy as np

from miho.hand.anny_asset import ASSET_PATH, extract_anny_hand, make_anny_right_hand


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ASSET_PATH), help="output .npz (default: %(default)s)")
    args = ap.parse_args()
    import anny

    print(f"building the Anny right hand with anny {anny.__version__} ...", flush=True)
    arrays = extract_anny_hand(make_anny_right_hand())
    arrays = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    arrays["anny_version"] = np.array(anny.__version__)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=os.path.dirname(os.path.abspath(args.out)))
    os.close(fd)
    np.savez_compressed(tmp, **arrays)
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    size = os.path.getsize(args.out) / 1024
    print(f"wrote {args.out} ({size:.0f} KiB): V={len(arrays['template'])}, F={len(arrays['faces'])}")


if __name__ == "__main__":
    main()
