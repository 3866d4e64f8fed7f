#!/usr/bin/env bash
# Rebuild stemforge-insert's embedded demonstration audio model: a tiny MSG-LD over the latents of a
# waveform autoencoder (Pasini et al.'s codec), both trained by stemforge-train on JSB chorales
# rendered with distinct General MIDI programs (piano, steel guitar, strings, electric bass). Run from
# the repository root: bash apps/insert/demo/build_demo_audio.sh (CPU; about five hours on two cores).
#
# The codec trains in two stages: the whole autoencoder, then (while the LDM trains on the first
# stage's latents) the decoder alone with the encoder frozen, so the latent space does not move; a
# last decoder-only stage (log-mel term, cosine learning-rate decay) runs after the LDM. A fifth
# stage trains a copy of the decoder on the U-Net's x0-predictions: the pipeline's sample decoder.
# The U-Net then trains two more stages (the mixture dropped from half of the batches) and the sample
# decoder one more, on the last U-Net's predictions.
# The corpus was rendered with tinysoundfont (`hatch run no-deps-extras` installs it; without it
# stemforge-data renders with midirenderer, the same SoundFont through another synthesiser).
set -euo pipefail
R=runs/audio-demo
D=apps/insert/demo
P=soprano=0,alto=25,tenor=48,bass=33
export OMP_NUM_THREADS=1
stemforge-train data render --source jsb --split train --limit 64 --programs $P --out $R/corpus
stemforge-train data render --source jsb --split valid --limit 4 --programs $P --out $R/corpus
stemforge-train data render --source jsb --split test --limit 16 --programs $P --out $R/corpus
stemforge-train fit $D/demo-waveform-ae.yaml "$@"                       # stage 1 (stopped at step 1100)
stemforge-train export $R/codec-ae $R/codec-ae-export
python $D/assemble_codec.py waveform $R/codec-ae-export --latent-freq 4 --corpus $R/corpus --out $R/codec
stemforge-train fit $D/demo-waveform-ae-decoder.yaml &                   # stage 2, beside the LDM
stemforge-train cache $D/demo-ldm.yaml --codec $R/codec --out $R/latents
stemforge-train fit $D/demo-ldm.yaml
wait
stemforge-train export $R/codec-decoder $R/codec-decoder-export
python $D/assemble_codec.py waveform $R/codec-decoder-export --latent-freq 4 --corpus $R/corpus --out $R/codec-final
stemforge-train export $R/ldm $R/ldm-export --dtype float16 --format flat            # run.init_from of the next stage
OMP_NUM_THREADS=2 stemforge-train fit $D/demo-ldm-continued.yaml        # 1200 more steps at lr 3e-4
stemforge-train export $R/ldm-continued $R/ldm-continued-export --dtype float16 --format flat   # package_demo.py reads flat
stemforge-train fit $D/demo-waveform-ae-decoder-mel.yaml                # decoder only, 4000 steps
stemforge-train export $R/codec-mel $R/codec-mel-export
python $D/assemble_codec.py waveform $R/codec-mel-export --latent-freq 4 --corpus $R/corpus --out $R/codec-mel-final
E=apps/insert/src/stemforge/insert/checkpoints/demo-audio
python $D/package_demo.py $R/ldm-continued-export $R/codec-mel-final --out $E
# The sample decoder: the decoder alone again, trained on the packaged U-Net's x0-predictions.
stemforge-train fit $D/demo-waveform-ae-decoder-denoised.yaml --set data.slakh_root=$R/corpus
stemforge-train export $R/codec-denoised $R/codec-denoised-export
python $D/assemble_codec.py waveform $R/codec-denoised-export --latent-freq 4 --corpus $R/corpus --scale-from $E/codec --out $R/codec-denoised-final
python $D/package_demo.py $R/ldm-continued-export $R/codec-mel-final --sample-decoder $R/codec-denoised-final --out $E
# Stages 3 and 4 of the U-Net: the mixture dropped from half of the batches (generate and arrange run
# the unconditional branch), stage 4 on the renders of $R/corpus-tsf-train.
stemforge-train fit $D/demo-ldm-uncond.yaml
stemforge-train export $R/ldm-uncond $R/ldm-uncond-export --format flat --dtype float16
stemforge-train data render --source jsb --split train --limit 64 --programs $P --out $R/corpus-tsf-train
stemforge-train data render --source jsb --split valid --limit 4 --programs $P --out $R/corpus-tsf-train
stemforge-train cache $D/demo-ldm-stage4.yaml --codec $E/codec --out $R/latents-tsf
stemforge-train fit $D/demo-ldm-stage4.yaml --set run.init_from=$R/ldm-uncond-export
stemforge-train export $R/ldm-stage4 $R/ldm-stage4-export --format flat --dtype float16
python $D/package_demo.py $R/ldm-stage4-export $E/codec --out $R/pipe-stage4
# The sample decoder again, from the last one, on the stage-4 U-Net's x0-predictions; the pipeline
# records eta 0 for generate and arrange (apps/insert/EVALUATION.md).
stemforge-train fit $D/demo-waveform-ae-decoder-stage4.yaml --set run.init_from=$E/sample-decoder
stemforge-train export $R/codec-stage4-sd $R/codec-stage4-sd-export
python $D/assemble_codec.py waveform $R/codec-stage4-sd-export --latent-freq 4 --corpus $R/corpus --scale-from $E/codec --out $R/codec-stage4-sd-final
python $D/package_demo.py $R/ldm-stage4-export $E/codec --sample-decoder $R/codec-stage4-sd-final --task-eta generate=0,arrange=0 --out $E
