"""Tokenizer metadata for GGUF: SentencePiece ('llama') and byte-level BPE ('gpt2') vocabularies,
special token ids, add_bos/add_eos and the chat template, read from a Hugging Face folder.

Reads files only (tokenizer.model, tokenizer.json, tokenizer_config.json, config.json): no
transformers, so it works on a Hub folder that has no weights. The BPE pre-tokenizer name
(``tokenizer.ggml.pre``) is found the way llama.cpp does it (sha256 of the token ids of a fixed
check text), and, for tokenizers llama.cpp has not catalogued, from the pre-tokenizer's structure
in tokenizer.json (its split regex), which llama.cpp's converter would reject.
"""

from __future__ import annotations

import json
import re
import threading
from hashlib import sha256
from pathlib import Path
from typing import Any

from gguf.constants import Keys, TokenType
from quantpress.core.errors import InvalidModel
from quantpress.core.gguf.arch import KV, ArchSpec, Config

# Token types (llama.h llama_token_type), as plain ints for the INT32 array
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = (int(t) for t in (
    TokenType.NORMAL, TokenType.UNKNOWN, TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.UNUSED, TokenType.BYTE))

CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you "
    "sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

# sha256(str(token ids of CHECK_TEXT)) -> tokenizer.ggml.pre (conversion/base.py get_vocab_base_pre).
KNOWN_HASHES: dict[str, str] = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Meta-Llama-3-8B
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM/SmolLM2
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5/2/2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",  # openai gpt2
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral Nemo
    "fcace8b9cac38ce847670c970cd5892031a753a1ef381abd1d9af00f713da085": "phi-2",
    "ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e": "gpt-4o",  # Phi-4 mini
    "d353350c764d8c3b39c763113960e4fb4919bea5fbf208a0e3b22e8469dc7406": "llama4",  # Llama-4-Scout-17B-16E-Instruct
}

# The split regexes of known pre-tokenizers (as in tokenizer.json) -> llama.cpp pre name.
_LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
KNOWN_STRUCTURES: dict[str, str] = {
    f"Split:{_LLAMA3_RE}|ByteLevel": "llama-bpe",
    f"Split:{_QWEN2_RE}|ByteLevel": "qwen2",
    "Digits:individual|ByteLevel:regex": "smollm",
    "ByteLevel:regex": "gpt-2",
}

