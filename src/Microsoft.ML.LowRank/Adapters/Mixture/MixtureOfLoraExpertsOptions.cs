using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>One auxiliary loss of a mixture-of-experts adapter and its coefficient.</summary>
/// <param name="Kind">The loss.</param>
/// <param name="Coefficient">Its weight in the training loss (0 computes nothing).</param>
public sealed record AuxiliaryLoss(AuxiliaryLossKind Kind, double Coefficient);

/// <summary>
/// A mixture of LoRA experts (methods.md §7): <c>y = base(x) + Σ_{e∈S(x)} g_e(x)·s_e·B_e·A_e·x</c> (output-space mixing) or
/// <c>base(x) + s·(Σ_e g_e B_e)(Σ_e g_e A_e)·x</c> (parameter-space mixing), with experts per Linear or spanning a
/// feed-forward block, a router reading tokens, sequences, instance embeddings, task ids or the experts' own outputs,
/// dense / top-k / top-p / switch / noisy / stochastic / relaxed-Bernoulli gating, optional always-on shared experts,
/// capacity limits, expert dropout, jitter, and auxiliary losses. Every paper of the family is a preset factory
/// (<see cref="MixLoRA"/>, <see cref="LoRAMoE"/>, <see cref="MoLA"/>, ...; <see cref="Presets"/> lists them).
/// </summary>
/// <remarks>
/// <para>peft_type <c>"MOLORA"</c> (our own: PEFT has no mixture-of-LoRA method; the file layout follows PEFT's:
/// <c>base_model.model.&lt;module&gt;.lora_A.weight</c> holds the experts' A matrices stacked along the rank axis
/// [Σ_e r_e, in], <c>lora_B.weight</c> the B matrices [out, Σ_e r_e], <c>lora_router.weight</c> the router; the config
/// records the preset and, in <c>layer_experts</c>, the expert count of every adapted module).</para>
/// <para>Router logits, softmax and gate weights are computed in float32 (float64 for a float64 model) whatever the
/// model's type. Every B starts at zero, so the adapted model starts equal to the base model. Training-time auxiliary
/// losses reach the loss through <see cref="IAdapterTrainingMethod"/>: a <see cref="Trainer"/> built on the
/// <see cref="LowRankModel"/> adds them to every micro-batch loss and reports expert load and router entropy in its
/// progress events. Router inputs that are not the layer input (task ids, instance embeddings, token masks, task types,
/// domain labels) come from <see cref="MixtureOfLoraExperts.UseRouting"/>.</para>
/// </remarks>
public sealed partial class MixtureOfLoraExpertsOptions : LowRankAdapterOptions, IAdapterTrainingMethod
{
    /// <summary>The <c>peft_type</c> of every mixture-of-LoRA-experts adapter.</summary>
    public const string PeftTypeName = "MOLORA";

    /// <inheritdoc/>
    public override string PeftType => PeftTypeName;

    /// <summary><c>preset</c>: the preset these options came from ("custom" when built by hand). Recorded in the saved
    /// config; informational. Default "custom".</summary>
    public string Preset { get; set; } = "custom";

    /// <summary><c>r</c>: the rank of every expert (unless <see cref="ExpertRanks"/>). Default 8.</summary>
    public int R { get; set; } = 8;

    /// <summary><c>expert_ranks</c>: one rank per routed expert (heterogeneous experts, MLoRE); null: all <see cref="R"/>.
    /// Default null.</summary>
    public IReadOnlyList<int>? ExpertRanks { get; set; }

    /// <summary><c>lora_alpha</c>: expert e is scaled by α/r_e (α/√r_e with rsLoRA). Default 16.</summary>
    public double LoraAlpha { get; set; } = 16;

    /// <summary><c>lora_dropout</c>: dropout on the experts' input. Default 0.05.</summary>
    public double LoraDropout { get; set; } = 0.05;

    /// <summary><c>use_rslora</c>: scale α/√r. Default false.</summary>
    public bool UseRsLora { get; set; }

    /// <summary><c>scale_experts</c>: multiply expert e by α/r_e; false: by 1 (Octavius's forward and MLoRE's experts use no
    /// scaling). Default true.</summary>
    public bool ScaleExperts { get; set; } = true;

    /// <summary><c>expert_allocation</c>: routed experts per group of consecutive blocks (MoLA: [2, 4, 6, 8] for four quarters
    /// of the model); block i of L gets entry ⌊i·G/L⌋. Resolved into <see cref="NumExpertsPerLayer"/> when the adapter is
    /// injected. Default null.</summary>
    public IReadOnlyList<int>? ExpertAllocation { get; set; }

    /// <summary><c>num_experts</c>: routed experts per adapted module. Default 4.</summary>
    public int NumExperts { get; set; } = 4;

    /// <summary><c>num_experts_per_layer</c>: routed experts per transformer block, indexed by the block number in the module
    /// name (MoLA's layer-wise allocation); blocks beyond the list use the last entry. Null: <see cref="NumExperts"/>
    /// everywhere. Default null.</summary>
    public IReadOnlyList<int>? NumExpertsPerLayer { get; set; }

