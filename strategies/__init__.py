"""Evolution strategies: each asks seeds and is told returns; none knows who evaluates.

Importing this package registers every built-in strategy in
:data:`asktell.registry.STRATEGIES`.
"""

from ._base import BaseStrategy
from .openai_es import OpenAIES

__all__ = ["BaseStrategy", "OpenAIES"]
