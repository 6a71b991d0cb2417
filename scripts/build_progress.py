"""Shorten a verbose llama-cpp-python build (pip -v) to one line per compiled file with the time so far.

pip's own output during the build is a "still running..." line per minute for what takes minutes on two cores;
this shows which of llama.cpp's files is being compiled and how far the build is. Reads pip's output on stdin
and keeps all of it in the file named by the first argument, for the error report if the build fails.
"""

from __future__ import annotations

import re
import sys
import time

NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\] (.*)$")  # ninja -v: "[12/130] /usr/bin/cc ... -c src/ggml.c"
MAKE_STEP = re.compile(r"^\[\s*(\d+)%\] (.*)$")  # make: "[ 45%] Building C object ggml/src/ggml.c.o"
SOURCE = re.compile(r" -c (\S+)")
OUTPUT = re.compile(r" -o (\S+)")


def elapsed(start: float) -> str:
    seconds = int(time.monotonic() - start)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def short_name(command: str) -> str:
    """The file a build step makes or compiles, relative to llama.cpp's tree."""
    found = SOURCE.search(command) or OUTPUT.search(command)
    name = found.group(1) if found else command[:80]
    return name.split("vendor/llama.cpp/", 1)[-1]


def main() -> None:
    start = time.monotonic()
    with open(sys.argv[1], "w") as full_log:
        for line in sys.stdin:
            full_log.write(line)
            stripped = line.strip()
            if step := NINJA_STEP.match(stripped):
                done, total, command = step.groups()
                print(f"  [{int(done):>3}/{total}] {elapsed(start):>6}  {short_name(command)}", flush=True)
            elif step := MAKE_STEP.match(stripped):
                print(f"  [{step.group(1):>3}%] {elapsed(start):>6}  {step.group(2)}", flush=True)
            elif stripped.startswith(("Using cached", "Successfully installed", "Requirement already satisfied")):
                print(f"  {stripped}", flush=True)


if __name__ == "__main__":
    main()
