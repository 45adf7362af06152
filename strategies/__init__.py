"""Evolution strategies: each asks seeds and is told returns; none knows who evaluates.

Importing this package registers every built-in strategy in
:data:`asktell.registry.STRATEGIES`.

| class | registry name | paper |
|---|---|---|
| :class:`OpenAIES` | ``openai_es`` | Salimans et al. 2017 |
| :class:`SNES`, :class:`XNES` | ``snes``, ``xnes`` | Wierstra et al. 2014 |
| :class:`MirroredES` | ``mirrored_es`` | Brockhoff et al. 2010 |
| :class:`PGPE` | ``pgpe`` | Sehnke et al. 2010; ClipUp: Toklu et al. 2020 |
| :class:`ARS` | ``ars`` | Mania et al. 2018 |
| :class:`CMAES` | ``cma_es`` | Hansen, arXiv:1604.00772 |
| :class:`SepCMAES` | ``sep_cma_es`` | Ros & Hansen 2008 |
| :class:`Restarts` | ``restarts`` | IPOP: Auger & Hansen 2005; BIPOP: Hansen 2009 |
"""

from ._base import BaseStrategy, StrategyConfig
from .ars import ARS, ARSConfig
from .cma_es import CMAES, CMAESConfig
from .mirrored_es import MirroredES, MirroredESConfig
from .nes import SNES, XNES, SNESConfig, XNESConfig
from .openai_es import OpenAIES, OpenAIESConfig
from .pgpe import PGPE, PGPEConfig
from .restarts import Restarts, RestartsConfig
from .sep_cma_es import SepCMAES, SepCMAESConfig

__all__ = [
    "ARS",
    "ARSConfig",
    "BaseStrategy",
    "CMAES",
    "CMAESConfig",
    "MirroredES",
    "MirroredESConfig",
    "OpenAIES",
    "OpenAIESConfig",
    "PGPE",
    "PGPEConfig",
    "Restarts",
    "RestartsConfig",
    "SNES",
    "SNESConfig",
    "SepCMAES",
    "SepCMAESConfig",
    "StrategyConfig",
    "XNES",
    "XNESConfig",
]
