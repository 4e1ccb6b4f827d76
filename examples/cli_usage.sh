#!/usr/bin/env bash
# The cosyvoice-stream command line, end to end, against the embedded server
# (no key needed; with DASHSCOPE_API_KEY set, `speak` uses the cloud).
set -euo pipefail
out=${1:-$(mktemp -d)}
cosyvoice-stream voices --model cosyvoice-v3-flash
cosyvoice-stream adapters
cosyvoice-stream speak "Hello from the command line." -o "$out/hello.wav"
printf 'First paragraph. It has two sentences.\n\n第二段。你好，世界。\n' > "$out/text.txt"
cosyvoice-stream speak -f "$out/text.txt" -o "$out/text.wav" --sample-rate 16000
ls -l "$out"/*.wav
