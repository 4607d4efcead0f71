// Our side of the LoRA training-step benchmark (bench/lora/run.sh): the same LLaMA-style model and adapter as
// bench/lora/lora_step.py — LoRA r on every block linear (all-linear), AdamW on adapter parameters, causal-LM loss.
// Usage: LoraBench STEPS [hidden layers heads seq batch rank] [options]
//   --dtype fp32|bf16   base weights (and activations) type; adapters and optimizer state stay float32 (default fp32)
//   --unfused           LoRA (and DoRA) layers as separate modules (no fused native LoRA / DoRA linear)
//   --no-shared         fused LoRA linear per projection, but q/k/v and gate/up not evaluated together
//   --order auto|sequential|merged   RunLoRA compute order of the fused path (default auto)
//   --chunked-ce        chunked linear cross-entropy (no [batch, seq, vocab] logits)
//   --checkpoint        gradient checkpointing per block
//   --lora-fa           freeze A (LoRA-FA): the fused path then saves only z = x·Aᵀ
//   --memory            count CPU allocations: bytes held between forward and backward, and the step's peak
//   --peak              also time a 2048×2048×2048 matmul in float32 and bfloat16 (the machine's matmul peak)
//   --device cpu|cuda   where to train (default cpu); on CUDA the peak memory is the caching allocator's
//   --config FILE       a Hugging Face config.json (LLaMA family) instead of the dims above (seq and batch still apply)
//   --method NAME       an adapter method of AdapterMethods (lora, dora, ...) with r, lora_alpha = 2r, all-linear
//   --autocast          run the forward under autocast (bf16) instead of casting the model
//   --attention-formula run attention as the composed formula (not the shim's CPU attention node)
//   --profile FILE      write an operator table of two steps (self ms per operator and input shapes) to FILE
//   --ab                A/B in one process: alternate step by step between the fused path (auto order, shared
//                       projections), fused without shared projections, fused with sequential / merged order, and the
//                       unfused layers, on the same model and data; prints the median step time of each (robust to a
//                       machine whose load drifts, as interleaving cancels the drift)
//   --info              print libtorch's version, threads, CUDA availability and whether SDPA uses libtorch's fused kernels
//   --verify            correctness instead of speed: the step's loss and adapter gradients on this device (float32 and
//                       bfloat16) against a float64 CPU reference of the same weights
// Prints one JSON object (median step time over STEPS timed steps after one warm-up step).
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

var inv = CultureInfo.InvariantCulture;
var positional = args.TakeWhile(a => !a.StartsWith("--", StringComparison.Ordinal)).ToArray();
var flags = args.Skip(positional.Length).ToList();
string? Opt(string name)
{
    int i = flags.IndexOf(name);
    return i >= 0 && i + 1 < flags.Count ? flags[i + 1] : null;
}
bool Flag(string name) => flags.Contains(name);

if (Flag("--info"))
{
    bool cudaOk = cuda.is_available();
    Console.WriteLine(string.Create(inv, $"{{\"torch\":\"{__version__}\",\"threads\":{get_num_threads()},\"blas\":\"{NativeLibraryLoader.BlasThreading}\",\"cpu_cache\":{(cpu.is_caching ? "true" : "false")},\"cuda_available\":{(cudaOk ? "true" : "false")},\"cuda_devices\":{(cudaOk ? cuda.device_count() : 0)},\"sdpa_fused\":{(nn.functional.sdpa_uses_fused_kernel ? "true" : "false")}}}"));
    return;
}
if (Flag("--verify"))
{
    Verify.Run(Opt("--config"), Opt("--device") ?? "cpu", Opt("--method") ?? "lora");
    return;
}
int steps = positional.Length > 0 ? int.Parse(positional[0], inv) : 5;
var dims = positional.Length >= 7 ? positional[1..7].Select(a => int.Parse(a, inv)).ToArray() : new[] { 768, 12, 12, 256, 8, 16 };
int H = dims[0], L = dims[1], NH = dims[2], T = dims[3], B = dims[4], R = dims[5];
int V = 32000, I = (H * 8 / 3 + 255) / 256 * 256;
var dtypeName = Opt("--dtype") ?? "fp32";
var dtype = dtypeName switch { "fp32" => ScalarType.Float32, "bf16" => ScalarType.BFloat16, _ => throw new ArgumentException($"--dtype fp32|bf16, got {dtypeName}") };
var order = (Opt("--order") ?? "auto") switch { "auto" => LoraComputeOrder.Auto, "sequential" => LoraComputeOrder.Sequential, "merged" => LoraComputeOrder.Merged, var o => throw new ArgumentException($"--order {o}") };
bool fused = !Flag("--unfused"), shared = !Flag("--no-shared"), chunked = Flag("--chunked-ce"), checkpoint = Flag("--checkpoint");
bool fa = Flag("--lora-fa"), memory = Flag("--memory");
if (Flag("--attention-formula")) nn.functional.cpu_attention_kernel = false;

