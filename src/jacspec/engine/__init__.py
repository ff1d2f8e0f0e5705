"""The engine under the probes: exact per-example Jacobians for any torch model, and parameter bookkeeping.

* :mod:`jacspec.engine.parameters` — which parameters a probe differentiates (trainable, deduplicated:
  a tied Parameter appears once), the module that owns each one (the ``layer`` coordinate of every
  probe, the root spelled ``"(root)"``), tied Parameters and a record of parameters used and skipped.
* :mod:`jacspec.engine.jacobian` — the exact generic fallback: per-example Jacobians of the model
  output with respect to its parameters through ``torch.func`` (``vmap`` over ``functional_call`` +
  ``jacrev``, chunked), with a loop over examples for modules ``vmap`` cannot batch.
* :mod:`jacspec.engine.usage` — which module's ``forward`` reads each parameter (parameters read by a
  parent module, or by several modules, are routed to the fallback).
"""

from jacspec.engine.jacobian import FunctionalJacobian, per_example_jacobians
from jacspec.engine.parameters import (
    ROOT,
    module_name,
    owner_of,
    parameter_record,
    tied_parameters,
    trainable_parameters,
)
from jacspec.engine.usage import parameter_readers

__all__ = [
    "ROOT",
    "FunctionalJacobian",
    "module_name",
    "owner_of",
    "parameter_readers",
    "parameter_record",
    "per_example_jacobians",
    "tied_parameters",
    "trainable_parameters",
]
