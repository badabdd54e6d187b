#!/usr/bin/env bash
# Run ON the GPU machine (carry .whl): one stage of a dream's pipeline per call, each under the
# device's 10-minute limit, each resumable. Usage:
#   [TARGET=doom|boxing] bash tools/device/paper_scale.sh setup|collect|vae|encode|mdnrnn|controller|evaluate|bench
#   bash tools/device/paper_scale.sh build|cmaes   (Doom, each stage sized to a budget: paper_doom.py)
# doom (the default): TakeCover at the paper's sizes; boxing: ALE/Boxing-v5 at its preset.
# Stage times: RUN/timings.json (dreamgym records them), copied and to $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 SDL_VIDEODRIVER=dummy TQDM_DISABLE=1 PYTHONWARNINGS=ignore
DG="python3 -m dreamgym.cli"
out=${OUT:-/tmp/out}
case "${TARGET:-doom}" in
  doom)   RUN=/tmp/runs/doom_paper; GAME=(doom --preset paper); LATENT=LatentDoomTakeCover-v0; EPOCHS=${EPOCHS:-100} ;;
  boxing) RUN=/tmp/runs/boxing; GAME=(--env ale_py:ALE/Boxing-v5 --env-setting max_episode_steps=2000 --preset cpu)
          LATENT=LatentBoxing-v0; EPOCHS=${EPOCHS:-40} ;;
  *)      echo "TARGET must be doom or boxing" >&2; exit 2 ;;
esac
case "$1" in
  setup)      nvidia-smi; python3 -c "import torch, dreamgym, vizdoom; print(torch.__version__, torch.cuda.get_device_name())" ;;
  collect)    $DG collect "${GAME[@]}" --out $RUN --workers 16 ;;
  vae)        $DG train-vae $RUN --resume --device cuda ;;
  encode)     $DG encode $RUN --device cuda ;;
  mdnrnn)     $DG train-mdnrnn $RUN --resume --device cuda --epochs "$EPOCHS" --members "${MEMBERS:-3}" ;;
  controller) $DG train-controller $RUN --resume --device cuda ;;
  evaluate)   $DG export $RUN --to $RUN/model --float16 && $DG evaluate $LATENT --policy $RUN/model \
                --episodes 100 --seed 20000 --workers 16 --device cpu --json $out/eval.json ;;
  build|cmaes) python3 tools/device/paper_doom.py "$1" ;;
  bench)      python3 benchmarks/throughput.py --game doom --device cuda | tee $out/throughput.txt ;;
esac
if [ -f $RUN/timings.json ]; then cp $RUN/timings.json $out/; fi
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv || true
