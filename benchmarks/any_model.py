"""Benchmark: probes on a small Hugging Face BERT (from a config, no download), against the torch.func recipe.

Model: ``BertForSequenceClassification`` with hidden size 64, 2 layers, 2 heads, called on
``inputs_embeds`` of 16 tokens (``output=lambda m, z: m(inputs_embeds=z).logits``), n = 32, c = 3,
float32, CPU, eval mode. Compared (median of ``--repeats`` calls after one warm-up):

* ``TangentKernel().measure`` (its defaults) vs the recipe of the PyTorch NTK tutorial:
  ``vmap(jacrev(functional_call))`` for the per-example Jacobians, ``einsum('Naf,Mbf->NaMb')`` per
  parameter, summed, then ``torch.linalg.eigvalsh``;
* ``PointJacobian().measure`` vs ``vmap(jacrev)`` of the output with respect to ``inputs_embeds`` then
  ``torch.linalg.svdvals``.

Every result is checked against the recipe's (max abs difference of the kernel eigenvalues, relative).

It also prints the arithmetic floors, the parts no method can skip: for the kernel, one forward and c
batched backward passes to the parameters (which do not even split the gradients by example) plus the
Gram product ``J Jᵀ`` of the (n·c) × P per-example Jacobian; for the point Jacobian, one forward and c
batched backward passes to the input. ``recipe / floor`` bounds the speed-up any implementation can reach.

Run: ``PYTHONPATH=src python benchmarks/any_model.py`` (about half a minute on 2 cores);
``--n``, ``--hidden``, ``--layers``, ``--tokens`` for other sizes.
"""

from __future__ import annotations

import argparse
import statistics
import time


def _bert(hidden: int, layers: int, tokens: int):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=100,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=max(tokens, 16),
        num_labels=3,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config).eval()


def _median_time(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import torch
    from torch.func import functional_call, jacrev, vmap

    from jacspec.engine.attention import math_attention
    from jacspec.probes import PointJacobian, TangentKernel

    torch.manual_seed(0)
    model = _bert(args.hidden, args.layers, args.tokens)
    z = torch.randn(args.n, args.tokens, args.hidden)

    def output(m, inputs):
        return m(inputs_embeds=inputs).logits

    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    n_params = sum(p.numel() for p in params.values())

    def f_single(p, zi):
        return functional_call(model, p, (), {"inputs_embeds": zi.unsqueeze(0)}).logits.squeeze(0)

    def recipe_kernel():
        with math_attention():
            jac = vmap(jacrev(f_single), (None, 0))(params, z)
        kernel = sum(torch.einsum("Naf,Mbf->NaMb", j.flatten(2), j.flatten(2)) for j in jac.values())
        r = args.n * kernel.shape[1]
        return torch.linalg.eigvalsh(kernel.reshape(r, r)).flip(0)

    tangent_kernel = TangentKernel(output=output)  # one probe, called every time (what a Monitor does)
    point_jacobian = PointJacobian(output=output)

    def ours_kernel():
        return tangent_kernel.measure(model, z)

    def recipe_point():
        def g(zi):
            return output(model, zi.unsqueeze(0)).squeeze(0)

        with math_attention():
            jac = vmap(jacrev(g))(z)
        return torch.linalg.svdvals(jac.reshape(args.n, jac.shape[1], -1))

    def ours_point():
        return point_jacobian.measure(model, z)

    rows = []
    t_recipe, eig_recipe = _median_time(recipe_kernel, args.repeats)
    t_ours, ds = _median_time(ours_kernel, args.repeats)
    uncentered = TangentKernel(output=output, center_features=False).measure(model, z)["eigenvalues"].values
    eig_recipe = eig_recipe.detach()
    err = float(abs(torch.from_numpy(uncentered.copy()).float() - eig_recipe).max() / eig_recipe.abs().max())
    rows.append(("TangentKernel().measure", t_ours, "vmap(jacrev)+einsum+eigvalsh", t_recipe, err))
    t_recipe_p, sv_recipe = _median_time(recipe_point, args.repeats)
    t_ours_p, ds_p = _median_time(ours_point, args.repeats)
    sv_recipe = sv_recipe.detach()
    err_p = float(abs(torch.from_numpy(ds_p["singular_values"].values).float() - sv_recipe).max() / sv_recipe.max())
    rows.append(("PointJacobian().measure", t_ours_p, "vmap(jacrev)+svdvals", t_recipe_p, err_p))

    plist = [p for p in model.parameters() if p.requires_grad]
    eye = torch.eye(3)[:, None, :].expand(3, args.n, 3)

    def floor_backward_params():
        with math_attention():
            f = output(model, z)
            return torch.autograd.grad(f, plist, grad_outputs=eye, is_grads_batched=True, allow_unused=True)

    with math_attention():
        jac = vmap(jacrev(f_single), (None, 0))(params, z)
    jac_flat = torch.cat([j.flatten(2) for j in jac.values()], dim=2).reshape(args.n * 3, -1)

    def floor_gram():
        return jac_flat @ jac_flat.T

    def floor_backward_input():
        with math_attention():
            zg = z.clone().requires_grad_(True)
            return torch.autograd.grad(output(model, zg), zg, grad_outputs=eye, is_grads_batched=True)

    t_bwd, _ = _median_time(floor_backward_params, args.repeats)
    t_gram, _ = _median_time(floor_gram, args.repeats)
    t_bwd_in, _ = _median_time(floor_backward_input, args.repeats)
    floors = [
        (
            "kernel",
            t_bwd + t_gram,
            t_recipe,
            f"forward + c backward to the parameters {t_bwd:.4f} s + J Jᵀ {t_gram:.4f} s",
        ),
        ("point Jacobian", t_bwd_in, t_recipe_p, f"forward + c backward to the input {t_bwd_in:.4f} s"),
    ]

    print(
        f"BERT hidden {args.hidden}, {args.layers} layers, {args.tokens} tokens, {n_params} parameters, "
        f"n = {args.n}, c = 3; TangentKernel ran implementation={ds.attrs['implementation']!r} "
        f"({ds.attrs['engine_method']}); {torch.get_num_threads()} threads"
    )
    print("| jacspec | s | reference | s | speed-up | rel. max diff |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, t, ref, t_ref, e in rows:
        print(f"| {name} | {t:.3f} | {ref} | {t_ref:.3f} | {t_ref / t:.2f}x | {e:.1e} |")
    print()
    print("| floor of | s | made of | recipe s | recipe / floor (best possible speed-up) |")
    print("| --- | --- | --- | --- | --- |")
    for name, t, t_ref, what in floors:
        print(f"| {name} | {t:.4f} | {what} | {t_ref:.4f} | {t_ref / t:.2f}x |")


if __name__ == "__main__":
    main()
