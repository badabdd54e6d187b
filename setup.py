"""The one build step pyproject.toml cannot say: the wheel carries the shipped world models.

Their single copy in git is the top-level ``pretrained/``; building copies each model
directory's weights, config and model card (not its pictures) into ``dreamgym/pretrained/``
inside the wheel, where :func:`dreamgym.checkpoint.pretrained_root` finds them after a normal
install. An editable install reads the repository's ``pretrained/`` directly.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED_FILES = ("config.json", "*.safetensors", "MODEL_CARD.md")


class BuildPyWithModels(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "pretrained"
        for model in sorted(p for p in source.iterdir() if (p / "config.json").is_file()):
            target = Path(self.build_lib) / "dreamgym" / "pretrained" / model.name
            target.mkdir(parents=True, exist_ok=True)
            for pattern in SHIPPED_FILES:
                for file in sorted(model.glob(pattern)):
                    shutil.copyfile(file, target / file.name)


setup(cmdclass={"build_py": BuildPyWithModels})
