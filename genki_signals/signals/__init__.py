"""Causal operators over named, time-first streams (the seed's "derived signals").

Import as ``import genki_signals.signals as s`` and build a list or graph of them::

    s.MovingAverage("sample_rate", length=10, name="smooth_sample_rate")

Every public operator is registered in ``OPERATORS`` by type name for ``Operator.from_dict``.
"""

from genki_signals.signals.base import OPERATORS, Operator
from genki_signals.signals.arithmetic import *  # noqa: F401,F403
from genki_signals.signals.calculus import *  # noqa: F401,F403
from genki_signals.signals.filters import *  # noqa: F401,F403
from genki_signals.signals.spectral import *  # noqa: F401,F403
from genki_signals.signals.shape import *  # noqa: F401,F403
from genki_signals.signals.orientation import *  # noqa: F401,F403
from genki_signals.signals.events import *  # noqa: F401,F403
from genki_signals.signals.combine import *  # noqa: F401,F403
from genki_signals.signals.inference import *  # noqa: F401,F403

__all__ = ["OPERATORS", "Operator", *sorted(OPERATORS)]
