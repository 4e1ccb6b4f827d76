#!/usr/bin/env bash
# The cosyvoice-stream command line, end to end, against the embedded server
# (no key needed; with DASHSCOPE_API_KEY set, `speak` uses the cloud).
#
#   bash examples/cli_usage.sh [DIR]     # DIR (made if missing) gets the files; default: a temp dir
set -euo pipefail
out=${1:-$(mktemp -d)}
mkdir -p -- "$out"
cosyvoice-stream voices --model cosyvoice-v3-flash
cosyvoice-stream adapters
cosyvoice-stream speak "Hello from the command line." -o "$out/hello.wav"
printf 'First paragraph. It has two sentences.\n\n第二段。你好，世界。\n' > "$out/text.txt"
cosyvoice-stream speak -f "$out/text.txt" -o "$out/text.wav" --sample-rate 16000
# --format pcm to a name not ending in .wav: raw 16-bit mono PCM, no header
cosyvoice-stream speak "Raw samples." --format pcm -o "$out/raw.pcm"
ls -l "$out"/*.wav "$out"/*.pcm
