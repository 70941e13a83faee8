#!/bin/bash
# The Dirichlet task brought in as a user's own file: darcy_dir's 896 samples written to a
# plain NPZ (forcing f = 1 as a constant per sample, a(x) as the fields diffusion_xx and
# diffusion_yy, diffusion_xy = 0), imported with `pdefm import`, then the study's Poisson
# checkpoint fine-tuned on 32 examples against training from scratch, 3 seeds, the study's
# budget and rates at N = 32. The import draws its own split, so the numbers are comparable
# to the study's, not equal.
#
#     bash results/darcy-transfer/import_check.sh STUDY_DIR WORK_DIR
set -euo pipefail
study=$(realpath "$1"); mkdir -p "$2"; cd "$2"
python - "$study" <<'PY'
import sys
import h5py
import numpy as np
u, a = [], []
for split in ("train", "val", "test"):
    with h5py.File(f"{sys.argv[1]}/data/darcy_dir/{split}.h5", "r") as f:
        u.append(f["solution"][:]); a.append(f["fields/diffusion_xx"][:])
u, a = np.concatenate(u), np.concatenate(a)
np.savez("darcy-own.npz", source=np.ones(len(u)), solution=u, diffusion_xx=a,
         diffusion_yy=a, diffusion_xy=np.zeros(len(u)), family="darcy-own")
PY
pdefm import darcy-own.npz --inputs diffusion_xx,diffusion_yy,diffusion_xy --x-axis 0 \
    --boundary dirichlet --val-fraction 0.142857 --test-fraction 0.285714 --out data --quiet
checkpoint=$(python -c "from pdefm.api import stage_checkpoint as s; print(s('$study', 'poisson'))")
for seed in 0 1 2; do
  pdefm train data --init "$checkpoint" --n-train 32 --epochs 1200 --lr 0.0003 0.001 0.003 \
      --lr-extend 2 --loss rel_l2 --seed $seed --subset-seed $seed --out runs --quiet
  pdefm train data --model fno-micro --n-train 32 --epochs 1200 --lr 0.001 0.003 0.01 \
      --lr-extend 2 --loss rel_l2 --seed $seed --subset-seed $seed --out runs --quiet
done
