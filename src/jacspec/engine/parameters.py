"""Which parameters a probe differentiates, which module owns each one, and which are tied.

One meaning of ``layer`` in every probe: the name (from ``model.named_modules()``) of the module that
owns the parameter directly, the root module spelled ``"(root)"``. A Parameter object registered under
several names (weight tying) is counted once, under the first name ``named_parameters()`` gives it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from torch import nn

__all__ = ["ROOT", "module_name", "owner_of", "parameter_record", "tied_parameters", "trainable_parameters"]

ROOT = "(root)"


def module_name(name: str) -> str:
    """The ``layer`` spelling of a ``named_modules()`` name: ``""`` (the root) becomes ``"(root)"``.

    Examples
    --------
    >>> module_name(""), module_name("encoder.0")
    ('(root)', 'encoder.0')
    """
    return name or ROOT


def owner_of(parameter_name: str) -> str:
    """The module owning a parameter, from its ``named_parameters()`` name (``"(root)"`` for the root).

    Examples
    --------
    >>> owner_of("encoder.0.weight"), owner_of("scale")
    ('encoder.0', '(root)')
    """
    return parameter_name.rsplit(".", 1)[0] if "." in parameter_name else ROOT


def tied_parameters(model: nn.Module) -> dict[str, list[str]]:
    """Parameters registered under more than one name: ``{canonical name: [every name]}``.

    The canonical name is the one ``named_parameters()`` (which removes duplicates) reports.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    >>> b.weight = a.weight
    >>> tied_parameters(torch.nn.Sequential(a, b))
    {'0.weight': ['0.weight', '1.weight']}
    """
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return {group[0]: group for group in names.values() if len(group) > 1}


def trainable_parameters(model: nn.Module, layers: Sequence[str] | None = None) -> dict[str, nn.Parameter]:
    """The parameters with ``requires_grad``, once each, by ``named_parameters()`` name.

    Parameters
    ----------
    model : nn.Module
        The network.
    layers : sequence of str, optional
        Keep only the parameters owned by these modules (``named_modules()`` names, ``"(root)"``).

    Returns
    -------
    dict of str to nn.Parameter
        In ``named_parameters()`` order; a tied Parameter appears once.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    >>> model[0].bias.requires_grad_(False)  # doctest: +ELLIPSIS
    Parameter containing:
    ...
    >>> list(trainable_parameters(model))
    ['0.weight', '1.weight', '1.bias']
    """
    found = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if layers is not None:
        keep = {layers} if isinstance(layers, str) else set(layers)
        found = {name: p for name, p in found.items() if owner_of(name) in keep}
    return found


def parameter_record(model: nn.Module, used: Sequence[str], reasons: dict[str, str] | None = None) -> dict[str, str]:
    """Dataset attributes recording which parameters a probe used and which it skipped, and why.

    Parameters
    ----------
    model : nn.Module
        The network measured.
    used : sequence of str
        ``named_parameters()`` names of the parameters the result covers.
    reasons : dict of str to str, optional
        Why some parameters were skipped (``{name: reason}``); frozen parameters (``requires_grad=False``)
        and those not in ``used`` without a reason are recorded as ``"frozen"`` or ``"not used"``.

    Returns
    -------
    dict of str to str
        ``parameters_used`` (a JSON list of names) and ``parameters_skipped`` (a JSON object
        ``{name: reason}``): netCDF-safe strings.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> model.bias.requires_grad_(False)  # doctest: +ELLIPSIS
    Parameter containing:
    ...
    >>> parameter_record(model, ["weight"])
    {'parameters_used': '["weight"]', 'parameters_skipped': '{"bias": "frozen"}'}
    """
    reasons = dict(reasons or {})
    used_set = set(used)
    skipped: dict[str, str] = {}
    for name, p in model.named_parameters():
        if name in used_set:
            continue
        skipped[name] = reasons.get(name) or ("frozen" if not p.requires_grad else "not used")
    return {"parameters_used": json.dumps(list(used)), "parameters_skipped": json.dumps(skipped)}
