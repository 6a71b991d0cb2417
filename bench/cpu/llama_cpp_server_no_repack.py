"""Run llama-cpp-python's own OpenAI server with llama.cpp's extra CPU buffer types off.

On this project's CPU machines those buffer types (AMX / repacked weights) crash llama_decode on any
multi-token batch; our engine and llama-server (--no-repack) run without them, so this peer does too.
"""

import llama_cpp
import llama_cpp.llama

_default_params = llama_cpp.llama_model_default_params


def _params_without_extra_buffers():  # type: ignore[no-untyped-def]
    params = _default_params()
    params.use_extra_bufts = False
    return params


llama_cpp.llama_model_default_params = _params_without_extra_buffers
llama_cpp.llama.llama_cpp.llama_model_default_params = _params_without_extra_buffers

if __name__ == "__main__":
    from llama_cpp.server.__main__ import main

    main()
