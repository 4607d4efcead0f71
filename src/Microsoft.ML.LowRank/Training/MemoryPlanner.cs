using System.Globalization;
using System.Text;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Training;

/// <summary>The adapter method a memory plan is made for.</summary>
public enum PlannedMethod
{
    /// <summary>LoRA: A and B train (the fused path saves the layer input and the r-wide z).</summary>
    Lora,
    /// <summary>LoRA-FA: A frozen, B trains (the fused path saves only z, not the layer input).</summary>
    LoraFA,
    /// <summary>DoRA: LoRA plus the magnitude vector; modelled as LoRA plus the base output of every adapted layer.</summary>
    Dora,
    /// <summary>QLoRA: LoRA on a 4-bit NF4 base (0.5 byte per weight plus one float32 absmax per 64 weights); activations
    /// in the compute type.</summary>
    QLora,
}

/// <summary>What a <see cref="MemoryPlanner"/> estimate is for: model, method, batch, sequence length, precision and the
/// memory features in use. Every field has a documented default.</summary>
public sealed class MemoryPlanOptions
{
    /// <summary>The model config (LLaMA family and GPT-2 are modelled op by op; BERT/RoBERTa with GPT-2's rules).</summary>
    public required ModelConfig Config { get; init; }

    /// <summary>The method. Default <see cref="PlannedMethod.Lora"/>.</summary>
    public PlannedMethod Method { get; init; } = PlannedMethod.Lora;

    /// <summary>LoRA rank. Default 8.</summary>
    public int Rank { get; init; } = 8;

    /// <summary>Adapted block linears by short name (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; GPT-2:
    /// c_attn, attn.c_proj, c_fc, mlp.c_proj); null adapts every block linear (PEFT's all-linear). Default null.</summary>
    public IReadOnlyCollection<string>? TargetModules { get; init; }

    /// <summary>Sequences per micro-batch. Default 1.</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>Tokens per sequence. Default 512.</summary>
    public int SequenceLength { get; init; } = 512;

    /// <summary>Type of the base weights and activations (Float32, BFloat16 or Float16; the compute type for QLoRA).
    /// Default Float32.</summary>
    public ScalarType BaseType { get; init; } = ScalarType.Float32;

    /// <summary>Type of the adapter weights, their gradients and AdamW state. Default Float32.</summary>
    public ScalarType AdapterType { get; init; } = ScalarType.Float32;

    /// <summary>Gradient checkpointing per block. Default false.</summary>
    public bool GradientCheckpointing { get; init; }

    /// <summary>Chunked linear cross-entropy (no full logits). Default false.</summary>
    public bool ChunkedCrossEntropy { get; init; }

    /// <summary>Rows per cross-entropy chunk (0: about 2²⁴/vocab). Default 0.</summary>
    public long CrossEntropyChunkRows { get; init; }

    /// <summary>Attention through a fused kernel that keeps no [T, T] probabilities (flash/memory-efficient SDPA on a
    /// CUDA libtorch 2.x); null: true exactly on CUDA with <see cref="torch.nn.functional.sdpa_uses_fused_kernel"/>.
    /// Default null.</summary>
    public bool? FusedAttention { get; init; }

    /// <summary>The device trained on (CUDA adds the caching allocator's fragmentation margin). Default CPU.</summary>
    public DeviceType Device { get; init; } = DeviceType.CPU;
}

/// <summary>A memory estimate, in bytes, by component.</summary>
public sealed record MemoryPlan
{
    /// <summary>Frozen base weights (4-bit plus absmax for QLoRA).</summary>
    public long BaseWeightBytes { get; init; }
    /// <summary>Trainable adapter weights.</summary>
    public long AdapterBytes { get; init; }
    /// <summary>Gradients of the trainable weights.</summary>
    public long GradientBytes { get; init; }
    /// <summary>Optimizer state (AdamW: two moments per trainable weight, in the adapter type).</summary>
    public long OptimizerStateBytes { get; init; }
    /// <summary>Activations the forward keeps for backward (saved tensors, and logits the caller holds).</summary>
    public long ActivationBytes { get; init; }
    /// <summary>Largest short-lived working set on top (loss chunks or logits copies, one block's backward, a recomputed
    /// block under checkpointing).</summary>
    public long TransientBytes { get; init; }
    /// <summary>Allocator margin (10% of the dynamic part on CUDA, 0 on the CPU).</summary>
    public long OverheadBytes { get; init; }
    /// <summary>The estimated peak: everything above.</summary>
    public long PeakBytes => BaseWeightBytes + AdapterBytes + GradientBytes + OptimizerStateBytes + ActivationBytes + TransientBytes + OverheadBytes;
    /// <summary>What a step adds on top of the resident weights and optimizer state: activations, gradients and transients.</summary>
    public long StepBytes => ActivationBytes + GradientBytes + TransientBytes;

