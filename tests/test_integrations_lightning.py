"""jacspec.integrations.lightning.JacspecCallback with a real lightning.Trainer on digits."""

import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch", reason="the lightning extra is not installed")

import jacspec  # noqa: E402
from jacspec.datasets import digits  # noqa: E402
from jacspec.integrations.lightning import JacspecCallback  # noqa: E402
from jacspec.monitor import StopTraining  # noqa: E402
from jacspec.probes import Performance, SpectralNorm  # noqa: E402

DATA = digits()
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # lightning's own use of torch's pytree


class DigitsModule(pl.LightningModule):
    def __init__(self, fail_at=None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.Dropout(0.1), nn.ReLU(), nn.Linear(32, 10))
        self.fail_at = fail_at

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if self.fail_at is not None and self.global_step == self.fail_at:
            raise RuntimeError("boom")
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def train_loader():
    return DataLoader(TensorDataset(*DATA["train"]), batch_size=64, shuffle=True)  # 22 batches an epoch


def fit(callbacks=(), max_steps=30, accumulate=1, fail_at=None, loader=None):
    """A seeded fit; the DataLoader shuffles, so the global RNG at each epoch start matters."""
    pl.seed_everything(0, verbose=False)
    module = DigitsModule(fail_at)
    loader = train_loader() if loader is None else loader
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accumulate_grad_batches=accumulate,
        callbacks=list(callbacks),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, loader)
    return trainer, module


def test_run_file_and_bit_identical_weights(tmp_path):
    path = tmp_path / "run.nc"
    loader = train_loader()  # the training loader is also the probe data: a probe batch is drawn from it
    callback = JacspecCallback(
        [Performance(), SpectralNorm()],
        data={"test": DATA["test"], "train": loader},
        every=5,
        path=path,
        probe_initial=True,
        progress=False,
    )
    trainer, module = fit([callback], loader=loader)
    assert trainer.global_step == 30  # 30 optimizer steps cross one epoch boundary (22 batches an epoch)
    _, plain = fit()
    with_cb = dict(module.named_parameters())
    for name, p in plain.named_parameters():
        assert torch.equal(with_cb[name], p), name

    tree = jacspec.open_run(path)
    assert tree["performance"].ds["step"].values.tolist() == [0, 5, 10, 15, 20, 25, 30]
    assert tree["spectral_norm"].ds["step"].values.tolist() == [0, 5, 10, 15, 20, 25, 30]
    assert set(tree["performance"].ds["split"].values.tolist()) == {"test", "train"}
    # reference: the test loss of the final model, computed directly (eval mode: dropout off)
    module.eval()
    with torch.no_grad():
        loss = float(F.cross_entropy(module(DATA["test"][0]), DATA["test"][1]))
        top = float(torch.linalg.matrix_norm(module.net[0].weight, ord=2))
    recorded = tree["performance"].ds["loss"].sel(step=30, split="test")
    assert float(recorded) == pytest.approx(loss, rel=1e-5)
    # spectral norm by power iteration against the exact largest singular value
    assert float(tree["spectral_norm"].ds["spectral_norm"].sel(step=30).isel(layer=0)) == pytest.approx(top, rel=1e-3)
    assert callback.monitor._closed  # closed at fit end
    assert callback.monitor.data["train"][0].shape == (256, 64)  # probe_examples=256 by default


def test_gradient_accumulation_probes_each_optimizer_step_once(tmp_path):
    callback = JacspecCallback([SpectralNorm()], every=1, path=tmp_path / "run.nc", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", jacspec.monitor.StepOrderWarning)
        trainer, _ = fit([callback], max_steps=6, accumulate=2)
    assert trainer.global_step == 6
    steps = jacspec.open_run(tmp_path / "run.nc")["spectral_norm"].ds["step"].values.tolist()
    assert steps == [1, 2, 3, 4, 5, 6]


def test_stop_training_from_a_monitor_callback_stops_the_trainer(tmp_path):
    def stop_at_ten(step, split, probe, ds):
        if step == 10:
            raise StopTraining

    callback = JacspecCallback([SpectralNorm()], every=5, path=None, callbacks=[stop_at_ten], progress=False)
    trainer, _ = fit([callback], max_steps=30)
    assert trainer.global_step == 10


def test_exception_closes_the_monitor_and_keeps_earlier_steps(tmp_path):
    callback = JacspecCallback([SpectralNorm()], every=2, path=tmp_path / "run.nc", progress=False)
    with pytest.raises(RuntimeError, match="boom"):
        fit([callback], max_steps=30, fail_at=7)
    assert callback.monitor._closed
    steps = jacspec.open_run(tmp_path / "run.nc")["spectral_norm"].ds["step"].values.tolist()
    assert steps == [2, 4, 6]


def test_only_rank_zero_probes(tmp_path):
    callback = JacspecCallback([SpectralNorm()], every=1, path=tmp_path / "run.nc")
    trainer = SimpleNamespace(is_global_zero=False, global_step=0, should_stop=False)
    module = DigitsModule()
    callback.on_fit_start(trainer, module)
    trainer.global_step = 1
    callback.on_train_batch_end(trainer, module, None, None, 0)
    callback.on_fit_end(trainer, module)
    assert callback.monitor is None and not (tmp_path / "run.nc").exists()


def test_bad_options_raise_at_construction():
    with pytest.raises(TypeError, match="Probe instances"):
        JacspecCallback("spectral_norm")
    with pytest.raises(ValueError, match="positive integer"):
        JacspecCallback([SpectralNorm()], every=0)
    with pytest.raises(TypeError, match="`model` is not an option"):
        JacspecCallback([SpectralNorm()], model=nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"\['performance'\] need input data"):
        JacspecCallback([SpectralNorm(), Performance()])
    assert isinstance(JacspecCallback([SpectralNorm()]), pl.Callback)