var device = Device.Parse(Opt("--device") ?? "cpu");
bool onCuda = device.type == DeviceType.CUDA;
bool autocastForward = Flag("--autocast");
manual_seed(0);
var config = Opt("--config") is { } configFile ? ModelConfig.FromFile(configFile) : ModelConfig.Parse($$"""
{"model_type":"llama","vocab_size":{{V}},"hidden_size":{{H}},"intermediate_size":{{I}},"num_hidden_layers":{{L}},
 "num_attention_heads":{{NH}},"num_key_value_heads":{{NH}},"rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":false,
 "max_position_embeddings":{{Math.Max(T, 2048)}}}
""");
if (Opt("--config") is not null)
{
    H = (int)config.HiddenSize; L = config.NumHiddenLayers; NH = config.NumAttentionHeads; V = (int)config.VocabSize; I = (int)config.IntermediateSize;
}
var methodName = Opt("--method") ?? "lora";
using var model = new PretrainedModel(config, ModelTask.CausalLM, device: device, dtype: autocastForward ? ScalarType.Float32 : dtype);
var adapterOptions = AdapterMethods.WithSettings(AdapterMethods.Create(methodName), new Dictionary<string, string>
{
    ["r"] = R.ToString(inv), ["lora_alpha"] = (2 * R).ToString(inv), ["target_modules"] = "\"all-linear\"",
});
using var peft = LowRankModel.Create(model, adapterOptions);
foreach (var (_, m) in peft.named_modules())
{
    if (m is LoraLayer l)
    {
        l.UseFusedKernel = fused;
        l.ComputeOrder = order;
    }
    else if (m is Microsoft.ML.LowRank.Adapters.Dora.DoraLayer d) d.UseFusedKernel = fused;
}
if (fused && !shared) SharedProjectionsOff(peft);
model.ChunkedCrossEntropy = chunked;
model.Backbone.GradientCheckpointing = checkpoint;
if (fa)
    foreach (var (n, p) in peft.named_parameters())
        if (n.Contains("lora_A")) p.requires_grad = false;
var trainable = peft.parameters().Where(p => p.requires_grad).ToList();
using var opt = optim.AdamW(trainable, lr: 1e-4, weight_decay: 0.0);
using var ids = randint(0, V, new long[] { B, T }, device: device);
peft.train();

long heldAfterForward = 0, peak = 0;
double Step(bool measure)
{
    using var scope = NewDisposeScope();
    long before = 0;
    if (measure)
    {
        cpu.track_memory(true);
        before = cpu.memory_allocated();
    }
    Tensor loss;
    using (autocastForward ? autocast(device, ScalarType.BFloat16) : null)
        loss = peft.forward(new ModelInputs { InputIds = ids, Labels = ids }).Loss!;
    if (measure) heldAfterForward = cpu.memory_allocated() - before;
    loss.backward();
    opt.step();
    opt.zero_grad();
    if (measure)
    {
        peak = cpu.max_memory_allocated() - before;
        cpu.track_memory(false);
    }
    return loss.ToDouble();
}

if (Flag("--ab"))
{
    var variants = new (string name, Action set)[]
    {
        ("fused_auto_shared", () => SetLayers(peft, true, LoraComputeOrder.Auto, true)),
        ("fused_auto_unshared", () => SetLayers(peft, true, LoraComputeOrder.Auto, false)),
        ("fused_sequential_shared", () => SetLayers(peft, true, LoraComputeOrder.Sequential, true)),
        ("fused_merged_shared", () => SetLayers(peft, true, LoraComputeOrder.Merged, true)),
        ("unfused", () => SetLayers(peft, false, LoraComputeOrder.Auto, true)),
    };
    var ab = variants.ToDictionary(v => v.name, _ => new List<double>());
    foreach (var v in variants) { v.set(); Step(false); }
    for (int round = 0; round < steps; round++)
        foreach (var v in variants)
        {
            v.set();
            var sw = Stopwatch.StartNew();
            Step(false);
            if (onCuda) cuda.synchronize();
            ab[v.name].Add(sw.Elapsed.TotalSeconds);
        }
    double Median(List<double> xs) { var c = xs.OrderBy(x => x).ToList(); return c.Count % 2 == 1 ? c[c.Count / 2] : (c[c.Count / 2 - 1] + c[c.Count / 2]) / 2; }
    var baseMed = Median(ab["unfused"]);
    Console.WriteLine("{" + string.Join(",", variants.Select(v => string.Create(inv,
        $"\"{v.name}\":{{\"step_s\":{Median(ab[v.name]):F4},\"speedup_vs_unfused\":{baseMed / Median(ab[v.name]):F3}}}"))) +
        string.Create(inv, $",\"dtype\":\"{dtypeName}\",\"rounds\":{steps},\"tokens_per_step\":{B * T}}}"));
    return;
}

