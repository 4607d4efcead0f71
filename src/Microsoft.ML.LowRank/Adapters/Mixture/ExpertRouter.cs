using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>
/// A mixture-of-experts router (kept in float32, or float64 for a float64 model). Its parameters, under the module's
/// <c>lora_router</c> key: <c>weight</c> — [E, d] for a linear router on d features (tokens, pooled sequences,
/// instance embeddings, concatenated expert outputs, or a task embedding), or [num_tasks, E] logits for a task table;
/// <c>noise_weight</c> [E, d] for learned noise (noisy top-k); <c>task_embedding</c> [num_tasks + 1, d] for an embedded
/// task router (MOELoRA).
/// </summary>
public sealed class ExpertRouter : nn.Module
{
    /// <summary>Creates a linear router (d → E), optionally with a learned-noise projection and a task embedding.</summary>
    /// <param name="inputs">d.</param>
    /// <param name="experts">E.</param>
    /// <param name="noise">Add the noise projection.</param>
    /// <param name="taskRows">Rows of a task embedding in front (0: none).</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="device">Device.</param>
    public ExpertRouter(long inputs, long experts, bool noise, long taskRows, ScalarType dtype, Device device) : base(nameof(ExpertRouter))
    {
        Experts = experts;
        using var scope = NewDisposeScope();
        register_parameter("weight", new nn.Parameter(empty(new[] { experts, inputs }, dtype, device)));
        if (noise) register_parameter("noise_weight", new nn.Parameter(empty(new[] { experts, inputs }, dtype, device)));
        if (taskRows > 0) register_parameter("task_embedding", new nn.Parameter(empty(new[] { taskRows, inputs }, dtype, device)));
    }

    /// <summary>Creates a task table router: logits [tasks, E].</summary>
    /// <param name="tasks">Number of tasks.</param>
    /// <param name="experts">E.</param>
    /// <param name="dtype">Element type.</param>
    /// <param name="device">Device.</param>
    /// <returns>The router.</returns>
    public static ExpertRouter TaskTable(long tasks, long experts, ScalarType dtype, Device device)
    {
        var r = new ExpertRouter(1, experts, false, 0, dtype, device) { IsTable = true };
        using var scope = NewDisposeScope();
        r.register_parameter("weight", new nn.Parameter(empty(new[] { tasks, experts }, dtype, device)));
        return r;
    }

    /// <summary>Number of experts.</summary>
    public long Experts { get; }

    /// <summary>True for a task table (weight [num_tasks, E]).</summary>
    public bool IsTable { get; private init; }

    /// <summary>The router weight.</summary>
    public nn.Parameter Weight => get_parameter("weight");

    /// <summary>The noise projection, or null.</summary>
    public nn.Parameter? NoiseWeight => named_parameters(false).Where(p => p.name == "noise_weight").Select(p => p.parameter).FirstOrDefault();

    /// <summary>The task embedding, or null.</summary>
    public nn.Parameter? TaskEmbedding => named_parameters(false).Where(p => p.name == "task_embedding").Select(p => p.parameter).FirstOrDefault();

    /// <summary>Router logits [M, E] of features [M, d] (cast to the router's type).</summary>
    /// <param name="features">The features.</param>
    /// <returns>The logits.</returns>
    public Tensor Logits(Tensor features)
    {
        var w = Weight;
        var f = features.dtype == w.dtype ? features : features.to_type(w.dtype);
        return f.matmul(w.t());
    }

    /// <summary>Router logits [M, E] of task ids [M] (a table row, or the task embedding through the linear router).</summary>
    /// <param name="taskIds">Int64 ids.</param>
    /// <returns>The logits.</returns>
    public Tensor TaskLogits(Tensor taskIds)
    {
        if (IsTable) return Weight.index_select(0, taskIds);
        var emb = TaskEmbedding ?? throw new InvalidOperationException("this router has no task embedding");
        return emb.index_select(0, taskIds).matmul(Weight.t());
    }

    /// <summary>The learned noise scale [M, E] of features [M, d].</summary>
    /// <param name="features">The features.</param>
    /// <returns>σ.</returns>
    public Tensor Noise(Tensor features)
    {
        var n = NoiseWeight ?? throw new InvalidOperationException("this router has no noise projection");
        var f = features.dtype == n.dtype ? features : features.to_type(n.dtype);
        return f.matmul(n.t());
    }
}
