"""Write a Llama-architecture Hugging Face folder of a given shape with random (seeded) bf16 weights.

No 8B checkpoint can reach the lent GPU machine, and throughput does not depend on the weights' values, so the
8B-class benchmark runs on Llama-3-8B's shape filled with noise. The tokenizer is SmolLM2's (from the folder
scripts/gguf_to_hf.py converts), so the vocabulary is its 49,152 tokens, not Llama 3's 128,256: the embedding
and LM head are smaller (0.4 B instead of 1 B parameters each), everything else has the 8B's shape.

    python bench/gpu/make_random_model.py OUT_DIR --shape llama3-8b --seed 0 --tokenizer-from /tmp/smol-hf

Tensors are drawn on the GPU when there is one (on the CPU otherwise), in bf16, with a small standard deviation
(0.02, norms 1) so activations stay finite; they are written as ~5 GB safetensors shards with an index, the
layout `save_pretrained` writes. Written into OUT_DIR.partial and renamed at the end, so an interrupted run
never leaves a half-written model behind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlamaConfig

# hidden, layers, attention heads, KV heads, intermediate (MLP), rope theta, max positions
SHAPES = {
    "llama3-8b": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "rope_theta": 500000.0,
        "max_position_embeddings": 8192,
    },
    # for checking this script and the folder it writes on a CPU in seconds (head_dim 64, as kernels want)
    "tiny": {
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 256,
        "rope_theta": 500000.0,
        "max_position_embeddings": 8192,
    },
}
SHARD_BYTES = 5 * 1024**3
STD = 0.02


def tensor_plan(config: LlamaConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Every weight of LlamaForCausalLM with untied embeddings, in the order transformers names them."""
    hidden, heads, kv_heads = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = hidden // heads
    plan: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (config.vocab_size, hidden))]
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}"
        plan += [
            (f"{prefix}.input_layernorm.weight", (hidden,)),
            (f"{prefix}.self_attn.q_proj.weight", (heads * head_dim, hidden)),
            (f"{prefix}.self_attn.k_proj.weight", (kv_heads * head_dim, hidden)),
            (f"{prefix}.self_attn.v_proj.weight", (kv_heads * head_dim, hidden)),
            (f"{prefix}.self_attn.o_proj.weight", (hidden, heads * head_dim)),
            (f"{prefix}.post_attention_layernorm.weight", (hidden,)),
            (f"{prefix}.mlp.gate_proj.weight", (config.intermediate_size, hidden)),
            (f"{prefix}.mlp.up_proj.weight", (config.intermediate_size, hidden)),
            (f"{prefix}.mlp.down_proj.weight", (hidden, config.intermediate_size)),
        ]
    plan += [("model.norm.weight", (hidden,)), ("lm_head.weight", (config.vocab_size, hidden))]
    return plan


def shard_plan(plan: list[tuple[str, tuple[int, ...]]]) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Consecutive tensors grouped into shards of at most SHARD_BYTES (a bigger tensor gets a shard alone)."""
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in plan:
        nbytes = 2 * torch.Size(shape).numel()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


def make_config(shape: str, tokenizer: Any) -> LlamaConfig:
    vocab_size = len(tokenizer)  # the added special tokens included: every id the tokenizer can produce
    config = LlamaConfig(
        **SHAPES[shape],
        vocab_size=vocab_size,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attention_bias=False,
        mlp_bias=False,
    )
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = "bfloat16"
    return config


def write_model(output: Path, shape: str, seed: int, tokenizer_from: Path) -> dict[str, float]:
    started = time.monotonic()
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    config = make_config(shape, tokenizer)
    config.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device).manual_seed(seed)
    shards = shard_plan(tensor_plan(config))
    weight_map: dict[str, str] = {}
    total_bytes = 0
    for index, shard in enumerate(shards, start=1):
        tensors = {}
        for name, shape_ in shard:
            if name.endswith("norm.weight"):
                tensor = torch.ones(shape_, dtype=torch.bfloat16, device=device)
            else:
                tensor = torch.randn(shape_, generator=generator, dtype=torch.bfloat16, device=device).mul_(STD)
            tensors[name] = tensor.cpu()
            total_bytes += tensors[name].numel() * 2
        filename = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(partial / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, filename))
        print(f"{filename}: {len(tensors)} tensors, {time.monotonic() - started:.1f} s", flush=True)
    index_file = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    (partial / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=2))
    shutil.rmtree(output, ignore_errors=True)
    partial.rename(output)
    return {"seconds": round(time.monotonic() - started, 1), "gigabytes": round(total_bytes / 1e9, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tokenizer-from", type=Path, required=True, help="a folder with the tokenizer (scripts/gguf_to_hf.py's)"
    )
    args = parser.parse_args()
    written = write_model(args.output, args.shape, args.seed, args.tokenizer_from)
    print(f"{args.output}: {written['gigabytes']} GB in {written['seconds']} s")


if __name__ == "__main__":
    main()
