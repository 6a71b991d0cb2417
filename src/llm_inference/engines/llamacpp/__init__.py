"""llama.cpp backend (llama-cpp-python): GGUF models on the CPU, one dedicated decode thread per model."""
