"""A zoo of small models shared by the probe tests (float64, CPU, seeded).

Each entry is a ``ZooCase`` with a builder for the model and one for an input batch, declared as data
so tests can parametrise over them with readable ids (BackPACK's ``problem`` fixtures).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc2(torch.tanh(self.fc1(x)))


class ResidualNet(nn.Module):
    def __init__(self, d_in: int = 6, width: int = 8, c: int = 3):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.block = ResidualBlock(width)
        self.out = nn.Linear(width, c)

    def forward(self, x):
        return self.out(torch.relu(self.block(self.inp(x))))


class EmbeddingNet(nn.Module):
    """Bag of token embeddings followed by a linear read-out; input: integer tokens (n, L)."""

    def __init__(self, vocab: int = 11, dim: int = 5, c: int = 3):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, c)

    def forward(self, tokens):
        return self.out(torch.tanh(self.embedding(tokens).mean(dim=1)))


def mlp(d_in: int = 6, width: int = 8, c: int = 3, depth: int = 2) -> nn.Module:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.Tanh()]
        d = width
    layers.append(nn.Linear(d, c))
    return nn.Sequential(*layers)


def cnn(c: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4, c),
    )


def batchnorm_mlp(d_in: int = 6, width: int = 8, c: int = 3) -> nn.Module:
    model = nn.Sequential(nn.Linear(d_in, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, c))
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def layernorm_mlp(d_in: int = 6, width: int = 8, c: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, width), nn.LayerNorm(width), nn.GELU(), nn.Linear(width, c))


@dataclass(frozen=True)
class ZooCase:
    id: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int], torch.Tensor]  # n -> input batch
    n_classes: int = 3
    float_input: bool = True

    def make(self, n: int = 5, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(seed)
        model = self.build().double().eval()
        x = self.inputs(n)
        return model, x.double() if x.is_floating_point() else x


ZOO = [
    ZooCase("mlp", mlp, lambda n: torch.randn(n, 6)),
    ZooCase("cnn", cnn, lambda n: torch.randn(n, 1, 8, 8)),
    ZooCase("residual", ResidualNet, lambda n: torch.randn(n, 6)),
    ZooCase("batchnorm_eval", batchnorm_mlp, lambda n: torch.randn(n, 6)),
    ZooCase("layernorm", layernorm_mlp, lambda n: torch.randn(n, 6)),
    ZooCase("embedding", EmbeddingNet, lambda n: torch.randint(0, 11, (n, 4)), float_input=False),
]
FLOAT_ZOO = [case for case in ZOO if case.float_input]


def assert_no_hooks(model: nn.Module) -> None:
    """Fail if any module of ``model`` still has a forward or backward hook."""
    for name, module in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            hooks = getattr(module, attr, {})
            assert len(hooks) == 0, f"module {name!r} still has {attr}: {dict(hooks)}"
