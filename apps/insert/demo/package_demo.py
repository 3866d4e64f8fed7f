"""Copy an exported LDM and its codec into the app as the embedded demonstration checkpoint, with a
label that says what it is.

    python apps/insert/demo/package_demo.py runs/insert-demo/ldm-export runs/insert-demo/codec \
        --out apps/insert/src/stemforge/insert/checkpoints/demo-audio
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ldm", type=Path)
    parser.add_argument("codec", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--segment-seconds", type=float, default=1.28)
    args = parser.parse_args()
    config = json.loads((args.ldm / "config.json").read_text())
    config["label"] = "the demonstration audio model (tiny, trained minutes on CPU on 16 rendered chorales)"
    config["segment_seconds"] = args.segment_seconds
    config["codec"] = "codec"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", dir=args.out.parent))
    shutil.copy(args.ldm / "model.safetensors", tmp / "model.safetensors")
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copytree(args.codec, tmp / "codec")
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.rename(args.out)
    print(f"demonstration checkpoint written to {args.out}")


if __name__ == "__main__":
    main()
