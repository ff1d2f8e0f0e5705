"""Integrations with training frameworks and loggers, each an optional extra imported only when used.

- :mod:`jacspec.integrations.lightning`: ``JacspecCallback``, a ``lightning.pytorch.Callback``
  (``pip install "jacspec[lightning]"``);
- :mod:`jacspec.integrations.huggingface`: ``JacspecCallback``, a ``transformers.TrainerCallback``
  (``pip install "jacspec[huggingface]"``);
- :mod:`jacspec.integrations.tensorboard`: ``scalars(writer)``, a monitor callback writing TensorBoard
  scalars (``pip install "jacspec[tensorboard]"``);
- :mod:`jacspec.integrations.wandb`: ``scalars(run)``, a monitor callback calling ``run.log``
  (``pip install "jacspec[wandb]"``).

``import jacspec`` (and ``import jacspec.integrations``) never imports a framework; each submodule imports
its own when it is imported, and raises an ``ImportError`` naming the extra to install when it is missing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

_SUBMODULES = ("lightning", "huggingface", "tensorboard", "wandb")


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise an ``ImportError`` that names the jacspec extra providing it.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"lightning.pytorch"``.
    extra : str
        The jacspec extra that installs it, e.g. ``"lightning"``.
    what : str
        What needs it, for the message, e.g. ``"jacspec.integrations.lightning"``.

    Returns
    -------
    module
        The imported module.

    Examples
    --------
    >>> require("json", "none", "this example").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{what} needs the `{module.split('.')[0]}` package, which could not be imported ({err}). "
            f'Install it with: pip install "jacspec[{extra}]"'
        ) from err


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(_SUBMODULES))
