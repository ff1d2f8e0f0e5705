"""`data=` as a Dataset or DataLoader: a fixed, seeded probe batch drawn once, RNG and loader untouched."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import jacspec
from jacspec._probe_batch import draw_probe_batch
from jacspec.probes import Performance, SpectralNorm


def indexed(n=1000, d=3):
    """x[i] = (i, i, …) and y[i] = i: every drawn pair says which example it is."""
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, d)
    y = torch.arange(n)
    return x, y


def reference_indices(size, n, seed):
    # the documented rule, written out: n distinct indices, uniform without replacement, increasing order
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(size, generator=generator)[:n].tolist())


class RandomTransform(Dataset):
    """A dataset whose items use the global RNG (random noise added, as a data augmentation would)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.01 * torch.randn(self.x.shape[1]), self.y[i]


class Stream(IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y))


class _ListDataset(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def rng_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def assert_same_rng(before, after):
    assert torch.equal(before[0], after[0])
    assert np.array_equal(before[1], after[1])
    assert before[2] == after[2]


def test_dataset_draw_matches_the_documented_rule():
    x, y = indexed()
    bx, by = draw_probe_batch(TensorDataset(x, y), n=256, seed=0)
    expected = reference_indices(1000, 256, 0)
    assert bx.shape == (256, 3) and by.shape == (256,)
    assert by.tolist() == expected  # y[i] = i names the example drawn
    assert torch.equal(bx, x[expected])  # each x stays with its own y
    assert len(set(by.tolist())) == 256  # without replacement
    again = draw_probe_batch(TensorDataset(x, y), n=256, seed=0)
    assert torch.equal(again[0], bx) and torch.equal(again[1], by)
    other = draw_probe_batch(TensorDataset(x, y), n=256, seed=1)
    assert other[1].tolist() == reference_indices(1000, 256, 1) != expected


def test_small_dataset_gives_every_example_in_order():
    x, y = indexed(10)
    bx, by = draw_probe_batch(TensorDataset(x, y), n=256)
    assert by.tolist() == list(range(10)) and torch.equal(bx, x)


def test_iterable_dataset_gives_its_first_examples():
    x, y = indexed(50)
    bx, by = draw_probe_batch(Stream(x, y), n=20)
    assert by.tolist() == list(range(20)) and torch.equal(bx, x[:20])


def test_unlabelled_items_give_y_none():
    x, _ = indexed(30)
    bx, by = draw_probe_batch(_ListDataset([(row, None) for row in x]), n=5)
    assert by is None and bx.shape == (5, 3)


def test_numpy_and_int_items_are_converted():
    items = [(np.full(2, i, dtype=np.float32), i) for i in range(40)]
    bx, by = draw_probe_batch(_ListDataset(items), n=8, seed=3)
    expected = reference_indices(40, 8, 3)
    assert by.tolist() == expected and bx.dtype == torch.float32
    assert torch.equal(bx[:, 0], torch.tensor(expected, dtype=torch.float32))


def test_random_transforms_are_reproducible_and_leave_the_global_rng_alone():
    x, y = indexed(100)
    torch.manual_seed(123)
    np.random.seed(5)
    before = rng_states()
    first = draw_probe_batch(RandomTransform(x, y), n=16)
    assert_same_rng(before, rng_states())
    torch.manual_seed(999)  # another global state: the batch does not depend on it
    second = draw_probe_batch(RandomTransform(x, y), n=16)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    noise = first[0] - x[first[1]]
    assert 0 < float(noise.abs().max()) < 0.1  # the transform did run


def test_dataloader_is_read_through_its_dataset_without_touching_its_iterator():
    x, y = indexed(200)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7))
    reference = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7))
    iterator, ref_iterator = iter(loader), iter(reference)
    assert torch.equal(next(iterator)[1], next(ref_iterator)[1])
    torch.manual_seed(0)
    before = rng_states()
    bx, by = draw_probe_batch(loader, n=64, seed=0)
    assert_same_rng(before, rng_states())
    assert by.tolist() == reference_indices(200, 64, 0)  # the dataset's examples, not the loader's batches
    for _ in range(3):  # the training loop's iterator goes on exactly as without the draw
        assert torch.equal(next(iterator)[1], next(ref_iterator)[1])
    # and a fresh epoch too: the loader's own generator was not advanced
    assert torch.equal(next(iter(loader))[1], next(iter(reference))[1])


