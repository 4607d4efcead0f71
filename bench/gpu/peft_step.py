#!/usr/bin/env python3
"""The reference side of the GPU benchmark (bench/gpu/run.sh): the same LLaMA-style model (random weights from a
Hugging Face config) in transformers, the same adapter through peft (r, lora_alpha = 2r, all-linear, no dropout), AdamW
on the adapter parameters, causal-LM loss on the batch itself. One warm-up step, then STEPS timed steps (synchronised);
prints one JSON object with the median step time, tokens/s and the peak CUDA memory of the timed steps.

Usage: peft_step.py CONFIG METHOD BATCH SEQ RANK STEPS [--checkpoint] [--device cuda|cpu]
METHOD: lora | dora | qlora (qlora needs bitsandbytes; without it, or without transformers/peft, the JSON says
"available": false with the reason instead of failing). Works with transformers 4.x and 5.x."""
import json
import statistics
import sys
import time

args = [a for a in sys.argv[1:]]
flags = {a for a in args if a.startswith("--")}
device = "cuda"
if "--device" in args:
    device = args[args.index("--device") + 1]
    args.remove("--device")
    args.remove(device)
positional = [a for a in args if not a.startswith("--")]
config_path, method = positional[0], positional[1]
batch, seq, rank, steps = (int(x) for x in positional[2:6])
checkpoint = "--checkpoint" in flags


def unavailable(reason):
    print(json.dumps({"impl": "peft", "method": method, "checkpoint": checkpoint, "available": False, "reason": reason}))
    sys.exit(0)


try:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from peft import LoraConfig, get_peft_model
    import transformers
    import peft
except Exception as e:  # noqa: BLE001 - report any import problem as "unavailable"
    unavailable(f"import: {e}")
if method not in ("lora", "dora", "qlora"):
    unavailable(f"unknown method {method}")
if device == "cuda" and not torch.cuda.is_available():
    unavailable("CUDA is not available")

torch.manual_seed(0)
cfg = LlamaConfig.from_json_file(config_path)
try:
    cfg._attn_implementation = "sdpa"  # the same fused attention kernels our side gets from at::scaled_dot_product_attention
except Exception:  # noqa: BLE001
    pass
dtype = torch.bfloat16
if method == "qlora":
    try:
        from transformers import BitsAndBytesConfig
        import bitsandbytes  # noqa: F401
    except Exception as e:  # noqa: BLE001
        unavailable(f"bitsandbytes: {e}")
try:
    with torch.device(device):  # initialise on the device (torch >= 2.0)
        model = LlamaForCausalLM(cfg)
except (AttributeError, TypeError):
    model = LlamaForCausalLM(cfg).to(device)
model = model.to(dtype)
if method == "qlora":
    # bitsandbytes quantises on load: round-trip the freshly initialised base through a folder.
    import tempfile
    from transformers import BitsAndBytesConfig
    folder = tempfile.mkdtemp()
    model.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True)
    try:
        model = LlamaForCausalLM.from_pretrained(folder, quantization_config=quant, dtype=dtype, device_map={"": 0})
    except TypeError:
        model = LlamaForCausalLM.from_pretrained(folder, quantization_config=quant, torch_dtype=dtype, device_map={"": 0})
if checkpoint:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", lora_dropout=0.0, use_dora=(method == "dora"))
model = get_peft_model(model, lora)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
ids = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


def step():
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


first_loss = step()
sync()
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    sync()
    times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(json.dumps({
    "impl": "peft", "method": method, "checkpoint": checkpoint, "available": True, "device": device,
    "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
    "attn_implementation": getattr(model.config, "_attn_implementation", None),
    "batch": batch, "seq": seq, "rank": rank, "steps": steps, "first_loss": first_loss,
    "tokens_per_s": batch * seq / med, "step_s": med, "step_min_s": min(times),
    "cuda_peak_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
    "trainable": sum(p.numel() for p in params),
}))