_SPECIAL_KEYS = {  # SpecialVocab type -> GGUF key suffix
    "bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "sep": "seperator_token_id",
    "pad": "padding_token_id", "cls": "cls_token_id", "mask": "mask_token_id", "eot": "eot_token_id",
    "eom": "eom_token_id",
}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidModel(f"{path}: cannot be read as JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def looks_special(token: str) -> bool:
    """Added tokens some models forget to mark special (conversion/base.py does_token_look_special)."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<｜") and token.endswith("｜>"))
            or (token.startswith("<unused") and token.endswith(">")))


# ---------------------------------------------------------------------------------- SentencePiece


def _spm_vocab(folder: Path, vocab_size: int | None) -> tuple[list[str], list[float], list[int]]:
    """tokens, scores, types (conversion/base.py _create_vocab_sentencepiece)."""
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(folder / "tokenizer.model"))
    except (OSError, RuntimeError) as exc:
        raise InvalidModel(f"{folder / 'tokenizer.model'}: not a SentencePiece model ({exc})") from None
    n = vocab_size or sp.vocab_size()
    tokens = [f"[PAD{i}]" for i in range(n)]
    scores, types = [-10000.0] * n, [UNUSED] * n
    for i in range(min(n, sp.vocab_size())):
        tokens[i], scores[i] = sp.IdToPiece(i), float(sp.GetScore(i))
        types[i] = (UNKNOWN if sp.IsUnknown(i) else CONTROL if sp.IsControl(i) else UNUSED if sp.IsUnused(i)
                    else BYTE if sp.IsByte(i) else NORMAL)
    for text, i in _read_json(folder / "added_tokens.json").items():
        if i < n:
            tokens[i], scores[i], types[i] = text, -1000.0, USER_DEFINED
    decoder = _read_json(folder / "tokenizer_config.json").get("added_tokens_decoder", {})
    for key, data in decoder.items():
        i, text = int(key), data["content"]
        if i >= n:
            continue
        if data.get("special") or looks_special(text):
            types[i] = CONTROL
        else:
            text, types[i] = text.replace("\u2581", " "), USER_DEFINED
        tokens[i], scores[i] = text, -1000.0
    return tokens, scores, types


# ---------------------------------------------------------------------------------- BPE


def _pre_structure(pre: dict[str, Any] | None) -> str:
    if not pre:
        return ""
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    out = []
    for p in parts:
        kind = p.get("type", "")
        if kind == "Split":
            pattern = p.get("pattern", {})
            out.append(f"Split:{pattern.get('Regex', pattern.get('String', ''))}")
        elif kind == "Digits":
            out.append("Digits:individual" if p.get("individual_digits") else "Digits")
        elif kind == "ByteLevel":
            out.append("ByteLevel:regex" if p.get("use_regex", True) else "ByteLevel")
        else:
            out.append(kind)
    return "|".join(out)


def bpe_pre_name(folder: Path) -> str:
    """tokenizer.ggml.pre for a tokenizer.json BPE vocabulary (hash first, then structure)."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    try:
        ids = Tokenizer.from_file(str(path)).encode(CHECK_TEXT).ids
    except Exception as exc:  # tokenizers raises plain Exception subclasses on bad files
        raise InvalidModel(f"{path}: cannot be loaded by the tokenizers library ({exc})") from None
    digest = sha256(str(ids).encode()).hexdigest()
    if digest in KNOWN_HASHES:
        return KNOWN_HASHES[digest]
    structure = _pre_structure(_read_json(path).get("pre_tokenizer"))
    if structure in KNOWN_STRUCTURES:
        return KNOWN_STRUCTURES[structure]
    raise InvalidModel(
        f"{path}: the BPE pre-tokenizer is not one llama.cpp knows (hash {digest[:16]}…, "
        f"structure {structure or 'none'}); the GGUF would tokenize text differently from the original")


def _bpe_vocab(folder: Path, vocab_size: int | None) -> tuple[list[str], list[int]]:
    """tokens and types from tokenizer.json (conversion/base.py get_vocab_base)."""
    tj = _read_json(folder / "tokenizer.json")
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        raise InvalidModel(f"{folder / 'tokenizer.json'}: a {model.get('type')} tokenizer, expected BPE")
    vocab: dict[int, str] = {i: t for t, i in model.get("vocab", {}).items()}
    added = {a["id"]: a for a in tj.get("added_tokens", [])}
    for i, a in added.items():
        vocab[i] = a["content"]
    n = vocab_size or (max(vocab) + 1)
    if max(vocab) >= n:
        raise InvalidModel(f"{folder}: tokenizer has ids up to {max(vocab)} but config vocab_size is {n}")
    tokens, types = [], []
    for i in range(n):
        if i not in vocab:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in added:
            special = added[i].get("special") or looks_special(vocab[i])
            tokens.append(vocab[i] if special else vocab[i].replace("\u2581", " "))
            types.append(CONTROL if special else USER_DEFINED)
        else:
            tokens.append(vocab[i])
            types.append(NORMAL)
    return tokens, types


# ---------------------------------------------------------------------------------- Gemma 4

# Tokens Gemma 4's converter types USER_DEFINED so they are always rendered and the chat parser can
# read them (conversion/gemma.py Gemma4Model.set_vocab).
GEMMA4_VISIBLE = frozenset({"<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
                            "<tool_response|>", '<|"|>'})
_NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# transformers' GemmaTokenizer defaults for named special tokens tokenizer_config.json leaves out.
_GEMMA_DEFAULTS = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>",
                   "mask_token": "<mask>"}
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _special_texts(tok_cfg: dict[str, Any]) -> set[str]:
    """The texts transformers counts as special (all_special_tokens): the named ones, GemmaTokenizer's
    defaults for those not named, and the extra/additional special token lists."""
    named = {k: tok_cfg.get(k, _GEMMA_DEFAULTS.get(k)) for k in _NAMED_SPECIALS}
    extra = [*(tok_cfg.get("extra_special_tokens") or []), *(tok_cfg.get("additional_special_tokens") or [])]
    texts = [*named.values(), *extra]
    return {str(t["content"] if isinstance(t, dict) else t) for t in texts if t}


