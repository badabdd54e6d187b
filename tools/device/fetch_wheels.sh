#!/usr/bin/env bash
# Run HERE (not on the GPU machine): download, into .whl/, the wheels the GPU machine lacks
# (it has torch, numpy, matplotlib, pillow, safetensors, tqdm, but no game packages and no
# network). The GPU machine's python3 is 3.12. dreamgym itself runs from the working tree
# (PYTHONPATH=.). Only the games' packages (~42 MiB; VizDoom's wheel repacked without
# freedoom1.wad, since TakeCover runs on freedoom2.wad; pygame, which VizDoom's Gymnasium wrapper
# imports): with the tree everything must stay under the 64 MiB a call may carry, and the tree
# with every shipped model is ~47 MB, so move the shipped models a run does not use out of the
# tree while the calls run (docs/DEVELOPMENT.md). ale-py (3 MiB, Boxing's) with ATARI=1.
# Development tooling of this workplace only: nothing in the package depends on it.
set -euo pipefail
cd "$(dirname "$0")/../.."
exclude="$(git rev-parse --git-path info/exclude)"; mkdir -p "$(dirname "$exclude")"
grep -qsx "/.whl/" "$exclude" || echo "/.whl/" >> "$exclude"
rm -rf .whl && mkdir .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d .whl \
  gymnasium==1.4.0 farama-notifications==0.0.6 cloudpickle==3.1.2 vizdoom==1.3.2 pygame==2.6.1 \
  stable-baselines3==2.9.2 cma==4.5.0 ${ATARI:+ale-py==0.12.1}
python3 - <<'PY'
import pathlib, zipfile
wheel = next(pathlib.Path(".whl").glob("vizdoom-*.whl"))
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
    for item in source.infolist():
        if not item.filename.endswith("freedoom1.wad"):
            target.writestr(item, source.read(item.filename))
slim.replace(wheel)
PY
du -sh .whl && ls .whl
