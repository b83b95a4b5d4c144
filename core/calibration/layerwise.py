"""Run a Hugging Face decoder model one decoder layer at a time, with bounded memory.

The model is built on torch's "meta" device (no weights allocated); only the piece being run
(embeddings, one decoder layer, the final norm) is materialized on the compute device from the
safetensors files, then released. Peak memory is therefore about one decoder layer, the embedding
matrix and the calibration hidden states (n_tokens · hidden · 4 bytes), never the whole model.

The keyword arguments each layer receives (attention masks, rotary position embeddings, per-layer
sliding-window masks) are captured by running the model's own forward once with every decoder layer
replaced by a recorder, so each architecture gets exactly what transformers would pass it.
Shared by the imatrix collection (core/calibration) and AWQ (core/awq).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quantpress.core.calibration.experts import fuse_checkpoint_experts
from quantpress.core.errors import InvalidModel, UnsupportedArchitecture
from quantpress.core.gguf.arch import spec_for_hf_class
from quantpress.core.validate import non_finite_weights


def gguf_arch_for(hf_class: str) -> str:
    """llama.cpp architecture name of ``hf_class`` (the converter's table)."""
    return str(spec_for_hf_class(hf_class).gguf_arch)


class _WeightFiles:
    """Name -> safetensors file for a HF folder (single file or sharded with an index)."""

    def __init__(self, folder: Path) -> None:
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            self.files = {k: folder / v for k, v in weight_map.items()}
        elif (folder / "model.safetensors").is_file():
            from safetensors import safe_open

            path = folder / "model.safetensors"
            with safe_open(str(path), framework="pt") as f:
                self.files = {k: path for k in f.keys()}
        else:
            raise InvalidModel(f"{folder}: no model.safetensors or model.safetensors.index.json; "
                               f"calibration needs the model's safetensors weights")
        for path in set(self.files.values()):
            if not path.is_file():
                raise InvalidModel(f"{folder}: shard '{path.name}' named in the index is missing")

    def keys(self) -> list[str]:
        return list(self.files)

    def load(self, names: list[str], dtype: Any, device: str) -> dict[str, Any]:
        from safetensors import safe_open

        out: dict[str, Any] = {}
        by_file: dict[Path, list[str]] = {}
        for n in names:
            by_file.setdefault(self.files[n], []).append(n)
        for path, keys in by_file.items():
            with safe_open(str(path), framework="pt") as f:
                for k in keys:
                    t = f.get_tensor(k)
                    if t.is_floating_point() and not bool(t.isfinite().all()):
                        raise non_finite_weights(path.name, k)
                    out[k] = t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)
        return out


