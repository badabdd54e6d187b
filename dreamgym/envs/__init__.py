"""Gymnasium environments: the dream (:class:`DreamEnv`) and the real game's latent twin."""

from dreamgym.envs.dream import DreamEnv, check_actions
from dreamgym.envs.latent import LatentObservation, make_latent_env
from dreamgym.envs.vector import DreamVectorEnv

__all__ = ["DreamEnv", "DreamVectorEnv", "LatentObservation", "check_actions", "make_latent_env"]
