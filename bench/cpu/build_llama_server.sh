#!/bin/sh
# Build llama.cpp's own llama-server from the llama.cpp sources vendored in the llama-cpp-python sdist we pin,
# so the peer runs exactly the llama.cpp version our backend links. Output: $OUT_DIR/bin/llama-server.
set -eu
VERSION=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
OUT_DIR=${OUT_DIR:-.cache/bench/llama-server-$VERSION}
if [ -x "$OUT_DIR/bin/llama-server" ]; then echo "$OUT_DIR/bin/llama-server"; exit 0; fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
# Same CMake defaults as pip's build of llama-cpp-python (native CPU, no curl: it never downloads models).
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$OUT_DIR/bin"
cp "$WORK/build/bin/llama-server" "$OUT_DIR/bin/"
echo "$OUT_DIR/bin/llama-server"
