#!/usr/bin/env bash
# Rebuild stemforge-insert's embedded demonstration audio model (a tiny MSG-LD on a tiny mel VAE codec)
# from the embedded JSB chorales rendered with the TimGM6mb SoundFont. Run from the repository root:
#   bash apps/insert/demo/build_demo_audio.sh
# CPU only; every step is stemforge-train (render, fit, export, cache) except the codec assembly.
set -euo pipefail
R=runs/insert-demo
D=apps/insert/demo
stemforge-train data render --source jsb --split train --limit 16 --out $R/corpus
stemforge-train data render --source jsb --split valid --limit 1 --out $R/corpus
stemforge-train fit $D/demo-mel-vae.yaml "$@"
stemforge-train fit $D/demo-vocoder.yaml "$@"
stemforge-train export $R/mel-vae $R/mel-vae-export
stemforge-train export $R/vocoder $R/vocoder-export
python $D/assemble_codec.py $R/mel-vae-export $R/vocoder-export --corpus $R/corpus --out $R/codec
stemforge-train cache $D/demo-ldm.yaml --codec $R/codec --out $R/latents
stemforge-train fit $D/demo-ldm.yaml "$@"
stemforge-train export $R/ldm $R/ldm-export
python $D/package_demo.py $R/ldm-export $R/codec --out apps/insert/src/stemforge/insert/checkpoints/demo-audio
