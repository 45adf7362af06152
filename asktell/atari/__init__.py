"""Atari games (ale-py) with the DeepMind preprocessing, the DeepMind convolutional network
and virtual batch normalisation, as in Salimans et al. 2017.

Importing this package does not import gymnasium or ale_py; they load when a task is built.

* :class:`AtariTask` / :class:`AtariTaskConfig`: the task (``kind = "atari"`` in run files).
* :class:`AtariPolicy`: the batched numpy network with virtual batch normalisation.
* :func:`resolve_env_id`: an ALE id from a game name, with "closest ids" errors.

See ``docs/atari.md``.
"""

from .policy import NETWORKS, AtariPolicy, conv_output_shape, reference_digest
from .options import AtariTaskConfig
from .task import AtariTask, ImageObservationSpec, resolve_env_id

__all__ = [
    "NETWORKS",
    "AtariPolicy",
    "AtariTask",
    "AtariTaskConfig",
    "ImageObservationSpec",
    "conv_output_shape",
    "reference_digest",
    "resolve_env_id",
]
