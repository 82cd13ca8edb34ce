"""Does a job need a GPU, which one, and what will it cost: ``inputs`` (the job and its constraints, with units
and provenance), ``candidates`` (own devices, GPUs to buy, instances to rent, each figure with its source),
``cost`` (the arithmetic), ``verdict`` (the one judge of "meets the deadline" and "affordable") and
``advice`` (inputs -> candidates -> verdict -> ``results.Advice``)."""

from . import cost
from .verdict import decide

__all__ = ["cost", "decide"]
