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


class TransformerNet(nn.Module):
    """nn.TransformerEncoder (batch_first, no dropout) on (n, L=4, d=8), mean-pooled, linear read-out."""

    def __init__(self, d: int = 8, c: int = 3):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.out = nn.Linear(d, c)

    def forward(self, x):
        return self.out(self.encoder(x).mean(1))


class TiedDecoder(nn.Module):
    """Token embeddings, a hidden layer and a decoder whose weight IS the embedding table (weight tying)."""

    def __init__(self, vocab: int = 5, dim: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, dim)
        self.decoder = nn.Linear(dim, vocab)
        self.decoder.weight = self.embedding.weight

    def forward(self, tokens):
        return self.decoder(torch.tanh(self.hidden(self.embedding(tokens).mean(1))))


class ParentReads(nn.Module):
    """The parent's forward reads ``fc.weight`` directly while ``fc`` also runs (two uses of one weight)."""

    def __init__(self, d_in: int = 6, c: int = 3):
        super().__init__()
        self.fc = nn.Linear(d_in, c)
        self.mix = nn.Linear(c, c)

    def forward(self, x):
        h = torch.tanh(self.fc(x))
        return self.mix(h) + torch.tanh(x @ self.fc.weight.T)


class TiedLinears(nn.Module):
    """Two nn.Linear layers sharing one weight Parameter (the first Linear owns it)."""

    def __init__(self, d: int = 3):
        super().__init__()
        self.a = nn.Linear(d, d)
        self.b = nn.Linear(d, d)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class RecurrentNet(nn.Module):
    """nn.LSTM or nn.GRU on (n, L=4, 3) (examples first in x); batch_first either way, last state read out."""

    def __init__(self, cell: type[nn.RNNBase] = nn.LSTM, batch_first: bool = True, c: int = 3):
        super().__init__()
        self.rnn = cell(3, 4, batch_first=batch_first)
        self.batch_first = batch_first
        self.out = nn.Linear(4, c)

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)  # (L, n, d): the batch in dim 1, as the RNN then expects
        states, _ = self.rnn(x)
        return self.out(states[:, -1] if self.batch_first else states[-1])


class ResNetBlock(nn.Module):
    """Conv-BN-ReLU-Conv-BN plus identity, BatchNorm on (non-trivial) running statistics in eval mode."""

    def __init__(self, channels: int = 3, c: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out = nn.Linear(channels, c)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.3, 0.3)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(x + self.bn2(self.conv2(h)))
        return self.out(h.mean((2, 3)))


class HFClassifier(nn.Module):
    """A Hugging Face sequence classifier called on ``inputs_embeds`` (n, L, hidden), returning its logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z):
        return self.model(inputs_embeds=z).logits


def tiny_bert(num_labels: int = 3) -> nn.Module:
    """BertForSequenceClassification from a tiny config (hidden 8, 1 layer, 2 heads), no download."""
    import pytest

    pytest.importorskip("transformers", reason="transformers is a test extra: pip install -e '.[test]'")
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=10,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        max_position_embeddings=6,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config)


def tiny_gpt2(num_labels: int = 3) -> nn.Module:
    """GPT2ForSequenceClassification from a tiny config (hidden 8, 1 layer, 2 heads), no download."""
    import pytest

    pytest.importorskip("transformers", reason="transformers is a test extra: pip install -e '.[test]'")
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(
        vocab_size=10,
        n_embd=8,
        n_layer=1,
        n_head=2,
        n_positions=6,
        num_labels=num_labels,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2ForSequenceClassification(config)


def frozen_mlp() -> nn.Module:
    model = mlp()
    model[0].weight.requires_grad_(False)  # a frozen layer: probes must leave it out (and say so)
    model[2].bias.requires_grad_(False)
    return model


def _conv3d_net(c: int = 3) -> nn.Module:
    model = nn.Sequential(
        nn.Conv3d(1, 2, 2), nn.BatchNorm3d(2), nn.Tanh(), nn.ConvTranspose3d(2, 1, 2), nn.Flatten(), nn.LazyLinear(c)
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.3, 0.3)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def _groupnorm_net(c: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.Tanh(), nn.Flatten(), nn.LazyLinear(c))


def _grouped_conv_net(c: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(4, 4, 3, groups=2),
        nn.Tanh(),
        nn.Conv2d(4, 4, 3, groups=4, padding=1),  # depthwise
        nn.Flatten(),
        nn.LazyLinear(c),
    )


@dataclass(frozen=True)
class ZooCase:
    id: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int], torch.Tensor]  # n -> input batch
    n_classes: int = 3
    float_input: bool = True

    def make(self, n: int = 5, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(seed)
        model = self.build()
        x = self.inputs(n)
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
            with torch.no_grad():
                model(x)  # materialise lazy modules
        model = model.double().eval()
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

# the architectures of issue 11 ("any torch model"): used by tests/test_any_model.py on top of ZOO
EXTENDED_ZOO = [
    ZooCase("transformer_encoder", TransformerNet, lambda n: torch.randn(n, 4, 8)),
    ZooCase("tied_decoder", TiedDecoder, lambda n: torch.randint(0, 5, (n, 3)), n_classes=5, float_input=False),
    ZooCase("parent_reads", ParentReads, lambda n: torch.randn(n, 6)),
    ZooCase("tied_linears", TiedLinears, lambda n: torch.randn(n, 3)),
    ZooCase("lstm_batch_first", lambda: RecurrentNet(nn.LSTM, True), lambda n: torch.randn(n, 4, 3)),
    ZooCase("lstm_seq_first", lambda: RecurrentNet(nn.LSTM, False), lambda n: torch.randn(n, 4, 3)),
    ZooCase("gru_batch_first", lambda: RecurrentNet(nn.GRU, True), lambda n: torch.randn(n, 4, 3)),
    ZooCase("gru_seq_first", lambda: RecurrentNet(nn.GRU, False), lambda n: torch.randn(n, 4, 3)),
    ZooCase(
        "conv1d",
        lambda: nn.Sequential(nn.Conv1d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.LazyLinear(3)),
        lambda n: torch.randn(n, 2, 6),
    ),
    ZooCase("grouped_conv2d", _grouped_conv_net, lambda n: torch.randn(n, 4, 5, 5)),
    ZooCase(
        "conv_transpose2d",
        lambda: nn.Sequential(nn.ConvTranspose2d(2, 3, 3, stride=2), nn.Tanh(), nn.Flatten(), nn.LazyLinear(3)),
        lambda n: torch.randn(n, 2, 3, 3),
    ),
    ZooCase("groupnorm", _groupnorm_net, lambda n: torch.randn(n, 2, 5, 5)),
    ZooCase("conv3d_bn3d_convtranspose3d", _conv3d_net, lambda n: torch.randn(n, 1, 3, 3, 3)),
    ZooCase("resnet_block_bn_eval", ResNetBlock, lambda n: torch.randn(n, 3, 4, 4)),
    ZooCase("frozen", frozen_mlp, lambda n: torch.randn(n, 6)),
    ZooCase("hf_bert", lambda: HFClassifier(tiny_bert()), lambda n: torch.randn(n, 5, 8)),
    ZooCase("hf_gpt2", lambda: HFClassifier(tiny_gpt2()), lambda n: torch.randn(n, 5, 8)),
]
ALL_ZOO = ZOO + EXTENDED_ZOO


def assert_no_hooks(model: nn.Module) -> None:
    """Fail if any module of ``model`` still has a forward or backward hook."""
    for name, module in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            hooks = getattr(module, attr, {})
            assert len(hooks) == 0, f"module {name!r} still has {attr}: {dict(hooks)}"
