"""jacspec.integrations.huggingface.JacspecCallback with a real transformers.Trainer on a tiny BERT (no download)."""

from types import SimpleNamespace

import pytest
import torch
import xarray as xr

transformers = pytest.importorskip("transformers", reason="the huggingface extra is not installed")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (the huggingface extra)")

import jacspec  # noqa: E402
from jacspec.integrations.huggingface import JacspecCallback  # noqa: E402
from jacspec.monitor import StopTraining  # noqa: E402
from jacspec.probes import Probe, SpectralNorm  # noqa: E402

VOCAB, LENGTH = 99, 7


class RandomTokens(torch.utils.data.Dataset):
    """Random token ids with random binary labels (fixed by a private generator)."""

    def __init__(self, n=48, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, LENGTH), generator=generator)
        self.labels = torch.randint(0, 2, (n,), generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class MeanLogit(Probe):
    """A probe that needs input: the mean logit of a Hugging Face classifier (its output's `.logits`)."""

    name = "mean_logit"

    def measure(self, model, x=None, y=None):
        with torch.no_grad():
            logits = model(input_ids=x).logits
        return xr.Dataset({"mean_logit": ((), float(logits.mean()))})


def tiny_bert():
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    transformers.set_seed(0)
    return transformers.BertForSequenceClassification(config)


def train(tmp_path, callbacks=(), max_steps=8, accumulate=1):
    model = tiny_bert()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        report_to=[],
        use_cpu=True,
        max_steps=max_steps,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=accumulate,
        learning_rate=1e-3,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=RandomTokens(), callbacks=list(callbacks))
    trainer.train()
    return trainer, model


def test_run_file_and_bit_identical_weights(tmp_path):
    probe_ids = RandomTokens(16, seed=1).ids
    callback = JacspecCallback(
        [SpectralNorm(), MeanLogit()],
        data={"probe": (probe_ids, None)},
        every=2,
        path=tmp_path / "run.nc",
        probe_initial=True,
        progress=False,
    )
    trainer, model = train(tmp_path, [callback])  # 48 examples / batch 8 = 6 steps an epoch: 8 steps cross it
    assert trainer.state.global_step == 8
    _, plain = train(tmp_path)
    with_cb = dict(model.named_parameters())
    for name, p in plain.named_parameters():
        assert torch.equal(with_cb[name], p), name
    assert model.training == plain.training

    tree = jacspec.open_run(tmp_path / "run.nc")
    assert tree["spectral_norm"].ds["step"].values.tolist() == [0, 2, 4, 6, 8]
    assert tree["mean_logit"].ds["step"].values.tolist() == [0, 2, 4, 6, 8]
    # references at the last step, from the final model: exact largest singular values, and the mean logit
    layers = tree["spectral_norm"].ds["layer"].values.tolist()
    assert "bert.encoder.layer.0.attention.self.query" in layers and "classifier" in layers
    weight = dict(model.named_modules())["classifier"].weight.detach()
    recorded = float(tree["spectral_norm"].ds["spectral_norm"].sel(step=8, layer="classifier"))
    assert recorded == pytest.approx(float(torch.linalg.matrix_norm(weight, ord=2)), rel=1e-3)
    model.eval()
    with torch.no_grad():
        mean = float(model(input_ids=probe_ids).logits.mean())
    assert float(tree["mean_logit"].ds["mean_logit"].sel(step=8, split="probe")) == pytest.approx(mean, rel=1e-5)
    assert callback.monitor._closed  # closed at train end


def test_without_data_and_with_gradient_accumulation(tmp_path):
    callback = JacspecCallback([SpectralNorm()], every=1, path=tmp_path / "run.nc", progress=False)
    trainer, _ = train(tmp_path, [callback], max_steps=3, accumulate=2)
    assert trainer.state.global_step == 3
    assert jacspec.open_run(tmp_path / "run.nc")["spectral_norm"].ds["step"].values.tolist() == [1, 2, 3]


def test_stop_training_from_a_monitor_callback(tmp_path):
    def stop_at_four(step, split, probe, ds):
        if step == 4:
            raise StopTraining

    callback = JacspecCallback([SpectralNorm()], every=2, path=None, callbacks=[stop_at_four], progress=False)
    trainer, _ = train(tmp_path, [callback], max_steps=20)
    assert trainer.state.global_step == 4


def test_only_the_main_process_probes(tmp_path):
    callback = JacspecCallback([SpectralNorm()], every=1, path=tmp_path / "run.nc")
    state = SimpleNamespace(is_world_process_zero=False, global_step=0)
    control = SimpleNamespace(should_training_stop=False)
    callback.on_train_begin(None, state, control, model=tiny_bert())
    state.global_step = 1
    callback.on_step_end(None, state, control)
    callback.on_train_end(None, state, control)
    assert callback.monitor is None and not (tmp_path / "run.nc").exists()
    assert isinstance(callback, transformers.TrainerCallback)
