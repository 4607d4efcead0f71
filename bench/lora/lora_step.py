#!/usr/bin/python3
"""PyTorch eager side of the LoRA training-step benchmark (bench/lora/run.sh): a LLaMA-style model written here from
the published architecture (RMSNorm, RoPE rotate-half, SwiGLU MLP, causal attention), frozen base weights, LoRA on every
linear layer of the blocks (q,k,v,o,gate,up,down; lm_head excluded), AdamW on the adapter parameters only.
Usage: lora_step.py THREADS STEPS [hidden layers heads seq batch rank] [--bf16]. With --bf16 the frozen base (embedding,
linears, norms, head) is bfloat16 and the adapters stay float32 with the input cast to float32 and the contribution cast
back, as PEFT does; the loss is computed on float32 logits. Prints one JSON object with tokens/s (median)."""
import json, math, statistics, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

flags = [a for a in sys.argv[1:] if a.startswith("--")]
argv = [sys.argv[0]] + [a for a in sys.argv[1:] if not a.startswith("--")]
bf16 = "--bf16" in flags
threads = int(argv[1]) if len(argv) > 1 else torch.get_num_threads()
steps = int(argv[2]) if len(argv) > 2 else 5
H, L, NH, T, B, R = (int(x) for x in (argv[3:9] if len(argv) >= 9 else (768, 12, 12, 256, 8, 16)))
DT = torch.bfloat16 if bf16 else torch.float32
V, I = 32000, (H * 8 // 3 + 255) // 256 * 256
torch.set_num_threads(threads)
torch.manual_seed(0)


class LoraLinear(nn.Module):
    def __init__(self, i, o, r, alpha):
        super().__init__()
        self.base = nn.Linear(i, o, bias=False).to(DT)
        self.base.weight.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(r, i))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(o, r))
        self.scale = alpha / r

    def forward(self, x):
        if x.dtype == self.A.dtype:
            return self.base(x) + (x @ self.A.t() @ self.B.t()) * self.scale
        return self.base(x) + ((x.to(self.A.dtype) @ self.A.t() @ self.B.t()) * self.scale).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d, dtype=DT), requires_grad=False)

    def forward(self, x):
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), -1) * sin


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (LoraLinear(H, H, R, 2 * R) for _ in range(4))
        self.gate, self.up = LoraLinear(H, I, R, 2 * R), LoraLinear(H, I, R, 2 * R)
        self.down = LoraLinear(I, H, R, 2 * R)
        self.n1, self.n2 = RMSNorm(H), RMSNorm(H)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, t, NH, -1).transpose(1, 2)
        k = self.k(h).view(b, t, NH, -1).transpose(1, 2)
        v = self.v(h).view(b, t, NH, -1).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(H // NH) + mask, -1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, t, H))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


emb = nn.Embedding(V, H).to(DT).requires_grad_(False)
blocks = nn.ModuleList(Block() for _ in range(L))
norm = RMSNorm(H)
head = nn.Linear(H, V, bias=False).to(DT).requires_grad_(False)
d = H // NH
inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
f = torch.outer(torch.arange(T).float(), inv)
cos, sin = torch.cat((f, f), -1).cos().to(DT), torch.cat((f, f), -1).sin().to(DT)
mask = torch.full((T, T), torch.finfo(DT).min, dtype=DT).triu(1)
params = [p for p in blocks.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
ids = torch.randint(0, V, (B, T))


def step():
    x = emb(ids)
    for blk in blocks:
        x = blk(x, cos, sin, mask)
    logits = head(norm(x))
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), ids[:, 1:].reshape(-1))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


step()
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
med = statistics.median(times)
maps = open("/proc/self/maps").read()
blas = "openmp" if "openblas-openmp" in maps else "pthread" if "openblas-pthread" in maps else "other"
print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": threads, "blas": blas, "dtype": "bf16" if bf16 else "fp32", "tokens_per_s": B * T / med,
                  "step_s": med, "trainable": sum(p.numel() for p in params),
                  "config": {"hidden": H, "layers": L, "heads": NH, "seq": T, "batch": B, "rank": R, "vocab": V, "intermediate": I}}))