def _supports_sdpa(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        return bool(getattr(MODEL_FOR_CAUSAL_LM_MAPPING[type(config)], "_supports_sdpa", True))
    except KeyError:
        return True  # from_config below names the class it cannot build


class _Recorder:
    """Stands in for a decoder layer during the kwargs-capture pass (identity on hidden states)."""

    def __new__(cls, store: list[dict[str, Any]]) -> Any:
        import torch

        class Recorder(torch.nn.Module):
            def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
                if args:
                    raise UnsupportedArchitecture("decoder layers called with positional extras are not supported")
                store.append(kwargs)
                return hidden_states

        return Recorder()


class LayerwiseModel:
    """A HF causal LM folder whose pieces are loaded on demand (see module docstring)."""

    def __init__(self, model_dir: str | Path, *, device: str = "cpu", dtype: Any = None) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise InvalidModel(f"{self.model_dir}: not a Hugging Face model folder (no config.json)")
        from quantpress.core.validate import check_config_file, check_torch_folder, refuse_custom_code

        refuse_custom_code(self.model_dir)  # before transformers would ask to run the folder's own code
        check_config_file(self.model_dir)  # values transformers' config validators would raise about
        self.device = device
        self.dtype = dtype or torch.float32
        try:
            self.config = AutoConfig.from_pretrained(str(self.model_dir), local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - transformers' validators raise many kinds; all mean a bad config
            raise InvalidModel(f"{self.model_dir}: cannot read config.json ({exc})") from exc
        self.hf_class = (getattr(self.config, "architectures", None) or ["?"])[0]
        self.gguf_arch = gguf_arch_for(self.hf_class)
        check_torch_folder(self.model_dir)  # sound safetensors headers, config values, every layer stored
        # sdpa: no padding, so masks stay None where causal suffices; eager where the class has no
        # sdpa path (gpt-oss's attention sinks): its causal mask is then captured with the other kwargs.
        self.config._attn_implementation = "sdpa" if _supports_sdpa(self.config) else "eager"
        self.weights = _WeightFiles(self.model_dir)
        with torch.device("meta"):
            self.model = AutoModelForCausalLM.from_config(self.config, dtype=self.dtype)  # type: ignore[no-untyped-call]
        self.model.eval()
        self.base = self.model.model
        self.layers = self.base.layers
        self.n_layers = len(self.layers)
        self.layer_prefix = "model.layers"
        self._kwargs_cache: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self._name_map: Any = None

    # -- names --------------------------------------------------------------------------------

    def gguf_name(self, hf_name: str) -> str | None:
        """GGUF tensor name for a HF weight name (gguf-py's TensorNameMap, as the converter)."""
        if self._name_map is None:
            import gguf

            arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[self.gguf_arch]
            self._name_map = gguf.get_tensor_name_map(arch, self.n_layers)
        name: str | None = self._name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        return name

    def linear_names(self, index: int, layer: Any) -> Iterator[tuple[str, Any]]:
        """(HF module name relative to the layer, module) for every nn.Linear in the layer."""
        import torch

        for name, module in layer.named_modules():
            if isinstance(module, torch.nn.Linear):
                yield name, module

    # -- materializing pieces -------------------------------------------------------------------

    def _materialize(self, module: Any, prefix: str) -> Any:
        """Allocate ``module`` on the device, initialise its non-persistent buffers the way
        transformers does (rotary frequencies, embedding scales), then load its weights."""
        module.to_empty(device=self.device)
        for sub in module.modules():  # only buffers need it; random-initialising weights is wasted time
            if getattr(sub, "_non_persistent_buffers_set", None):
                self.model._init_weights(sub)
        keys = [k for k in self.weights.keys() if k.startswith(prefix)]
        state = {k[len(prefix):]: v for k, v in self.weights.load(keys, self.dtype, self.device).items()}
        state = fuse_checkpoint_experts(state, module)  # per-expert checkpoints -> transformers 5's fused experts
        expected = set(module.state_dict())
        missing = expected - set(state)
        if missing:
            raise InvalidModel(f"{self.model_dir}: weights missing for {prefix}: {', '.join(sorted(missing)[:5])}")
        module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True)
        return module

    def load_layer(self, index: int) -> Any:
        """Decoder layer ``index`` with its weights, on the compute device."""
        return self._materialize(self.layers[index], f"{self.layer_prefix}.{index}.")

    def release(self, module: Any) -> None:
        """Give a loaded piece's memory back (it returns to the meta device)."""
        module.to("meta")

    def embed(self, ids: Any) -> Any:
        """Hidden states entering layer 0 for token ids (batch, seq)."""
        import torch

        emb = self._materialize(self.base.embed_tokens, "model.embed_tokens.")
        try:
            with torch.no_grad():
                return emb(ids.to(self.device))
        finally:
            self.release(emb)

    def layer_kwargs(self, batch: int, seq: int) -> list[dict[str, Any]]:
        """Per-layer keyword arguments for a (batch, seq) input, from the model's own forward."""
        key = (batch, seq)
        if key not in self._kwargs_cache:
            if len(self._kwargs_cache) >= 4:  # a few shapes (full batches, the last one, search rows)
                self._kwargs_cache.pop(next(iter(self._kwargs_cache)))
            self._kwargs_cache[key] = self._record_kwargs(batch, seq)
        return self._kwargs_cache[key]

    def _record_kwargs(self, batch: int, seq: int) -> list[dict[str, Any]]:
        import torch

        store: list[dict[str, Any]] = []
        saved_layers, saved_norm, rotary = self.base.layers, self.base.norm, self.base.rotary_emb
        self.base.layers = torch.nn.ModuleList([_Recorder(store) for _ in range(self.n_layers)])
        self.base.norm = torch.nn.Identity()
        rotary.to_empty(device=self.device)
        rotary.apply(self.model._init_weights)
        try:
            with torch.no_grad():
                zeros = torch.zeros(batch, seq, self.config.hidden_size, dtype=self.dtype, device=self.device)
                self.base(inputs_embeds=zeros, use_cache=False)
        finally:
            self.base.layers, self.base.norm = saved_layers, saved_norm
        if len(store) != self.n_layers:
            raise UnsupportedArchitecture(f"{self.hf_class}: could not capture the decoder layers' inputs")
        for kw in store:
            kw.pop("past_key_values", None)
            kw.pop("cache", None)  # the name since transformers 5.25
            kw["use_cache"] = False
        return store


def run_layer(layer: Any, hidden: Any, kwargs: dict[str, Any]) -> Any:
    """One decoder layer's output hidden states (transformers 5 returns a tensor, 4.x a tuple)."""
    out = layer(hidden, **kwargs)
    return out[0] if isinstance(out, tuple) else out