    /// <summary><c>layer_experts</c>: the expert count of every adapted module, filled when the adapter is created and
    /// saved in the config; when present on load it decides each module's count. Default empty.</summary>
    public IReadOnlyDictionary<string, int> LayerExperts { get; set; } = new Dictionary<string, int>();

    /// <summary><c>top_k</c>: experts per token for top-k gating (capped by a module's expert count); also the k of the
    /// Mixtral/MoLA load-balance statistics. Default 2.</summary>
    public int TopK { get; set; } = 2;

    /// <summary><c>top_p</c>: probability mass for top-p gating. Default 0.8.</summary>
    public double TopP { get; set; } = 0.8;

    /// <summary><c>router_temperature</c>: probabilities are softmax(logits/τ) (MOLE's temperature). Default 1.</summary>
    public double RouterTemperature { get; set; } = 1;

    /// <summary><c>renormalize</c>: divide the selected top-k (or noisy top-k) probabilities by their sum. Default true.</summary>
    public bool Renormalize { get; set; } = true;

    /// <summary><c>gating</c>. Default <see cref="GatingMode.TopK"/>.</summary>
    public GatingMode Gating { get; set; } = GatingMode.TopK;

    /// <summary><c>expert_placement</c>. Default <see cref="ExpertPlacement.Linear"/>.</summary>
    public ExpertPlacement ExpertPlacement { get; set; } = ExpertPlacement.Linear;

    /// <summary><c>ffn_expert</c>: the kind of FFN expert. Default <see cref="FeedForwardExpertKind.Lora"/>.</summary>
    public FeedForwardExpertKind FeedForwardExpert { get; set; } = FeedForwardExpertKind.Lora;

    /// <summary><c>adapter_dim</c>: bottleneck size of adapter experts (PESC 64). Default 64.</summary>
    public int AdapterDim { get; set; } = 64;

    /// <summary><c>adapter_scaling</c>: σ multiplying adapter experts (PESC's moe_scaling). Default 0.25.</summary>
    public double AdapterScaling { get; set; } = 0.25;

    /// <summary><c>adapter_dropout</c>: dropout on adapter experts' input (PESC 0.1). Default 0.1.</summary>
    public double AdapterDropout { get; set; } = 0.1;

    /// <summary><c>router_input</c>. Default <see cref="RouterInput.Token"/>.</summary>
    public RouterInput RouterInput { get; set; } = RouterInput.Token;

    /// <summary><c>router_scope</c>. Default <see cref="RouterScope.Layer"/>.</summary>
    public RouterScope RouterScope { get; set; } = RouterScope.Layer;

    /// <summary><c>num_tasks</c>: number of task (or cluster, domain) ids for task routing. Default 0.</summary>
    public int NumTasks { get; set; }

    /// <summary><c>task_embedding_dim</c>: 0: the router is a table of logits [num_tasks, E] (Polytropon, MoCLE); &gt; 0:
    /// a task embedding with num_tasks + 1 rows (the extra row as in MOELoRA's code) followed by a Linear to E logits
    /// (MOELoRA 2310.18339: 64). Default 0.</summary>
    public int TaskEmbeddingDim { get; set; }

    /// <summary><c>instance_dim</c>: size of the instance features for instance routing; 0: the adapted module's input size
    /// (the model's hidden size for attention projections). Default 0.</summary>
    public int InstanceDim { get; set; }

    /// <summary><c>jitter_noise</c>: in training the router input is multiplied by U(1−ε, 1+ε). Default 0.</summary>
    public double JitterNoise { get; set; }

    /// <summary><c>expert_dropout</c>: in training, dropout (rescaled by 1/(1−p)) on the gate weights (SiRA). Default 0.</summary>
    public double ExpertDropout { get; set; }

    /// <summary><c>expert_capacity</c>: at most this many tokens of one sequence per expert, in token order
    /// (MixLoRA-switch: 32); tokens over capacity get no expert (their output is the base one). 0: no limit. Default 0.</summary>
    public int ExpertCapacity { get; set; }

    /// <summary><c>capacity_factor</c>: at most ⌈factor·N·k/E⌉ of the batch's N tokens per expert, first choices before
    /// second choices, in token order (GShard; SiRA). 0: no limit. Default 0.</summary>
    public double CapacityFactor { get; set; }

    /// <summary><c>num_shared_experts</c>: always-on experts with weight 1 next to the routed ones (MoCLE's universal
    /// expert, MLoRE's task-specific expert). Default 0.</summary>
    public int NumSharedExperts { get; set; }

    /// <summary><c>shared_expert_rank</c>: the shared experts' rank; 0: <see cref="R"/>. Default 0.</summary>
    public int SharedExpertRank { get; set; }

    /// <summary><c>router_init</c>. Default <see cref="RouterInitialization.KaimingUniform"/>.</summary>
    public RouterInitialization RouterInit { get; set; } = RouterInitialization.KaimingUniform;

