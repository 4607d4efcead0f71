// Micro-benchmarks of the binding, mirrored one for one by bench/torch_bench.py (PyTorch eager, same libtorch).
// Prints one JSON object: {"add_us":..., "matmul_gflops":..., "mlp_ms":..., "threads":..., "torch":...}.
using System.Diagnostics;
using System.Text;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

var threads = get_num_threads();
var reps = args.Length > 0 ? int.Parse(args[0]) : 7;

static double Median(List<double> xs) { xs.Sort(); return xs[xs.Count / 2]; }

// (a) dispatch overhead: a 16-element add whose result is created and freed.
double AddMicros()
{
    using var a = rand(16);
    using var b = rand(16);
    const int n = 200_000;
    for (int i = 0; i < 20_000; i++) { using var c = a + b; }
    var times = new List<double>();
    for (int r = 0; r < reps; r++)
    {
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < n; i++) { using var c = a + b; }
        times.Add(sw.Elapsed.TotalMicroseconds / n);
    }
    return Median(times);
}

// (b) 1024^3 float32 matmul.
double MatmulGflops()
{
    using var a = randn(1024, 1024);
    using var b = randn(1024, 1024);
    for (int i = 0; i < 3; i++) { using var c = a.matmul(b); }
    var times = new List<double>();
    for (int r = 0; r < reps * 3; r++)
    {
        var sw = Stopwatch.StartNew();
        using var c = a.matmul(b);
        times.Add(sw.Elapsed.TotalSeconds);
    }
    return 2.0 * 1024 * 1024 * 1024 / Median(times) / 1e9;
}

// (c) forward + backward of a 4-layer MLP (width 1024, batch 64, ReLU, mean-square loss).
double mlpMin = 0;
double MlpMillis()
{
    manual_seed(0);
    var ws = new List<Tensor>();
    var bs = new List<Tensor>();
    for (int l = 0; l < 4; l++)
    {
        ws.Add((randn(1024, 1024) * (1.0 / 32)).DetachFromDisposeScope().requires_grad_());
        bs.Add(zeros(new long[] { 1024 }, requires_grad: true));
    }
    using var x = randn(64, 1024);
    void Step()
    {
        using var scope = NewDisposeScope();
        var h = x;
        for (int l = 0; l < 4; l++)
        {
            h = nn.functional.linear(h, ws[l], bs[l]);
            if (l < 3) h = nn.functional.relu(h);
        }
        var loss = h.square().mean();
        loss.backward();
        foreach (var w in ws) w.grad = null;
        foreach (var b in bs) b.grad = null;
    }
    for (int i = 0; i < 5; i++) Step();
    var times = new List<double>();
    for (int r = 0; r < reps * 3; r++)
    {
        var sw = Stopwatch.StartNew();
        Step();
        times.Add(sw.Elapsed.TotalMilliseconds);
    }
    foreach (var t in ws.Concat(bs)) t.Dispose();
    mlpMin = times.Min();
    return Median(times);
}

var add = AddMicros();
var mm = MatmulGflops();
var mlp = MlpMillis();
var sb = new StringBuilder();
sb.Append('{');
sb.Append($"\"impl\":\"csharp\",\"torch\":\"{__version__}\",\"threads\":{threads},");
sb.Append($"\"add_us\":{add:F4},\"matmul_gflops\":{mm:F2},\"mlp_ms\":{mlp:F3},\"mlp_min_ms\":{mlpMin:F3}");
sb.Append('}');
Console.WriteLine(sb.ToString());
