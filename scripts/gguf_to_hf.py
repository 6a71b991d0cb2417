"""Convert a llama-architecture GGUF (the embedded SmolLM2 by default) into a Hugging Face folder vLLM loads.

    python scripts/gguf_to_hf.py OUTPUT_DIR [GGUF_FILE]

Needs torch, transformers, safetensors and gguf (all in .venv-vllm; `make vllm-model` runs it). The weights
are dequantized by transformers. `save_pretrained` refuses a GGUF-loaded model, so the state dict, config and
tokenizer are written separately. Writes into a temporary folder renamed at the end, so an interrupted run
never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from llm_inference.model_spec import embedded_model_path


def convert(gguf: Path, output: Path) -> None:
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied to embed_tokens; vLLM rebuilds it
    save_file(state, str(partial / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the GGUF's; the dequantized weights are plain bf16
    config["architectures"] = [type(model).__name__]  # comes out null from a GGUF load; vLLM needs it
    config["torch_dtype"] = config["dtype"] = "bfloat16"
    (partial / "config.json").write_text(json.dumps(config, indent=2, default=str))
    tokenizer.save_pretrained(partial)
    shutil.rmtree(output, ignore_errors=True)
    partial.rename(output)


def main() -> None:
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    output = Path(sys.argv[1])
    gguf = Path(sys.argv[2]) if len(sys.argv) == 3 else embedded_model_path()
    convert(gguf, output)
    print(output)


if __name__ == "__main__":
    main()
