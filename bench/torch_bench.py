#!/usr/bin/python3
"""PyTorch eager side of bench/TorchBench: the same three micro-benchmarks, same thread count, same sizes.
Run with Debian's python3-torch (the same libtorch 1.13 as our CPU build). Prints one JSON object."""
import json, statistics, sys, time
import torch

threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
torch.set_num_threads(threads)


def add_us():
    a, b = torch.rand(16), torch.rand(16)
    n = 200_000
    for _ in range(20_000):
        c = a + b
        del c
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            c = a + b
            del c
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times)


def matmul_gflops():
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps * 3):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * 1024 ** 3 / statistics.median(times) / 1e9


def mlp_ms():
    torch.manual_seed(0)
    ws = [(torch.randn(1024, 1024) / 32).requires_grad_() for _ in range(4)]
    bs = [torch.zeros(1024, requires_grad=True) for _ in range(4)]
    x = torch.randn(64, 1024)

    def step():
        h = x
        for l in range(4):
            h = torch.nn.functional.linear(h, ws[l], bs[l])
            if l < 3:
                h = torch.relu(h)
        loss = h.square().mean()
        loss.backward()
        for p in ws + bs:
            p.grad = None

    for _ in range(5):
        step()
    times = []
    for _ in range(reps * 3):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    global mlp_min
    mlp_min = min(times)
    return statistics.median(times)


mlp_min = 0.0
print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": threads,
                  "add_us": add_us(), "matmul_gflops": matmul_gflops(), "mlp_ms": mlp_ms(), "mlp_min_ms": mlp_min}))
