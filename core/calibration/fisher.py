"""Per-tensor sensitivity from a short calibration pass: the Fisher information of the model's own
next-token distribution, factored per linear into output-gradient² × input².

A small change ΔW of a linear moves its output z by Δz = ΔW·x at every token, and the expected
KL-divergence of the next-token distributions to second order is ½·Δzᵀ F Δz, F the Fisher
information of the model's own predictions with respect to z: E_y[g gᵀ] with g = ∇_z log p(y) and y
drawn from the model (not the text's next token: the KL to the unquantized model is what matters).
Keeping the diagonal of the weights' Fisher (errors of different weights independent), summed over
a chunk's positions s:

    Σ_s KL_s ≈ ½ · Σ_ij E[G_ij²] · ΔW_ij²,   G = ∇_W Σ_s log p(y_s) = Σ_t g_t x_tᵀ

with y drawn anew for each of SAMPLES backward passes per chunk; divided by the tokens, per token.
The whole-chunk gradient matters for the decoder's linears: one ΔW moves every position's output
alike, and a position's output feeds every later position's prediction, so per-token squares
Σ_t g_t² x_t² (which drop those cross terms) underestimated the single-tensor KLD of a test model's
linears 5-80x against its embedding. The output layer's rows only reach their own position's
prediction and its samples are independent, so there the per-token form Σ_t g_tv² x_tj² is exact
in expectation and far less noisy: E[g_v²] = p_v(1 − p_v), a logit's error matters as much as its token
is likely. The token embedding (a lookup): ½ · E‖g‖²/n_embd per unit of error averaged over the
vocabulary. No gradient is kept for the embedding or output weights.

Measured on a trained-from-scratch test model, the weights-only estimate (core/calibration/
sensitivity.py) misranked tensors by up to four orders of magnitude against single-tensor KLD; this
pass is what the types chosen for a target (core/gguf/best_fit.py) rely on when the model can be run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from quantpress.core.jobs import NEVER, CancelToken, Progress, Report, ignore

SENSITIVITY_TOKENS = 1024  # of the built-in calibration text: 2 chunks of 512
N_CTX = 512
SAMPLES = 4  # backward passes (draws of y) per chunk: the chunk gradient's square is one draw's noise


@dataclass(frozen=True)
class LossTerm:
    """Expected loss of an error E: ``scale`` · Σ_ij matrix_ij E_ij² when ``matrix`` is given, else
    ``scale`` · Σ_i rows_i Σ_j columns_j E_ij² (rows None: all 1)."""

    scale: float
    columns: np.ndarray
    rows: np.ndarray | None = None
    matrix: np.ndarray | None = None

    @property
    def row_priority(self) -> np.ndarray | None:
        """How much each output row weighs in this term (None: alike)."""
        if self.matrix is not None:
            return np.asarray(self.matrix.sum(axis=1))
        return self.rows


def fisher_terms(model_dir: str | Path, *, n_tokens: int = SENSITIVITY_TOKENS, device: str = "cpu",
                 report: Report = ignore, cancel: CancelToken = NEVER) -> dict[str, list[LossTerm]]:
    """GGUF tensor name -> loss terms, from ``n_tokens`` of the built-in calibration text."""
    import torch
    from quantpress.core.calibration.collect import calibration_chunks
    from quantpress.core.calibration.layerwise import LayerwiseModel
    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    names = LayerwiseModel(model_dir)  # meta device: only its HF -> GGUF name map is used
    chunks, _ = calibration_chunks(model_dir, None, n_ctx=N_CTX, max_tokens=n_tokens)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, local_files_only=True,
                                                 trust_remote_code=False, use_safetensors=True)
    model = model.to(device)  # type: ignore[arg-type]  # transformers' stubs type .to() for a PreTrainedModel self
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    fisher: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    handles = []

    def pre(_m: Any, args: tuple[Any, ...]) -> None:
        inputs["lm_head"] = args[0].detach().reshape(-1, args[0].shape[-1]).float() ** 2

    def back(_m: Any, _gin: Any, gout: tuple[Any, ...]) -> None:
        g = gout[0].detach().reshape(-1, gout[0].shape[-1]).float()
        f = (g * g).T @ inputs["lm_head"]  # Σ_t g_tv² x_tj²: per position (module docstring)
        fisher["lm_head"] = f if "lm_head" not in fisher else fisher["lm_head"] + f

    decoder = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and name != "lm_head"}
    for m in decoder.values():
        m.weight.requires_grad_(True)
    head = model.get_output_embeddings()
    if head is not None:
        handles += [head.register_forward_pre_hook(pre), head.register_full_backward_hook(back)]
    embed = model.get_input_embeddings()
    embed_g2 = [0.0]

    def embed_out(_m: Any, _args: Any, out: Any) -> Any:
        out = out.detach().requires_grad_(True)  # gradients flow from here, never into the weights
        out.register_hook(lambda g: embed_g2.__setitem__(0, embed_g2[0] + float((g.double() ** 2).sum())))
        return out

    handles.append(embed.register_forward_hook(embed_out))
    gen = torch.Generator().manual_seed(0)
    n_seen = 0
    try:
        for i, row in enumerate(chunks.rows):
            cancel.raise_if_cancelled()
            ids = torch.tensor([row], dtype=torch.long, device=device)
            logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
            probs = logp.detach().exp().cpu()
            for k in range(SAMPLES):
                y = torch.multinomial(probs, 1, generator=gen).to(device)
                (-logp.gather(1, y).sum()).backward(retain_graph=k < SAMPLES - 1)  # type: ignore[no-untyped-call]
                for name, m in decoder.items():
                    if m.weight.grad is None:  # a linear the sampled token's loss does not reach
                        continue
                    g2 = m.weight.grad.float() ** 2
                    fisher[name] = g2 if name not in fisher else fisher[name] + g2
                    m.weight.grad = None
            n_seen += len(row) * SAMPLES
            report(Progress("sensitivity", (i + 1) / len(chunks.rows), f"sensitivity: chunk {i + 1}/{len(chunks.rows)}"))
    finally:
        for h in handles:
            h.remove()
    n = max(1, n_seen)
    terms: dict[str, list[LossTerm]] = {}
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for hf_name, f in fisher.items():
        gguf_name = "output.weight" if hf_name == "lm_head" else names.gguf_name(hf_name + ".weight")
        if gguf_name is None:
            continue
        if gguf_name == "output.weight" and tied:
            gguf_name = "token_embd.weight"
        matrix = (f / n).cpu().numpy()
        terms.setdefault(gguf_name, []).append(LossTerm(0.5, np.ones(matrix.shape[1], np.float32), None, matrix))
    weight = embed.weight
    n_vocab, n_embd = int(weight.shape[0]), int(weight.shape[1])
    terms.setdefault("token_embd.weight", []).append(
        LossTerm(0.5 * embed_g2[0] / n / (n_embd * n_vocab), np.ones(n_embd, np.float32)))
    del model
    return terms