    /// <summary>A one-line breakdown in GiB.</summary>
    /// <returns>The text.</returns>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"peak {Gib(PeakBytes)} = base weights {Gib(BaseWeightBytes)} + adapters {Gib(AdapterBytes)} + gradients {Gib(GradientBytes)} + optimizer {Gib(OptimizerStateBytes)} + activations {Gib(ActivationBytes)} + transient {Gib(TransientBytes)} + allocator margin {Gib(OverheadBytes)}");

    internal static string Gib(long b) => string.Create(CultureInfo.InvariantCulture, $"{b / (double)(1L << 30):F2} GiB");
}

/// <summary>
/// Estimates the peak memory of a training step before training, from the model config, the method, the batch, the
/// sequence length and the precision, and refuses a run that will not fit with a clear message and suggestions
/// (smaller batch, checkpointing, chunked loss, QLoRA) instead of failing mid-run.
/// </summary>
/// <remarks>
/// The activation model follows what this library's autograd graph saves per block (N = batch·seq tokens, e = bytes of
/// the base type, a = bytes of the adapter type): each RMSNorm keeps its float32 input and row scale (4·N·H + 4·N; not in
/// block 0, whose input needs no gradient); an adapted linear keeps its input (e·N·in, once per shared input, not for
/// LoRA-FA) and z (a·N·r); attention keeps the rotated q, k and v (e·N·heads·head_dim each) and, without a fused kernel,
/// the softmax probabilities (e·batch·heads·T²); the gated MLP keeps the gate input and both factors of the product
/// (3·e·N·I); non-adapted frozen linears keep nothing. The causal-LM loss keeps the caller's logits (e·N·V) and the
/// float32 log-probabilities (4·N·V), or, chunked, only ∂h (e·N·H); the caller also holds the last hidden state (e·N·H);
/// LLaMA's RoPE tables take 2·e·batch·T·head_dim. Checkpointing keeps each block's input (e·N·H) and the CPU generator
/// state (5 KB) and recomputes one block at a time in backward. Validated against the shim's allocator counter on the CPU (tests).
/// </remarks>
public static class MemoryPlanner
{
    private static int Bytes(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        _ => throw new ArgumentException($"unsupported type {t} for a memory plan"),
    };

    // The CPU generator state each checkpoint node keeps (mt19937: 624 words plus bookkeeping, as libtorch serialises it).
    private const long CpuGeneratorStateBytes = 5056;

    private sealed record Proj(string Name, long In, long Out, string SharedInput);

    private static List<Proj> Projections(ModelConfig c)
    {
        long H = c.HiddenSize, I = c.IntermediateSize, hd = c.HeadDim;
        if (c.Family == ModelFamily.Llama)
            return new()
            {
                new("q_proj", H, c.NumAttentionHeads * hd, "attn_in"), new("k_proj", H, c.NumKeyValueHeads * hd, "attn_in"),
                new("v_proj", H, c.NumKeyValueHeads * hd, "attn_in"), new("o_proj", c.NumAttentionHeads * hd, H, "o_in"),
                new("gate_proj", H, I, "mlp_in"), new("up_proj", H, I, "mlp_in"), new("down_proj", I, H, "down_in"),
            };
        return new()
        {
            new("c_attn", H, 3 * H, "attn_in"), new("attn.c_proj", H, H, "o_in"), new("c_fc", H, I, "mlp_in"), new("mlp.c_proj", I, H, "down_in"),
        };
    }

