using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// Splits trainable parameters into optimizer groups.
/// <para>Weight decay: parameters with fewer than 2 dimensions (biases, LayerNorm/RMSNorm weights, DoRA magnitudes) and
/// any parameter whose name contains "bias" get weight decay 0; the others get the requested decay (Hugging Face's rule,
/// decided by shape because modules are not inspected).</para>
/// <para>LoRA+ (when a ratio λ is given): the "B" parameters, whose name contains <c>lora_B</c> or
/// <c>lora_embedding_B</c>, plus every 1-D parameter (as PEFT's <c>create_loraplus_optimizer</c> does: biases and DoRA
/// magnitude vectors land in the fast group), train with λ·lr; everything else with lr. PEFT's separate embedding
/// learning rate is not modelled: its check tests the parameter rather than its module, so in PEFT that group stays empty,
/// and embedding-LoRA factors are grouped by name here (<c>lora_embedding_B</c> is a B parameter, <c>lora_embedding_A</c>
/// an A parameter). Unlike PEFT, 1-D parameters never decay (PEFT decays 1-D parameters outside norm layers).</para>
/// </summary>
public static class ParameterGroups
{
    /// <summary>Group name: parameters with weight decay (no LoRA+).</summary>
    public const string Decay = "decay";
    /// <summary>Group name: parameters without weight decay (no LoRA+).</summary>
    public const string NoDecay = "no_decay";
    /// <summary>Group name: LoRA+ A parameters with weight decay.</summary>
    public const string LoraPlusA = "loraplus_A";
    /// <summary>Group name: LoRA+ A parameters without weight decay.</summary>
    public const string LoraPlusANoDecay = "loraplus_A_no_decay";
    /// <summary>Group name: LoRA+ B parameters with weight decay (learning rate × λ).</summary>
    public const string LoraPlusB = "loraplus_B";
    /// <summary>Group name: LoRA+ B parameters without weight decay (learning rate × λ).</summary>
    public const string LoraPlusBNoDecay = "loraplus_B_no_decay";

    /// <summary>Whether a parameter is exempt from weight decay: fewer than 2 dimensions, or "bias" in its name.</summary>
    /// <param name="name">Dotted parameter name.</param>
    /// <param name="parameter">The parameter.</param>
    /// <returns>True for no decay.</returns>
    public static bool IsNoDecay(string name, nn.Parameter parameter)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(parameter);
        return parameter.dim() < 2 || name.Contains("bias", StringComparison.Ordinal);
    }

    /// <summary>Whether a parameter belongs to the LoRA+ fast (B) group: "lora_B" or "lora_embedding_B" in its name, or 1-D.</summary>
    /// <param name="name">Dotted parameter name.</param>
    /// <param name="parameter">The parameter.</param>
    /// <returns>True for the B group.</returns>
    public static bool IsLoraPlusB(string name, nn.Parameter parameter)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(parameter);
        return name.Contains("lora_B", StringComparison.Ordinal) || name.Contains("lora_embedding_B", StringComparison.Ordinal) || parameter.dim() == 1;
    }

    /// <summary>Builds the groups (only non-empty ones, each named with one of this class's constants and carrying its
    /// parameters' names). Parameters that do not require gradients are left out.</summary>
    /// <param name="parameters">Named parameters, e.g. <c>model.named_parameters()</c>.</param>
    /// <param name="learningRate">Base learning rate.</param>
    /// <param name="weightDecay">Weight decay for the decaying groups.</param>
    /// <param name="loraPlusRatio">LoRA+ ratio λ, or null for no LoRA+.</param>
    /// <returns>The groups, with explicit learning rate and weight decay.</returns>
    public static IReadOnlyList<optim.ParamGroup> Build(IEnumerable<(string name, nn.Parameter parameter)> parameters, double learningRate,
        double weightDecay = 0, double? loraPlusRatio = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (loraPlusRatio is { } r && !(r > 0)) throw new ArgumentOutOfRangeException(nameof(loraPlusRatio), r, "must be > 0");
        var buckets = new Dictionary<string, List<(string, nn.Parameter)>>();
        var order = loraPlusRatio is null
            ? new[] { Decay, NoDecay }
            : new[] { LoraPlusA, LoraPlusANoDecay, LoraPlusB, LoraPlusBNoDecay };
        foreach (var k in order) buckets[k] = new();
        foreach (var (name, p) in parameters)
        {
            if (!p.requires_grad) continue;
            bool noDecay = IsNoDecay(name, p);
            string key = loraPlusRatio is null
                ? (noDecay ? NoDecay : Decay)
                : IsLoraPlusB(name, p) ? (noDecay ? LoraPlusBNoDecay : LoraPlusB) : (noDecay ? LoraPlusANoDecay : LoraPlusA);
            buckets[key].Add((name, p));
        }
        var groups = new List<optim.ParamGroup>();
        foreach (var key in order)
        {
            var list = buckets[key];
            if (list.Count == 0) continue;
            bool decays = key is Decay or LoraPlusA or LoraPlusB;
            bool fast = key is LoraPlusB or LoraPlusBNoDecay;
            groups.Add(optim.ParamGroup.FromNamed(list, lr: fast ? learningRate * loraPlusRatio!.Value : learningRate,
                weight_decay: decays ? weightDecay : 0.0, name: key));
        }
        return groups;
    }
}