    /// <summary><c>router_init_scale</c>: the std of a normal router init or the bound of a uniform one. Default 0.02.</summary>
    public double RouterInitScale { get; set; } = 0.02;

    /// <summary><c>expert_init</c>. Default <see cref="ExpertInitialization.Kaiming"/>.</summary>
    public ExpertInitialization ExpertInit { get; set; } = ExpertInitialization.Kaiming;

    /// <summary><c>expert_init_std</c>: the std of a gaussian expert init. Default 0.01.</summary>
    public double ExpertInitStd { get; set; } = 0.01;

    /// <summary><c>mix_space</c>. Default <see cref="MixingSpace.Output"/>.</summary>
    public MixingSpace MixSpace { get; set; } = MixingSpace.Output;

    /// <summary><c>stochastic_eval</c>: evaluation of stochastic routing. Default <see cref="StochasticEvaluation.Average"/>.</summary>
    public StochasticEvaluation StochasticEval { get; set; } = StochasticEvaluation.Average;

    /// <summary><c>share_lora_b</c>: all experts of a module share one B (AdaMix's shared up-projection). Default false.</summary>
    public bool ShareLoraB { get; set; }

    /// <summary><c>freeze_experts</c>: experts are not trained, only routers (MOLE over already-trained LoRAs, MoA's second
    /// stage); they are still saved. Default false.</summary>
    public bool FreezeExperts { get; set; }

    /// <summary><c>aux_losses</c>: auxiliary losses with their coefficients. Default empty.</summary>
    public IReadOnlyList<AuxiliaryLoss> AuxLosses { get; set; } = Array.Empty<AuxiliaryLoss>();

    /// <summary><c>lbc_delta</c>: δ of LoRAMoE's localized balancing constraint. Default 0.1.</summary>
    public double LbcDelta { get; set; } = 0.1;

    /// <summary><c>contrastive_temperature</c>: τ of the contrastive loss. Default 0.1.</summary>
    public double ContrastiveTemperature { get; set; } = 0.1;

    /// <summary><c>contrastive_max_samples</c>: the contrastive loss uses at most this many (token, expert) outputs per
    /// router, the first ones in token order (its cost is quadratic). Default 256.</summary>
    public int ContrastiveMaxSamples { get; set; } = 256;

    /// <summary><c>default_targets</c>: targets by model type when <see cref="LowRankAdapterOptions.TargetModules"/> is null.
    /// Default <see cref="TargetSet.All"/>.</summary>
    public TargetSet DefaultTargets { get; set; } = TargetSet.All;

    /// <summary>The global router being built during one injection (not serialised).</summary>
    internal torch.nn.Module? PendingGlobalRouter { get; set; }

    // ------------------------------------------------------------------ derived values

    /// <summary>The coefficient of an auxiliary loss (0 when not configured).</summary>
    /// <param name="kind">The loss.</param>
    /// <returns>The summed coefficient.</returns>
    public double Coefficient(AuxiliaryLossKind kind) => AuxLosses.Where(a => a.Kind == kind).Sum(a => a.Coefficient);

    /// <summary>The routed expert count of a module: <see cref="LayerExperts"/>, else <see cref="NumExpertsPerLayer"/> by
    /// block number, else <see cref="NumExperts"/>.</summary>
    /// <param name="modulePath">The module's dotted name.</param>
    /// <returns>The count.</returns>
    public int ExpertsFor(string modulePath)
    {
        ArgumentNullException.ThrowIfNull(modulePath);
        if (LayerExperts.TryGetValue(modulePath, out var n)) return n;
        if (NumExpertsPerLayer is { Count: > 0 } per)
        {
            var idx = TargetMatcher.LayerIndex(modulePath, LayersPattern)
                ?? throw new ArgumentException($"num_experts_per_layer needs a block number in the module name, and '{modulePath}' has none");
            return per[Math.Min(idx, per.Count - 1)];
        }
        return NumExperts;
    }

    /// <summary>The ranks of a module's routed experts.</summary>
    /// <param name="numExperts">The module's routed expert count.</param>
    /// <returns>One rank per expert.</returns>
    public int[] RanksFor(int numExperts)
    {
        if (ExpertRanks is { Count: > 0 } ranks)
        {
            if (ranks.Count != numExperts)
                throw new ArgumentException($"expert_ranks has {ranks.Count} entries but the module has {numExperts} experts");
            return ranks.ToArray();
        }
        return Enumerable.Repeat(R, numExperts).ToArray();
    }

    /// <summary>The scaling α/r (α/√r with rsLoRA) of an expert of rank r.</summary>
    /// <param name="rank">The expert's rank.</param>
    /// <returns>s.</returns>
    public double ScalingFor(int rank) => !ScaleExperts ? 1 : UseRsLora ? LoraAlpha / Math.Sqrt(rank) : LoraAlpha / rank;