    /// <summary>Estimates the memory of one training step (forward, backward, AdamW step).</summary>
    /// <param name="o">What to plan for.</param>
    /// <returns>The plan.</returns>
    public static MemoryPlan Estimate(MemoryPlanOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var c = o.Config ?? throw new ArgumentException("MemoryPlanOptions.Config is required");
        if (o.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(o), o.BatchSize, "MemoryPlanOptions.BatchSize must be >= 1");
        if (o.SequenceLength < 2) throw new ArgumentOutOfRangeException(nameof(o), o.SequenceLength, "MemoryPlanOptions.SequenceLength must be >= 2");
        if (o.Rank < 1) throw new ArgumentOutOfRangeException(nameof(o), o.Rank, "MemoryPlanOptions.Rank must be >= 1");
        int e = Bytes(o.BaseType), a = Bytes(o.AdapterType);
        long b = o.BatchSize, T = o.SequenceLength, N = b * T, H = c.HiddenSize, I = c.IntermediateSize, V = c.VocabSize, L = c.NumHiddenLayers;
        long heads = c.NumAttentionHeads, hd = c.HeadDim, r = o.Rank;
        var projections = Projections(c);
        var targets = o.TargetModules is null ? projections
            : projections.Where(p => o.TargetModules.Any(t => p.Name == t || p.Name.EndsWith("." + t, StringComparison.Ordinal))).ToList();
        if (targets.Count == 0) throw new ArgumentException($"none of the target modules [{string.Join(", ", o.TargetModules!)}] is a block linear of {c.ModelType} ({string.Join(", ", projections.Select(p => p.Name))})");
        bool fa = o.Method == PlannedMethod.LoraFA;
        bool fusedAttention = o.FusedAttention ?? (o.Device == DeviceType.CUDA && torch.nn.functional.sdpa_uses_fused_kernel);

        // Weights.
        long blockParams = projections.Sum(p => p.In * p.Out) + (c.Family == ModelFamily.Llama ? 2 * H : 4 * H + projections.Sum(p => p.Out));
        long embedParams = V * H + (c.Family == ModelFamily.Gpt2 ? c.MaxPositionEmbeddings * H : 0);
        long headParams = c.TieWordEmbeddings ? 0 : V * H;
        long linearParams = L * projections.Sum(p => p.In * p.Out);
        long otherParams = L * blockParams - linearParams + embedParams + headParams + H;
        long baseWeights = o.Method == PlannedMethod.QLora
            ? (long)(linearParams * (0.5 + 4.0 / 64)) + otherParams * e
            : (linearParams + otherParams) * e;
        long trainable = L * targets.Sum(p => (fa ? 0 : r * p.In) + r * p.Out + (o.Method == PlannedMethod.Dora ? p.Out : 0));
        long frozenAdapter = fa ? L * targets.Sum(p => r * p.In) * a : 0;

        // Activations per block (see the remarks).
        long perBlockExceptRms = 0;
        foreach (var shared in targets.Select(p => p.SharedInput).Distinct())
        {
            var group = targets.Where(p => p.SharedInput == shared).ToList();
            if (!fa) perBlockExceptRms += e * N * group[0].In;
            perBlockExceptRms += a * N * r * group.Count;
            if (o.Method == PlannedMethod.Dora) perBlockExceptRms += e * N * group.Sum(p => p.Out);
        }
        long attention = 3 * e * N * heads * hd + (fusedAttention ? 4L * b * heads * T + e * N * heads * hd : e * b * heads * T * T);
        long mlp = c.Family == ModelFamily.Llama ? 3 * e * N * I : e * N * I;
        long rms = 4 * N * H + 4 * N;
        long perBlock = perBlockExceptRms + attention + mlp + 2 * rms;
        long blocks = o.GradientCheckpointing ? L * e * N * H : L * perBlock - rms;
        long finalNorm = rms;
        long lossHeld = o.ChunkedCrossEntropy ? e * (N - b) * H : e * N * V + 4 * (N - b) * V;
        long lastHidden = e * N * H; // the output's LastHiddenState, held by the caller
        long rope = c.Family == ModelFamily.Llama ? 2 * e * b * T * hd : 0; // cos and sin, shared by the blocks
        long rngStates = o.GradientCheckpointing ? L * CpuGeneratorStateBytes : 0;
        long activations = blocks + finalNorm + lossHeld + lastHidden + rope + rngStates;

        // Transients: the loss's working set, one block's backward (its activations' gradients), a recomputed block.
        long chunkRows = o.CrossEntropyChunkRows > 0 ? o.CrossEntropyChunkRows : Math.Max(1, (1L << 24) / Math.Max(1, V));
        long lossTransient = o.ChunkedCrossEntropy ? Math.Min(chunkRows, N) * V * (e + 8) : (4 + 2L * e) * N * V;
        // One block's backward: gradients of its widest activations (and of the [T, T] scores without a fused kernel).
        // Under checkpointing the block is first recomputed: its activations are alive, and its backward frees them as
        // it goes, so about one activation's gradient comes on top.
        long blockBackward = o.GradientCheckpointing
            ? perBlock + e * N * Math.Max(I, H)
            : 2 * e * N * Math.Max(I, H) + (fusedAttention ? 0 : 2L * e * b * heads * T * T);
        long transient = Math.Max(lossTransient, blockBackward);

        long grads = trainable * a;
        long optimizer = 2 * trainable * a;
        long dynamic = activations + transient + grads;
        return new MemoryPlan
        {
            BaseWeightBytes = baseWeights + frozenAdapter,
            AdapterBytes = trainable * a,
            GradientBytes = grads,
            OptimizerStateBytes = optimizer,
            ActivationBytes = activations,
            TransientBytes = transient,
            OverheadBytes = o.Device == DeviceType.CUDA ? dynamic / 10 : 0,
        };
    }