def test_custom_collate_fn_is_applied():
    x, y = indexed(60)

    def collate(items):
        xs, ys = zip(*items)
        return 2 * torch.stack(xs), torch.stack(ys)

    bx, by = draw_probe_batch(DataLoader(TensorDataset(x, y), batch_size=4, collate_fn=collate), n=10)
    assert torch.equal(bx, 2 * x[by])
    bad = DataLoader(TensorDataset(x, y), batch_size=4, collate_fn=lambda items: {"x": items})
    with pytest.raises(TypeError, match="collate_fn must return a pair"):
        draw_probe_batch(bad, n=10)


@pytest.mark.parametrize(
    "source, error, match",
    [
        (TensorDataset(torch.zeros(0, 3), torch.zeros(0)), ValueError, "is empty"),
        (Stream([], []), ValueError, "is empty"),
        (TensorDataset(torch.zeros(5, 3)), TypeError, r"must be a pair \(x, y\)"),
        (_ListDataset([torch.zeros(3)] * 4), TypeError, r"must be a pair \(x, y\)"),
        (_ListDataset([("a", 1)] * 4), TypeError, r"item 0\[0\] \(x\) must be a tensor"),
        (_ListDataset([{"input_ids": torch.zeros(3), "labels": 0}] * 4), TypeError, r"mapping with keys \['input_ids'"),
        (_ListDataset([(torch.zeros(i + 1), 0) for i in range(4)]), ValueError, "different shapes"),
        (_ListDataset([(torch.zeros(2), None), (torch.zeros(2), 1)]), ValueError, "y=None"),
    ],
    ids=["empty", "empty-iterable", "single-tensor", "bare-item", "string-x", "dict-item", "ragged", "mixed-y"],
)
def test_bad_datasets_raise_clearly(source, error, match):
    with pytest.raises(error, match=match):
        draw_probe_batch(source, n=8)


def test_bad_options_raise_clearly():
    data = TensorDataset(*indexed(10))
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="probe_examples"):
        jacspec.Monitor(model, [Performance()], data=data, probe_examples=0)
    with pytest.raises(TypeError, match="probe_seed"):
        jacspec.Monitor(model, [Performance()], data=data, probe_seed="zero")
    with pytest.raises(TypeError, match="DataLoader"):
        jacspec.Monitor(model, [Performance()], data=[1, 2, 3])


def test_monitor_takes_a_dataset_a_dataloader_or_a_mapping_of_them():
    torch.manual_seed(0)
    x = torch.randn(300, 3)
    y = torch.randint(0, 2, (300,))
    model = nn.Linear(3, 2)
    expected = reference_indices(300, 100, 4)
    # the reference: Performance measured on the same examples given as tensors
    ref = Performance().measure(model, x[expected], y[expected])
    before = rng_states()
    monitor = jacspec.Monitor(
        model,
        [Performance(), SpectralNorm()],
        data={"train": DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), "all": (x, y)},
        every=1,
        probe_examples=100,
        probe_seed=4,
        progress=False,
    )
    assert_same_rng(before, rng_states())
    assert list(monitor.data) == ["train", "all"]
    assert torch.equal(monitor.data["train"][0], x[expected]) and torch.equal(monitor.data["train"][1], y[expected])
    results = monitor.step(0)
    assert float(results["performance"]["train"]["loss"]) == pytest.approx(float(ref["loss"]), rel=1e-6)
    # the "all" split is the full tensors, as before
    with torch.no_grad():
        loss_all = float(F.cross_entropy(model(x), y))
    assert float(results["performance"]["all"]["loss"]) == pytest.approx(loss_all, rel=1e-5)
    alone = jacspec.Monitor(model, [Performance()], data=TensorDataset(x, y), probe_examples=100, probe_seed=4)
    assert list(alone.data) == ["train"] and torch.equal(alone.data["train"][1], y[expected])


def train(with_monitor, tmp_path):
    """SGD on a shuffling DataLoader; returns the final weights."""
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 2))
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    monitor = None
    if with_monitor:
        monitor = jacspec.Monitor(
            model, [Performance()], data=loader, every=5, path=tmp_path / "run.nc", probe_examples=64, progress=False
        )
        monitor.attach(optimizer)
    for _ in range(2):
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    if monitor is not None:
        monitor.close()
    return [p.detach().clone() for p in model.parameters()]


def test_training_with_a_dataloader_monitor_is_bit_identical(tmp_path):
    with_monitor = train(True, tmp_path)
    without = train(False, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(with_monitor, without))
    tree = jacspec.open_run(tmp_path / "run.nc")
    assert tree["performance"].ds["step"].values.tolist() == [5, 10, 15]  # 16 optimizer steps, every 5