    /// <summary>Resolves the settings that depend on the model: <see cref="ExpertAllocation"/> into
    /// <see cref="NumExpertsPerLayer"/> (by the number of blocks), and an unset <see cref="InstanceDim"/> of a global
    /// instance router into the hidden size.</summary>
    /// <param name="model">The model the adapter is injected into.</param>
    protected internal override void PrepareForModel(Models.PretrainedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        int layers = model.Config.NumHiddenLayers;
        if (ExpertAllocation is { Count: > 0 } groups && NumExpertsPerLayer is null && layers > 0)
            NumExpertsPerLayer = Enumerable.Range(0, layers).Select(i => groups[(int)((long)i * groups.Count / layers)]).ToArray();
        if (RouterInput == RouterInput.Instance && RouterScope == RouterScope.Global && InstanceDim == 0)
            InstanceDim = (int)model.Config.HiddenSize;
    }

    /// <summary>True when the adapter can be folded into the base weights exactly: stochastic routing (its evaluation
    /// form is one LoRA), or a relaxed-Bernoulli task router with a single task.</summary>
    public bool IsMergeable => MixSpace == MixingSpace.Parameter
        && (Gating == GatingMode.Stochastic || (Gating == GatingMode.RelaxedBernoulli && NumTasks == 1));

    // ------------------------------------------------------------------ validation

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        void Check(bool ok, string message)
        {
            if (!ok) throw new ArgumentException(message);
        }
        Check(R > 0, $"r must be positive, got {R}");
        Check(NumExperts > 0, $"num_experts must be positive, got {NumExperts}");
        Check(double.IsFinite(LoraAlpha), $"lora_alpha must be finite, got {LoraAlpha}");
        Check(LoraDropout >= 0 && LoraDropout < 1, $"lora_dropout must be in [0, 1), got {LoraDropout}");
        Check(AdapterDropout >= 0 && AdapterDropout < 1, $"adapter_dropout must be in [0, 1), got {AdapterDropout}");
        Check(ExpertDropout >= 0 && ExpertDropout < 1, $"expert_dropout must be in [0, 1), got {ExpertDropout}");
        Check(TopK > 0, $"top_k must be positive, got {TopK}");
        Check(TopP > 0 && TopP <= 1, $"top_p must be in (0, 1], got {TopP}");
        Check(RouterTemperature > 0 && double.IsFinite(RouterTemperature), $"router_temperature must be positive, got {RouterTemperature}");
        Check(JitterNoise >= 0 && JitterNoise < 1, $"jitter_noise must be in [0, 1), got {JitterNoise}");
        Check(ExpertCapacity >= 0, $"expert_capacity must be non-negative, got {ExpertCapacity}");
        Check(CapacityFactor >= 0 && double.IsFinite(CapacityFactor), $"capacity_factor must be non-negative, got {CapacityFactor}");
        Check(ExpertCapacity == 0 || CapacityFactor == 0, "set expert_capacity (per sequence) or capacity_factor (per batch), not both");
        Check(NumSharedExperts >= 0, $"num_shared_experts must be non-negative, got {NumSharedExperts}");
        Check(SharedExpertRank >= 0, $"shared_expert_rank must be non-negative, got {SharedExpertRank}");
        Check(AdapterDim > 0, $"adapter_dim must be positive, got {AdapterDim}");
        Check(NumTasks >= 0 && TaskEmbeddingDim >= 0 && InstanceDim >= 0, "num_tasks, task_embedding_dim and instance_dim must be non-negative");
        Check(RouterInitScale >= 0 && ExpertInitStd >= 0, "router_init_scale and expert_init_std must be non-negative");
        Check(LbcDelta >= 0 && LbcDelta <= 1, $"lbc_delta must be in [0, 1], got {LbcDelta}");
        Check(ContrastiveTemperature > 0, $"contrastive_temperature must be positive, got {ContrastiveTemperature}");
        Check(ContrastiveMaxSamples >= 2, $"contrastive_max_samples must be at least 2, got {ContrastiveMaxSamples}");
        if (ExpertAllocation is { } alloc)
        {
            Check(alloc.Count > 0 && alloc.All(n => n > 0), "expert_allocation must be a non-empty list of positive counts");
            Check(ExpertRanks is null, "expert_ranks (one rank per expert) cannot be combined with expert_allocation");
        }
        if (NumExpertsPerLayer is { } per)
        {
            Check(per.Count > 0 && per.All(n => n > 0), "num_experts_per_layer must be a non-empty list of positive counts");
            Check(ExpertRanks is null, "expert_ranks (one rank per expert) cannot be combined with num_experts_per_layer");
        }
        foreach (var (k, v) in LayerExperts) Check(v > 0, $"layer_experts['{k}'] must be positive, got {v}");
        if (ExpertRanks is { } ranks)
        {
            Check(ranks.Count == NumExperts, $"expert_ranks needs one rank per expert: {ranks.Count} ranks for {NumExperts} experts");
            Check(ranks.All(r => r > 0), "expert_ranks must be positive");
        }
        bool equalRanks = ExpertRanks is null || ExpertRanks.Distinct().Count() == 1;
        foreach (var a in AuxLosses)
            Check(double.IsFinite(a.Coefficient) && a.Coefficient >= 0, $"the coefficient of {AuxName(a.Kind)} must be finite and non-negative, got {a.Coefficient}");
        switch (Gating)
        {
            case GatingMode.Stochastic:
                Check(MixSpace == MixingSpace.Parameter, "stochastic gating mixes in parameter space: set mix_space = \"parameter\"");
                Check(RouterInput == RouterInput.None, "stochastic gating has no router: set router_input = \"none\"");
                break;
            case GatingMode.RelaxedBernoulli:
                Check(RouterInput == RouterInput.Task && TaskEmbeddingDim == 0, "relaxed_bernoulli gating is Polytropon's task router: set router_input = \"task\" and task_embedding_dim = 0");
                break;
            default:
                Check(RouterInput != RouterInput.None, $"gating '{Names.Gating[(int)Gating]}' needs a router: router_input \"none\" only goes with stochastic gating");
                break;
        }
        if (MixSpace == MixingSpace.Parameter)
        {
            Check(Gating is GatingMode.Stochastic or GatingMode.RelaxedBernoulli or GatingMode.Dense,
                "parameter-space mixing needs dense, relaxed_bernoulli or stochastic gating (one weight per expert and example)");
            Check(equalRanks, "parameter-space mixing needs experts of equal rank");
            Check(ExpertPlacement == ExpertPlacement.Linear, "parameter-space mixing works on per-Linear experts");
            Check(Gating == GatingMode.Stochastic || RouterInput is RouterInput.Task or RouterInput.Instance or RouterInput.Sequence,
                "parameter-space mixing needs one routing decision per example (router_input task, instance or sequence)");
            Check(NumSharedExperts == 0, "shared experts are not supported with parameter-space mixing");
        }
        Check(!ShareLoraB || equalRanks, "share_lora_b needs experts of equal rank");
        Check(!ShareLoraB || NumSharedExperts == 0, "share_lora_b cannot be combined with shared experts");
        if (RouterInput == RouterInput.Task) Check(NumTasks > 0, "router_input \"task\" needs num_tasks > 0");
        if (RouterScope == RouterScope.Global)
            Check(RouterInput is RouterInput.Instance or RouterInput.Task, "a global router reads the routing context: router_input must be \"instance\" or \"task\"");
        if (RouterInput == RouterInput.ExpertOutputs)
            Check(Gating is GatingMode.Dense or GatingMode.TopK, "a router over the experts' outputs supports dense or top_k gating");
        if (ExpertCapacity > 0 || CapacityFactor > 0)
            Check(Gating is GatingMode.TopK or GatingMode.Switch or GatingMode.NoisyTopK or GatingMode.TopP, "a capacity limit needs sparse gating (top_k, switch, noisy_top_k or top_p)");
        if (ExpertCapacity > 0) Check(RouterInput == RouterInput.Token, "expert_capacity counts tokens: it needs router_input \"token\"");
        if (ExpertPlacement == ExpertPlacement.FeedForward)
        {
            Check(MixSpace == MixingSpace.Output, "FFN experts mix in output space");
            Check(RouterInput is not RouterInput.ExpertOutputs and not RouterInput.None, "FFN experts need a router on the block input, the routing context or task ids");
            Check(NumSharedExperts == 0, "shared experts are not supported with FFN experts");
            Check(!ShareLoraB, "share_lora_b is not supported with FFN experts");
        }
        if (Coefficient(AuxiliaryLossKind.LocalizedBalance) > 0)
            Check(NumExperts % 2 == 0 && NumExpertsPerLayer is null && ExpertAllocation is null, "LoRAMoE's localized balancing constraint splits the experts in two halves: num_experts must be even");
        if (Coefficient(AuxiliaryLossKind.RouterCrossEntropy) > 0)
            Check(RouterInput is RouterInput.Sequence or RouterInput.Instance, "the router cross-entropy (MoA) supervises a sequence-level router: router_input must be \"sequence\" or \"instance\"");
        if (Coefficient(AuxiliaryLossKind.Contrastive) > 0)
            Check(MixSpace == MixingSpace.Output && ExpertPlacement == ExpertPlacement.Linear && RouterInput != RouterInput.ExpertOutputs
                && Gating is GatingMode.TopK or GatingMode.Switch or GatingMode.NoisyTopK or GatingMode.TopP,
                "the contrastive loss compares the outputs of sparsely selected per-Linear experts (output-space mixing, top_k/switch/noisy_top_k/top_p gating)");
    }

    // ------------------------------------------------------------------ targets

    /// <inheritdoc/>
    public override ModuleSelector? DefaultTargetModules(string modelType)
    {
        bool ffnAdapters = ExpertPlacement == ExpertPlacement.FeedForward && FeedForwardExpert == FeedForwardExpertKind.Adapter;
        switch (modelType)
        {
            case "gpt2":
                if (ffnAdapters) return ModuleSelector.FromNames("c_fc", "mlp.c_proj");
                return DefaultTargets switch
                {
                    TargetSet.Attention => ModuleSelector.FromNames("c_attn", "attn.c_proj"),
                    TargetSet.FeedForward => ModuleSelector.FromNames("c_fc", "mlp.c_proj"),
                    TargetSet.QueryValue => ModuleSelector.FromNames("c_attn"),
                    _ => ModuleSelector.FromNames("c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"),
                };
            case "llama" or "mistral" or "qwen2" or "gemma":
                if (ffnAdapters) return ModuleSelector.FromNames("gate_proj", "down_proj");
                return DefaultTargets switch
                {
                    TargetSet.Attention => ModuleSelector.FromNames("q_proj", "k_proj", "v_proj", "o_proj"),
                    TargetSet.FeedForward => ModuleSelector.FromNames("gate_proj", "up_proj", "down_proj"),
                    TargetSet.QueryValue => ModuleSelector.FromNames("q_proj", "v_proj"),
                    _ => ModuleSelector.FromNames("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                };
            case "bert" or "roberta":
                // FFN experts need a gate/up/down or c_fc/c_proj block; BERT's MLP is split across two modules.
                if (ExpertPlacement == ExpertPlacement.FeedForward) return null;
                return DefaultTargets switch
                {
                    TargetSet.Attention => ModuleSelector.FromNames("query", "key", "value", "attention.output.dense"),
                    TargetSet.FeedForward => ModuleSelector.FromRegex(@".*\.layer\.\d+\.(intermediate|output)\.dense"),
                    TargetSet.QueryValue => ModuleSelector.FromNames("query", "value"),
                    _ => ModuleSelector.FromRegex(@".*\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"),
                };
            default:
                return null;
        }
    }

    // ------------------------------------------------------------------ layers

    /// <inheritdoc/>
    protected internal override AdapterLayer CreateLayer(torch.nn.Module baseLayer) => new MixtureOfLoraExpertsLayer(baseLayer);

    /// <inheritdoc/>
    protected internal override bool IsCompatibleLayer(AdapterLayer layer) => layer is MixtureOfLoraExpertsLayer;

    /// <inheritdoc/>
    protected internal override void AddAdapter(AdapterLayer layer, string adapterName, string modulePath, AdapterCreationContext context)
    {
        var moe = layer as MixtureOfLoraExpertsLayer
            ?? throw new ArgumentException($"mixture-of-LoRA-experts adapters go into a MixtureOfLoraExpertsLayer, not a {layer.name}", nameof(layer));
        ArgumentNullException.ThrowIfNull(context);
        var role = ExpertPlacement == ExpertPlacement.FeedForward ? FeedForwardRoles.Of(modulePath) : ExpertRole.Linear;
        int experts = role == ExpertRole.Plain ? 1 : ExpertsFor(modulePath);
        moe.AddExperts(adapterName, this, modulePath, role, experts, context);
        if (role != ExpertRole.Plain)
        {
            var d = new Dictionary<string, int>(LayerExperts, StringComparer.Ordinal) { [modulePath] = experts };
            LayerExperts = d;
        }
    }

    /// <inheritdoc/>
    protected override void CloneCollections()
    {
        ExpertRanks = ExpertRanks?.ToArray();
        NumExpertsPerLayer = NumExpertsPerLayer?.ToArray();
        ExpertAllocation = ExpertAllocation?.ToArray();
        LayerExperts = new Dictionary<string, int>(LayerExperts, StringComparer.Ordinal);
        AuxLosses = AuxLosses.ToArray();
        PendingGlobalRouter = null;
    }

    // ------------------------------------------------------------------ training

    /// <summary>Adds the adapter's training hook: auxiliary losses added to every micro-batch loss, routing statistics
    /// (expert load histogram, router entropy, auxiliary loss) in step reports.</summary>
    /// <param name="setup">The trainer being built.</param>
    public void ConfigureTraining(AdapterTrainingSetup setup)
    {
        ArgumentNullException.ThrowIfNull(setup);
        setup.Hooks.Add(new MixtureTrainingHook(setup.Model, setup.AdapterName, this));
    }

    // ------------------------------------------------------------------ JSON

    internal static class Names
    {
        public static readonly string[] Placement = { "linear", "ffn" };
        public static readonly string[] FfnKind = { "lora", "adapter" };
        public static readonly string[] Input = { "token", "sequence", "instance", "task", "expert_outputs", "none" };
        public static readonly string[] Scope = { "layer", "global" };
        public static readonly string[] Gating = { "dense", "top_k", "top_p", "switch", "noisy_top_k", "stochastic", "relaxed_bernoulli" };
        public static readonly string[] Mix = { "output", "parameter" };
        public static readonly string[] StochEval = { "average", "sum" };
        public static readonly string[] RouterInit = { "kaiming_uniform", "normal", "uniform", "zeros" };
        public static readonly string[] ExpertInit = { "kaiming", "kaiming_stacked", "gaussian" };
        public static readonly string[] Targets = { "attention", "ffn", "all", "query_value" };
        public static readonly string[] Aux = { "load_balance_mixtral", "load_balance_switch", "load_balance_mola", "load_balance_pesc", "z_loss", "lbc", "contrastive", "gate_balance", "router_ce" };
    }

    /// <summary>The JSON name of an auxiliary loss kind.</summary>
    /// <param name="kind">The kind.</param>
    /// <returns>E.g. "load_balance_mixtral".</returns>
    public static string AuxName(AuxiliaryLossKind kind) => Names.Aux[(int)kind];

    private static T Parse<T>(JsonObject o, string key, string[] names, T fallback) where T : struct, Enum
    {
        var s = Str(o, key);
        if (s is null) return fallback;
        var i = Array.IndexOf(names, s);
        if (i < 0) throw new FormatException($"{key}: unknown value '{s}' (expected one of: {string.Join(", ", names)})");
        return (T)Enum.ToObject(typeof(T), i);
    }

    private static JsonArray IntArray(IEnumerable<int> values) => new(values.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray());

    private static int[]? IntList(JsonObject o, string key) => o[key] switch
    {
        null => null,
        JsonArray a => a.Select(v => Int(v, key)).ToArray(),
        var v => throw new FormatException($"{key}: expected a list of integers, got {v.ToJsonString()}"),
    };

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["preset"] = Preset;
        o["r"] = R;
        o["expert_ranks"] = ExpertRanks is null ? null : IntArray(ExpertRanks);
        o["lora_alpha"] = NumberNode(LoraAlpha);
        o["lora_dropout"] = LoraDropout;
        o["use_rslora"] = UseRsLora;
        o["scale_experts"] = ScaleExperts;
        o["expert_allocation"] = ExpertAllocation is null ? null : IntArray(ExpertAllocation);
        o["num_experts"] = NumExperts;
        o["num_experts_per_layer"] = NumExpertsPerLayer is null ? null : IntArray(NumExpertsPerLayer);
        var le = new JsonObject();
        foreach (var (k, v) in LayerExperts.OrderBy(kv => kv.Key, StringComparer.Ordinal)) le[k] = v;
        o["layer_experts"] = le;
        o["top_k"] = TopK;
        o["top_p"] = TopP;
        o["router_temperature"] = NumberNode(RouterTemperature);
        o["renormalize"] = Renormalize;
        o["gating"] = Names.Gating[(int)Gating];
        o["expert_placement"] = Names.Placement[(int)ExpertPlacement];
        o["ffn_expert"] = Names.FfnKind[(int)FeedForwardExpert];
        o["adapter_dim"] = AdapterDim;
        o["adapter_scaling"] = NumberNode(AdapterScaling);
        o["adapter_dropout"] = AdapterDropout;
        o["router_input"] = Names.Input[(int)RouterInput];
        o["router_scope"] = Names.Scope[(int)RouterScope];
        o["num_tasks"] = NumTasks;
        o["task_embedding_dim"] = TaskEmbeddingDim;
        o["instance_dim"] = InstanceDim;
        o["jitter_noise"] = JitterNoise;
        o["expert_dropout"] = ExpertDropout;
        o["expert_capacity"] = ExpertCapacity;
        o["capacity_factor"] = CapacityFactor;
        o["num_shared_experts"] = NumSharedExperts;
        o["shared_expert_rank"] = SharedExpertRank;
        o["router_init"] = Names.RouterInit[(int)RouterInit];
        o["router_init_scale"] = RouterInitScale;
        o["expert_init"] = Names.ExpertInit[(int)ExpertInit];
        o["expert_init_std"] = ExpertInitStd;
        o["mix_space"] = Names.Mix[(int)MixSpace];
        o["stochastic_eval"] = Names.StochEval[(int)StochasticEval];
        o["share_lora_b"] = ShareLoraB;
        o["freeze_experts"] = FreezeExperts;
        o["aux_losses"] = new JsonArray(AuxLosses.Select(a => (JsonNode?)new JsonObject { ["kind"] = AuxName(a.Kind), ["coef"] = a.Coefficient }).ToArray());
        o["lbc_delta"] = LbcDelta;
        o["contrastive_temperature"] = ContrastiveTemperature;
        o["contrastive_max_samples"] = ContrastiveMaxSamples;
        o["default_targets"] = Names.Targets[(int)DefaultTargets];
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        Preset = Str(o, "preset") ?? "custom";
        if (o["r"] is { } r) R = Int(r, "r");
        ExpertRanks = IntList(o, "expert_ranks");
        LoraAlpha = Num(o, "lora_alpha") ?? LoraAlpha;
        LoraDropout = Num(o, "lora_dropout") ?? LoraDropout;
        UseRsLora = Bool(o, "use_rslora") ?? false;
        ScaleExperts = Bool(o, "scale_experts") ?? true;
        ExpertAllocation = IntList(o, "expert_allocation");
        if (o["num_experts"] is { } ne) NumExperts = Int(ne, "num_experts");
        NumExpertsPerLayer = IntList(o, "num_experts_per_layer");
        var le = new Dictionary<string, int>(StringComparer.Ordinal);
        if (o["layer_experts"] is JsonObject leo) foreach (var (k, v) in leo) le[k] = Int(v, "layer_experts." + k);
        else if (o["layer_experts"] is { } bad) throw new FormatException($"layer_experts: expected an object, got {bad.ToJsonString()}");
        LayerExperts = le;
        if (o["top_k"] is { } tk) TopK = Int(tk, "top_k");
        TopP = Num(o, "top_p") ?? TopP;
        RouterTemperature = Num(o, "router_temperature") ?? RouterTemperature;
        Renormalize = Bool(o, "renormalize") ?? Renormalize;
        Gating = Parse(o, "gating", Names.Gating, Gating);
        ExpertPlacement = Parse(o, "expert_placement", Names.Placement, ExpertPlacement);
        FeedForwardExpert = Parse(o, "ffn_expert", Names.FfnKind, FeedForwardExpert);
        if (o["adapter_dim"] is { } ad) AdapterDim = Int(ad, "adapter_dim");
        AdapterScaling = Num(o, "adapter_scaling") ?? AdapterScaling;
        AdapterDropout = Num(o, "adapter_dropout") ?? AdapterDropout;
        RouterInput = Parse(o, "router_input", Names.Input, RouterInput);
        RouterScope = Parse(o, "router_scope", Names.Scope, RouterScope);
        if (o["num_tasks"] is { } nt) NumTasks = Int(nt, "num_tasks");
        if (o["task_embedding_dim"] is { } te) TaskEmbeddingDim = Int(te, "task_embedding_dim");
        if (o["instance_dim"] is { } id) InstanceDim = Int(id, "instance_dim");
        JitterNoise = Num(o, "jitter_noise") ?? JitterNoise;
        ExpertDropout = Num(o, "expert_dropout") ?? ExpertDropout;
        if (o["expert_capacity"] is { } ec) ExpertCapacity = Int(ec, "expert_capacity");
        CapacityFactor = Num(o, "capacity_factor") ?? CapacityFactor;
        if (o["num_shared_experts"] is { } ns) NumSharedExperts = Int(ns, "num_shared_experts");
        if (o["shared_expert_rank"] is { } sr) SharedExpertRank = Int(sr, "shared_expert_rank");
        RouterInit = Parse(o, "router_init", Names.RouterInit, RouterInit);
        RouterInitScale = Num(o, "router_init_scale") ?? RouterInitScale;
        ExpertInit = Parse(o, "expert_init", Names.ExpertInit, ExpertInit);
        ExpertInitStd = Num(o, "expert_init_std") ?? ExpertInitStd;
        MixSpace = Parse(o, "mix_space", Names.Mix, MixSpace);
        StochasticEval = Parse(o, "stochastic_eval", Names.StochEval, StochasticEval);
        ShareLoraB = Bool(o, "share_lora_b") ?? false;
        FreezeExperts = Bool(o, "freeze_experts") ?? false;
        var aux = new List<AuxiliaryLoss>();
        switch (o["aux_losses"])
        {
            case null: break;
            case JsonArray arr:
                foreach (var item in arr)
                {
                    if (item is not JsonObject ao) throw new FormatException($"aux_losses: expected objects {{\"kind\": ..., \"coef\": ...}}, got {item?.ToJsonString() ?? "null"}");
                    var kind = Str(ao, "kind") ?? throw new FormatException("aux_losses: an entry has no kind");
                    var i = Array.IndexOf(Names.Aux, kind);
                    if (i < 0) throw new FormatException($"aux_losses: unknown kind '{kind}' (expected one of: {string.Join(", ", Names.Aux)})");
                    aux.Add(new AuxiliaryLoss((AuxiliaryLossKind)i, Num(ao, "coef") ?? throw new FormatException($"aux_losses: '{kind}' has no coef")));
                }
                break;
            case var v: throw new FormatException($"aux_losses: expected a list, got {v.ToJsonString()}");
        }
        AuxLosses = aux;
        LbcDelta = Num(o, "lbc_delta") ?? LbcDelta;
        ContrastiveTemperature = Num(o, "contrastive_temperature") ?? ContrastiveTemperature;
        if (o["contrastive_max_samples"] is { } cm) ContrastiveMaxSamples = Int(cm, "contrastive_max_samples");
        DefaultTargets = Parse(o, "default_targets", Names.Targets, DefaultTargets);
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Preset}: {Names.Placement[(int)ExpertPlacement]} experts, E={NumExperts}, r={R}, alpha={LoraAlpha}, gating={Names.Gating[(int)Gating]}, router={Names.Input[(int)RouterInput]}");
}
