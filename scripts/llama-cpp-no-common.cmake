# Included at llama.cpp's project() call (CMAKE_PROJECT_llama.cpp_INCLUDE, set by scripts/install.sh).
# llama-cpp-python forces llama.cpp's "common" library on (LLAMA_BUILD_COMMON, a cache variable set with FORCE),
# although its Python package never loads it: the argument parser, chat and sampling helpers of llama.cpp's own
# tools, about half of the compile time (bench/llama_build.py). A normal variable of the same name, set before
# llama.cpp's option() reads it (policy CMP0077), turns it off for llama.cpp's directory, so it is not built
# or installed.
set(LLAMA_BUILD_COMMON OFF)