def _gemma4_vocab(folder: Path) -> tuple[list[str], list[float], list[int]]:
    """tokens, scores, types of a Gemma 4 tokenizer.json (gguf-py LlamaHfVocab, as Gemma4Model uses it):
    the BPE vocabulary then added tokens past it, every score -1000, byte tokens BYTE, special ones
    CONTROL, GEMMA4_VISIBLE and other added tokens USER_DEFINED."""
    path = folder / "tokenizer.json"
    tj = _read_json(path)
    model = tj.get("model", {})
    if model.get("type") != "BPE" or not model.get("byte_fallback") or tj.get("decoder", {}).get("type") != "Sequence":
        raise InvalidModel(f"{path}: not a Gemma 4 tokenizer (expected BPE with byte fallback and a Sequence "
                           "decoder); copy tokenizer.json from the original model")
    vocab: dict[int, str] = {int(i): t for t, i in model.get("vocab", {}).items()}
    n_base = len(vocab)
    added = {int(a["id"]): str(a["content"]) for a in tj.get("added_tokens", [])}
    specials = _special_texts(_read_json(folder / "tokenizer_config.json"))
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_base):
        text = added.get(i, vocab.get(i, f"[PAD{i}]"))
        tokens.append(text)
        types.append(USER_DEFINED if text in GEMMA4_VISIBLE else BYTE if _BYTE_TOKEN.fullmatch(text)
                     else CONTROL if text in specials else NORMAL)
    for i in sorted(i for i in added if i >= n_base):
        text = added[i]
        if i != len(tokens):
            raise InvalidModel(f"{path}: added token '{text}' has id {i}, but the ids before it end at {len(tokens) - 1}")
        tokens.append(text)
        types.append(CONTROL if text in specials and text not in GEMMA4_VISIBLE else USER_DEFINED)
    return tokens, [-1000.0] * len(tokens), types


def _gemma4_kv(folder: Path) -> list[KV]:
    """Gemma 4's tokenizer metadata: model 'gemma4' (llama.cpp's SentencePiece-style BPE: no
    tokenizer.ggml.pre), merges, no space prefix, BOS always added (conversion/gemma.py)."""
    tokens, scores, types = _gemma4_vocab(folder)
    return [(Keys.Tokenizer.MODEL, "gemma4", "STRING"), (Keys.Tokenizer.LIST, tokens, "ARRAY[STRING]"),
            (Keys.Tokenizer.SCORES, scores, "ARRAY[FLOAT32]"), (Keys.Tokenizer.TOKEN_TYPE, types, "ARRAY[INT32]"),
            *_special_kv(folder, len(tokens), load_merges=True),
            (Keys.Tokenizer.ADD_PREFIX, False, "BOOL"), (Keys.Tokenizer.ADD_BOS, True, "BOOL")]


# Tokenizer models a family fixes (ArchSpec.tokenizer_model) -> the reader of its files.
FAMILY_VOCABS = {"gemma4": _gemma4_kv}


# ---------------------------------------------------------------------------------- specials


def _special_kv(folder: Path, n_vocab: int, load_merges: bool) -> list[KV]:
    from gguf.vocab import SpecialVocab

    sv = SpecialVocab(folder, load_merges=load_merges, n_vocab=n_vocab)
    out: list[KV] = []
    if load_merges and sv.merges:
        merges = [m if isinstance(m, str) else " ".join(m) for m in sv.merges]
        out.append((Keys.Tokenizer.MERGES, merges, "ARRAY[STRING]"))
    for typ, tid in sv.special_token_ids.items():
        if typ in _SPECIAL_KEYS:
            out.append((f"tokenizer.ggml.{_SPECIAL_KEYS[typ]}", int(tid), "UINT32"))
    for typ, flag in sv.add_special_token.items():
        out.append((f"tokenizer.ggml.add_{typ}_token", bool(flag), "BOOL"))
    template = sv.chat_template
    if isinstance(template, str) and template:
        out.append((Keys.Tokenizer.CHAT_TEMPLATE, template, "STRING"))
    elif isinstance(template, list):
        names = []
        for t in template:
            name, text = t.get("name"), t.get("template")
            if not name or not text:
                continue
            if name == "default":
                out.append((Keys.Tokenizer.CHAT_TEMPLATE, text, "STRING"))
            else:
                names.append(name)
                out.append((f"tokenizer.chat_template.{name}", text, "STRING"))
        if names:
            out.append((Keys.Tokenizer.CHAT_TEMPLATES, names, "ARRAY[STRING]"))
    return out


# Architectures whose converter is llama.cpp's LlamaModel or a subclass: its set_vocab rules apply.
LLAMA_VOCAB_ARCHS = ("llama", "mistral3", "smollm3")


# Files the tokenizer metadata is read from: a cached result stands while none of them changes.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "config.json", "generation_config.json",
                   "chat_template.jinja", "chat_template.json")
_CACHE_SIZE = 2
_cache: dict[tuple[Any, ...], list[KV]] = {}
_cache_lock = threading.Lock()