Step(false);
if (Opt("--profile") is { } profilePath)
{
    // Operator table of two steps (self ms per operator and input shapes), then the timed run as usual.
    profiler.start(record_shapes: true);
    var psw = Stopwatch.StartNew();
    Step(false);
    Step(false);
    Console.Error.WriteLine(string.Create(inv, $"profiled steps: {psw.Elapsed.TotalSeconds / 2:F3} s per step (wall)"));
    profiler.stop(profilePath);
}
if (onCuda)
{
    cuda.synchronize();
    cuda.reset_peak_memory_stats(Math.Max(0, device.index));
}
var times = new List<double>();
for (int s = 0; s < steps; s++)
{
    var sw = Stopwatch.StartNew();
    Step(false);
    if (onCuda) cuda.synchronize();
    times.Add(sw.Elapsed.TotalSeconds);
}
long cudaPeak = onCuda ? cuda.max_memory_allocated(Math.Max(0, device.index)) : 0;
times.Sort();
var med = times[times.Count / 2];
if (memory && !onCuda) Step(true);

// Model FLOPs per token: 2 per multiply-add. Base linears (blocks and LM head): forward and the input gradient
// (frozen weights need no weight gradient): 4·N_base. Attention scores and values: 4·T·H per layer forward, 8·T·H
// backward. LoRA: forward 2·r(in+out), backward 4·r(in+out) + 2·r·in (input gradient through the adapter).
double qo = config.NumAttentionHeads * config.HeadDim, kv = config.NumKeyValueHeads * config.HeadDim;
double nBase = L * (2.0 * H * qo + 2.0 * H * kv + 3.0 * H * I) + (double)H * V;
double nLoraIO = L * ((H + qo) * 2 + (H + kv) * 2 + 2.0 * (H + I) + (I + H)), nLoraIn = L * (3.0 * H + qo + 2.0 * H + I);
double flopsPerToken = 4 * nBase + 12.0 * L * T * qo + R * (6 * nLoraIO + 2 * nLoraIn);
double tokensPerS = B * T / med;

double peak32 = 0, peak16 = 0;
if (Flag("--peak"))
{
    double Mm(ScalarType dt)
    {
        using var scope = NewDisposeScope();
        var a = randn(new long[] { 2048, 2048 }, dt);
        var b = randn(new long[] { 2048, 2048 }, dt);
        a.matmul(b).Dispose();
        var ts = new List<double>();
        for (int i = 0; i < 5; i++)
        {
            var sw = Stopwatch.StartNew();
            a.matmul(b).Dispose();
            ts.Add(sw.Elapsed.TotalSeconds);
        }
        ts.Sort();
        return 2.0 * 2048 * 2048 * 2048 / ts[2];
    }
    peak32 = Mm(ScalarType.Float32);
    peak16 = Mm(ScalarType.BFloat16);
}

Console.WriteLine(string.Create(inv, $"{{\"impl\":\"csharp\",\"device\":\"{device}\",\"method\":\"{methodName}\",\"cuda_peak_bytes\":{cudaPeak},\"batch\":{B},\"seq\":{T},\"torch\":\"{__version__}\",\"threads\":{get_num_threads()},\"blas\":\"{NativeLibraryLoader.BlasThreading}\",\"cpu_cache\":{(cpu.is_caching ? "true" : "false")},\"dtype\":\"{dtypeName}\",\"fused\":{(fused ? "true" : "false")},\"shared\":{(fused && shared ? "true" : "false")},\"order\":\"{order}\",\"chunked_ce\":{(chunked ? "true" : "false")},\"checkpoint\":{(checkpoint ? "true" : "false")},\"lora_fa\":{(fa ? "true" : "false")},\"tokens_per_s\":{tokensPerS:F2},\"step_s\":{med:F4},\"step_min_s\":{times[0]:F4},\"trainable\":{trainable.Sum(p => p.numel())},\"flops_per_token\":{flopsPerToken:F0},\"achieved_gflops\":{flopsPerToken * tokensPerS / 1e9:F2},\"held_after_forward\":{heldAfterForward},\"step_peak_bytes\":{peak},\"peak_fp32_gflops\":{peak32 / 1e9:F2},\"peak_bf16_gflops\":{peak16 / 1e9:F2}}}"));

static void SetLayers(nn.Module root, bool fused, LoraComputeOrder order, bool shared)
{
    foreach (var (_, m) in root.named_modules())
        if (m is LoraLayer l)
        {
            l.UseFusedKernel = fused;
            l.ComputeOrder = order;
            var held = l.ActiveAdapters.Where(a => l.HasAdapter(a)).ToList();
            if (!shared) held.Add("__unused__");
            l.SetActiveAdapters(held);
        }
}

static void SharedProjectionsOff(nn.Module root)
{
    // Keeps the per-projection fused path but stops q/k/v and gate/up from being evaluated together: a LoRA layer only
    // joins a shared call when every layer of the group has exactly one active adapter, so each layer gets a second,
    // never-used adapter name in its active set (held adapters only are applied).
    foreach (var (_, m) in root.named_modules())
        if (m is LoraLayer l) l.SetActiveAdapters(l.ActiveAdapters.Append("__unused__").ToList());
}