    /// <summary>Memory the device can offer now: CUDA total minus what this process's allocator reserved; CPU: the
    /// operating system's available memory (Linux MemAvailable, else the runtime's view of available memory) plus the free
    /// blocks the caching CPU allocator holds (<see cref="torch.cpu.memory_cached"/>).</summary>
    /// <param name="device">The device.</param>
    /// <returns>Bytes.</returns>
    public static long AvailableBytes(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (device.type == DeviceType.CUDA)
        {
            int index = device.index < 0 ? 0 : device.index;
            long total = NativeMethods.lr_cuda_total_memory(index);
            if (total <= 0) return 0;
            return total - torch.cuda.memory_reserved(index);
        }
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    // free CPU blocks held by the caching allocator are reused before new memory is taken: they count as available
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024 + torch.cpu.memory_cached();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    /// <summary>
    /// Throws when the plan's memory beyond what is already resident does not fit in <paramref name="availableBytes"/>:
    /// the message gives the estimate and its breakdown, and suggests settings that fit (a smaller batch, gradient
    /// checkpointing, chunked cross-entropy, QLoRA), each with its own estimate.
    /// </summary>
    /// <param name="options">What was planned.</param>
    /// <param name="availableBytes">Bytes available for the plan.</param>
    /// <param name="residentBytes">Bytes of the plan already allocated (weights loaded before the check); they are
    /// subtracted from the need.</param>
    /// <returns>The plan (when it fits).</returns>
    /// <exception cref="InsufficientMemoryException">The run would not fit.</exception>
    public static MemoryPlan EnsureFits(MemoryPlanOptions options, long availableBytes, long residentBytes = 0)
    {
        var plan = Estimate(options);
        long need = plan.PeakBytes - residentBytes;
        if (need <= availableBytes) return plan;
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"training {options.Config.ModelType} with {options.Method} (r={options.Rank}), batch {options.BatchSize} × {options.SequenceLength} tokens, {options.BaseType} base needs an estimated {MemoryPlan.Gib(need)} beyond what is loaded, but {MemoryPlan.Gib(availableBytes)} is available on {options.Device} ({plan.Describe()}).");
        var tips = new List<string>();
        for (int bs = options.BatchSize / 2; bs >= 1; bs /= 2)
        {
            var p = Estimate(Copy(options, batch: bs));
            if (p.PeakBytes - residentBytes <= availableBytes)
            {
                tips.Add(string.Create(CultureInfo.InvariantCulture, $"batch size {bs} with gradient accumulation {options.BatchSize / bs} (est. {MemoryPlan.Gib(p.PeakBytes)})"));
                break;
            }
        }
        if (!options.GradientCheckpointing)
            tips.Add($"gradient checkpointing (TrainerOptions.GradientCheckpointing; est. {MemoryPlan.Gib(Estimate(Copy(options, checkpoint: true)).PeakBytes)})");
        if (!options.ChunkedCrossEntropy)
            tips.Add($"chunked cross-entropy (TrainerOptions.ChunkedCrossEntropy; est. {MemoryPlan.Gib(Estimate(Copy(options, chunked: true)).PeakBytes)})");
        if (options.Method != PlannedMethod.QLora)
            tips.Add($"QLoRA on a 4-bit base (est. {MemoryPlan.Gib(Estimate(Copy(options, method: PlannedMethod.QLora, baseType: options.BaseType == ScalarType.Float32 ? ScalarType.BFloat16 : options.BaseType)).PeakBytes)})");
        if (!options.GradientCheckpointing || !options.ChunkedCrossEntropy)
            tips.Add($"all of checkpointing and chunked loss together (est. {MemoryPlan.Gib(Estimate(Copy(options, checkpoint: true, chunked: true)).PeakBytes)})");
        if (tips.Count > 0) sb.Append(" Try: ").Append(string.Join("; ", tips)).Append('.');
        throw new InsufficientMemoryException(sb.ToString());
    }

    private static MemoryPlanOptions Copy(MemoryPlanOptions o, int? batch = null, bool? checkpoint = null, bool? chunked = null, PlannedMethod? method = null, ScalarType? baseType = null) => new()
    {
        Config = o.Config,
        Method = method ?? o.Method,
        Rank = o.Rank,
        TargetModules = o.TargetModules,
        BatchSize = batch ?? o.BatchSize,
        SequenceLength = o.SequenceLength,
        BaseType = baseType ?? o.BaseType,
        AdapterType = o.AdapterType,
        GradientCheckpointing = checkpoint ?? o.GradientCheckpointing,
        ChunkedCrossEntropy = chunked ?? o.ChunkedCrossEntropy,
        CrossEntropyChunkRows = o.CrossEntropyChunkRows,
        FusedAttention = o.FusedAttention,
        Device = o.Device,
    };
}
