"""The single-head pass (Grad-ECLIP as its authors compute it): the last layer's attention heads are
replaced by the head the method gives (clipcam.methods.kinds.ReplacedHead), which changes the
model from there on, and the gradient is taken at that head's output. The scores returned are the
model's own, from a second, unchanged forward. Every chosen layer gets the same map."""

from __future__ import annotations

import torch

from ..hooks import first, forward_hooks, replaced
from ..methods.kinds import ReplacedHead
from ..targets import target_scores
from .common import PassInput, PassOutput, logits_of, prompt_eye


def single_head_pass(inp: PassInput) -> PassOutput:
    """Logits (K,) of the unchanged model and the method's map (K, rows, cols) for each chosen layer."""
    adapter, swap = inp.adapter, inp.method.compute
    assert isinstance(swap, ReplacedHead)
    (site,) = adapter.attention_sites(adapter.num_layers)
    read: list[torch.Tensor] = []
    leaf: list[torch.Tensor] = []

    def record_read(module, args, output) -> None:
        read.append(first(output).detach())

    def replace(module, args, output):
        q, k, v = (t.float() for t in site.split(read))
        heads = swap.head(q, k, v)[None].to(site.out_weight.dtype).requires_grad_(True)  # (1, T, D)
        leaf.append(heads)
        return replaced(output, torch.nn.functional.linear(heads, site.out_weight, site.out_bias))

    with forward_hooks([*((m, record_read) for m in site.reads), (site.out, replace)]), torch.enable_grad():
        scores = target_scores(logits_of(inp), inp.target)  # (K,) of the modified model
    (grad,) = torch.autograd.grad(scores, leaf[0], grad_outputs=prompt_eye(scores),
                                  is_grads_batched=True)  # (K, 1, T, D)
    q, key, v = (t.float() for t in site.split(read))
    grid = inp.grids[inp.layers[0]]
    maps = swap.maps(grad[:, 0].float(), q, key, v, site.out_weight.float(),
                     None if site.out_bias is None else site.out_bias.float(), grid)
    with torch.no_grad():
        logits = logits_of(inp)  # the model's own scores, unmodified
    return logits.float().cpu().numpy(), [maps for _ in inp.layers]


#: What this module registers in clipcam.passes.PASSES: its kind's name and its pass.
PASS = ("single_head", single_head_pass)