def tokenizer_kv(folder: Path, spec: ArchSpec, config: Config) -> list[KV]:
    """All ``tokenizer.*`` metadata for the HF folder (InvalidModel if there is no usable tokenizer).

    Cached per folder, architecture, config and the tokenizer files' size and mtime: one job plans
    and converts (and the best-fit planner writes a probe copy), and a 150k-token vocabulary takes a
    third of a second each time. The result is shared: callers only read it."""
    folder = Path(folder)
    key = (str(folder.resolve()), spec.name, json.dumps(config, sort_keys=True, default=str),
           tuple(_file_stamp(folder / name) for name in TOKENIZER_FILES))
    with _cache_lock:
        hit = _cache.get(key)
    if hit is None:
        hit = _tokenizer_kv(folder, spec, config)
        with _cache_lock:  # jobs run in worker threads
            while len(_cache) >= _CACHE_SIZE:
                _cache.pop(next(iter(_cache)))
            _cache[key] = hit
    return list(hit)


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _tokenizer_kv(folder: Path, spec: ArchSpec, config: Config) -> list[KV]:
    vocab_size = config.get("vocab_size")
    tok_cfg = _read_json(folder / "tokenizer_config.json")
    out: list[KV] = []
    if spec.tokenizer_model is not None:
        if not (folder / "tokenizer.json").is_file():
            raise InvalidModel(f"{folder}: no tokenizer.json, which a {spec.name} GGUF's vocabulary comes from; "
                               "copy the tokenizer files from the original model into this folder")
        out += FAMILY_VOCABS[spec.tokenizer_model](folder)
    elif (folder / "tokenizer.model").is_file():
        tokens, scores, types = _spm_vocab(folder, vocab_size)
        out += [(Keys.Tokenizer.MODEL, "llama", "STRING"), (Keys.Tokenizer.PRE, "default", "STRING"),
                (Keys.Tokenizer.LIST, tokens, "ARRAY[STRING]"),
                (Keys.Tokenizer.SCORES, scores, "ARRAY[FLOAT32]"),
                (Keys.Tokenizer.TOKEN_TYPE, types, "ARRAY[INT32]")]
        out += _special_kv(folder, len(tokens), load_merges=False)
        if spec.spm_add_space_prefix is not None:
            out.append((Keys.Tokenizer.ADD_PREFIX, spec.spm_add_space_prefix, "BOOL"))
    elif (folder / "tokenizer.json").is_file():
        tokens, types = _bpe_vocab(folder, vocab_size)
        out += [(Keys.Tokenizer.MODEL, "gpt2", "STRING"), (Keys.Tokenizer.PRE, bpe_pre_name(folder), "STRING"),
                (Keys.Tokenizer.LIST, tokens, "ARRAY[STRING]"),
                (Keys.Tokenizer.TOKEN_TYPE, types, "ARRAY[INT32]")]
        out += _special_kv(folder, len(tokens), load_merges=True)
    else:
        raise InvalidModel(
            f"{folder}: no tokenizer (expected tokenizer.model or tokenizer.json); a GGUF needs the vocabulary. "
            "Copy the tokenizer files from the original model into this folder.")
    if spec.gguf_arch in LLAMA_VOCAB_ARCHS and "add_prefix_space" in tok_cfg and tok_cfg["add_prefix_space"] is not None:
        out.append((Keys.Tokenizer.ADD_PREFIX, bool(tok_cfg["add_prefix_space"]), "BOOL"))
    for typ, text in spec.special_tokens:  # ids by token text, as the family's converter sets them
        tokens = next(v for k, v, _ in out if k == Keys.Tokenizer.LIST)
        if text not in tokens:
            raise InvalidModel(f"{folder}: the tokenizer has no '{text}' token, which a {spec.name} model needs")
        out.append((f"tokenizer.ggml.{_SPECIAL_KEYS[typ]}", tokens.index(text), "UINT32"))
    if spec.gguf_arch in LLAMA_VOCAB_ARCHS and vocab_size == 49152:
        # llama.cpp's LlamaModel turns BOS off for 49152-token vocabularies (Granite small, SmolLM).
        out.append((Keys.Tokenizer.ADD_BOS, False, "BOOL"))
    return _dedupe(out)


def _dedupe(kvs: list[KV]) -> list[KV]:
    """Later entries win, at the position of the first (like GGUFWriter overwriting a key)."""
    index: dict[str, int] = {}
    out: list[KV] = []
    for kv in kvs:
        if kv[0] in index:
            out[index[kv[0]]] = kv
        else:
            index[kv[0]] = len(out)
            out.append(kv)
    return out
