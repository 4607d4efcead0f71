namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>How MoLA allocates experts to the four quarters of the model's blocks (2402.08562).</summary>
public enum MolaAllocation
{
    /// <summary>MoLA-▽ (inverted triangle, the paper's best and the README default): 2, 4, 6, 8 experts from the lowest
    /// quarter to the highest.</summary>
    InvertedTriangle,
    /// <summary>MoLA-△: 8, 6, 4, 2.</summary>
    Triangle,
    /// <summary>MoLA-◇ (middle-heavy): 3, 7, 7, 3.</summary>
    Diamond,
    /// <summary>MoLA-□ (uniform): 5, 5, 5, 5.</summary>
    Square,
}

/// <summary>A named preset of <see cref="MixtureOfLoraExpertsOptions"/>: one paper's method with its defaults.</summary>
/// <param name="Name">The registry name (<c>--method NAME</c>).</param>
/// <param name="Paper">Short paper reference (title and arXiv id).</param>
/// <param name="Description">One line: what the preset configures.</param>
/// <param name="Create">Creates the options with the paper's defaults.</param>
public sealed record MixturePreset(string Name, string Paper, string Description, Func<MixtureOfLoraExpertsOptions> Create);

public sealed partial class MixtureOfLoraExpertsOptions
{
    private static AuxiliaryLoss[] Aux(params (AuxiliaryLossKind kind, double coef)[] items)
        => items.Where(i => i.coef > 0).Select(i => new AuxiliaryLoss(i.kind, i.coef)).ToArray();

    /// <summary>MixLoRA (2404.15159; TUDB-Labs/MixLoRA, MoE-PEFT): E FFN experts, expert e = the frozen FFN with its own
    /// LoRA on gate/up/down, one router per block on the FFN input (N(0, 0.02²) init), softmax → top-2 → renormalise,
    /// Mixtral load balance (code default 0.001; the README's examples use 0.01); plain LoRA on attention q/k/v/o.
    /// Template: E=8, k=2, r=16, α=32, dropout 0.05.</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="topK">k.</param>
    /// <param name="r">Rank of every expert and of the attention LoRA.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">LoRA dropout.</param>
    /// <param name="auxLossCoef">Load-balance coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MixLoRA(int numExperts = 8, int topK = 2, int r = 16, double alpha = 32, double dropout = 0.05, double auxLossCoef = 0.001) => new()
    {
        Preset = "mixlora", ExpertPlacement = ExpertPlacement.FeedForward, FeedForwardExpert = FeedForwardExpertKind.Lora,
        NumExperts = numExperts, TopK = topK, R = r, LoraAlpha = alpha, LoraDropout = dropout,
        Gating = GatingMode.TopK, RouterInput = RouterInput.Token, RouterInit = RouterInitialization.Normal, RouterInitScale = 0.02,
        DefaultTargets = TargetSet.All, AuxLosses = Aux((AuxiliaryLossKind.MixtralLoadBalance, auxLossCoef)),
    };

    /// <summary>MixLoRA-dynamic (MoE-PEFT "mixlora-dynamic"): MixLoRA with top-p routing (p = 0.8, weights not
    /// renormalised) and the load balance computed on the top-p selection.</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="topP">p.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="auxLossCoef">Load-balance coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MixLoRADynamic(int numExperts = 8, double topP = 0.8, int r = 16, double alpha = 32, double dropout = 0.05, double auxLossCoef = 0.001)
    {
        var o = MixLoRA(numExperts, 2, r, alpha, dropout, auxLossCoef);
        o.Preset = "mixlora-dynamic";
        o.Gating = GatingMode.TopP;
        o.TopP = topP;
        o.Renormalize = false;
        return o;
    }

    /// <summary>MixLoRA-switch (MoE-PEFT "mixlora-switch"): top-1 weighted by its probability, capacity 32 tokens per
    /// sequence and expert, router init N(0, 1), jitter 0.01, Switch load balance 0.001 and router z-loss 0.001 (the README
    /// says 0.01).</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="expertCapacity">Tokens per sequence and expert.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="auxLossCoef">Load-balance coefficient.</param>
    /// <param name="zLossCoef">z-loss coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MixLoRASwitch(int numExperts = 8, int expertCapacity = 32, int r = 16, double alpha = 32, double dropout = 0.05,
        double auxLossCoef = 0.001, double zLossCoef = 0.001)
    {
        var o = MixLoRA(numExperts, 1, r, alpha, dropout, 0);
        o.Preset = "mixlora-switch";
        o.Gating = GatingMode.Switch;
        o.Renormalize = false;
        o.ExpertCapacity = expertCapacity;
        o.RouterInitScale = 1.0;
        o.JitterNoise = 0.01;
        o.AuxLosses = Aux((AuxiliaryLossKind.SwitchLoadBalance, auxLossCoef), (AuxiliaryLossKind.ZLoss, zLossCoef));
        return o;
    }

    /// <summary>LoRAMoE (2312.09979; Ablustrund/LoRAMoE): N LoRA experts on each FFN linear, a kaiming-initialised router per
    /// Linear, dense softmax over all experts, localized balancing constraint (LBC) with δ and β. The released script sets
    /// N=8, r=4, α=32, dropout 0.05 and δ = β = 0 (LBC off); the paper's values are about 0.1 [RECALL].</summary>
    /// <param name="numExperts">N.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="lbcWeight">β (the LBC coefficient).</param>
    /// <param name="lbcDelta">δ.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions LoRAMoE(int numExperts = 8, int r = 4, double alpha = 32, double dropout = 0.05, double lbcWeight = 0, double lbcDelta = 0) => new()
    {
        Preset = "loramoe", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numExperts, R = r, LoraAlpha = alpha, LoraDropout = dropout,
        Gating = GatingMode.Dense, RouterInput = RouterInput.Token, RouterInit = RouterInitialization.KaimingUniform,
        DefaultTargets = TargetSet.FeedForward, LbcDelta = lbcDelta, AuxLosses = Aux((AuxiliaryLossKind.LocalizedBalance, lbcWeight)),
    };

    /// <summary>The per-quarter expert counts of a MoLA allocation.</summary>
    /// <param name="allocation">The allocation.</param>
    /// <returns>Four counts, lowest blocks first.</returns>
    public static int[] MolaGroups(MolaAllocation allocation) => allocation switch
    {
        MolaAllocation.InvertedTriangle => new[] { 2, 4, 6, 8 },
        MolaAllocation.Triangle => new[] { 8, 6, 4, 2 },
        MolaAllocation.Diamond => new[] { 3, 7, 7, 3 },
        MolaAllocation.Square => new[] { 5, 5, 5, 5 },
        _ => throw new ArgumentOutOfRangeException(nameof(allocation), allocation, "unknown MoLA allocation"),
    };

    /// <summary>MoLA (2402.08562; GCYZSL/MoLA): LoRA experts on every projection (q/k/v/o/gate/up/down), a kaiming router
    /// per Linear, softmax → top-2 → renormalise, layer-wise expert counts by quarter of the model (▽ 2-4-6-8 by default;
    /// △, ◇, □ as <see cref="MolaAllocation"/>), MoLA's load balance with coefficient 0.001 (enabled in the instruction
    /// script). README: r=8, α=16, dropout 0.05.</summary>
    /// <param name="allocation">The layer-wise allocation.</param>
    /// <param name="topK">k.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="auxLossCoef">Load-balance coefficient (0: off, as in the ScienceQA script).</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MoLA(MolaAllocation allocation = MolaAllocation.InvertedTriangle, int topK = 2, int r = 8, double alpha = 16, double dropout = 0.05, double auxLossCoef = 0.001) => new()
    {
        Preset = allocation switch
        {
            MolaAllocation.InvertedTriangle => "mola",
            MolaAllocation.Triangle => "mola-8642",
            MolaAllocation.Diamond => "mola-3773",
            _ => "mola-5555",
        },
        ExpertPlacement = ExpertPlacement.Linear, ExpertAllocation = MolaGroups(allocation), NumExperts = MolaGroups(allocation).Max(),
        TopK = topK, R = r, LoraAlpha = alpha, LoraDropout = dropout, Gating = GatingMode.TopK, RouterInput = RouterInput.Token,
        RouterInit = RouterInitialization.KaimingUniform, DefaultTargets = TargetSet.All, AuxLosses = Aux((AuxiliaryLossKind.MolaLoadBalance, auxLossCoef)),
    };

    /// <summary>MoELoRA (2402.12851, contrastive; no public code): E LoRA experts, top-2, load balance plus a contrastive
    /// loss that makes the experts' outputs distinct. E=8 and top-2 are from the paper; r, α, targets (q, v) and the
    /// coefficients (0.01, 0.1, τ = 0.1) are our choices [RECALL].</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="topK">k.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="auxLossCoef">Load-balance coefficient.</param>
    /// <param name="contrastiveCoef">Contrastive coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MoELoRA(int numExperts = 8, int topK = 2, int r = 4, double alpha = 8, double dropout = 0.05, double auxLossCoef = 0.01, double contrastiveCoef = 0.1) => new()
    {
        Preset = "moelora", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numExperts, TopK = topK, R = r, LoraAlpha = alpha, LoraDropout = dropout,
        Gating = GatingMode.TopK, RouterInput = RouterInput.Token, DefaultTargets = TargetSet.QueryValue,
        AuxLosses = Aux((AuxiliaryLossKind.MixtralLoadBalance, auxLossCoef), (AuxiliaryLossKind.Contrastive, contrastiveCoef)),
    };

    /// <summary>MOELoRA (2310.18339, multi-task medical; liuqidong07/MOELoRA-peft): a LoRA of total rank r split into E
    /// experts of rank r/E, a task-conditioned dense gate per Linear (a task embedding of num_tasks + 1 rows and dimension
    /// 64, then Linear → softmax), A ~ N(0, 0.01²), scaling α/r of the total rank. Script: r=16, E=8, dropout 0.1, every
    /// linear; α=32 and 16 tasks (PromptCBLUE) are our defaults. In the estimators the task id of each row comes from
    /// <c>LowRankTrainerOptions.TaskColumnName</c> (required).</summary>
    /// <param name="numTasks">Number of tasks.</param>
    /// <param name="numExperts">E.</param>
    /// <param name="totalRank">r (split over the experts).</param>
    /// <param name="alpha">α (scaling α/r of the total rank).</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="taskEmbeddingDim">Task embedding size.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MultiTaskMoELoRA(int numTasks = 16, int numExperts = 8, int totalRank = 16, double alpha = 32, double dropout = 0.1, int taskEmbeddingDim = 64)
    {
        if (numExperts <= 0 || totalRank % numExperts != 0) throw new ArgumentException($"MOELoRA splits the rank over the experts: r = {totalRank} must be a multiple of E = {numExperts}");
        int r = totalRank / numExperts;
        return new()
        {
            Preset = "mmoelora", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numExperts, R = r,
            LoraAlpha = alpha * r / totalRank, LoraDropout = dropout, Gating = GatingMode.Dense, RouterInput = RouterInput.Task,
            NumTasks = numTasks, TaskEmbeddingDim = taskEmbeddingDim, ExpertInit = ExpertInitialization.Gaussian, ExpertInitStd = 0.01,
            RouterInit = RouterInitialization.KaimingUniform, DefaultTargets = TargetSet.All,
        };
    }

    /// <summary>MoA, Mixture-of-LoRAs (2403.03432; no public code): one LoRA expert per domain, a sequence-level router
    /// supervised by the domain labels (cross-entropy added to the LM loss), top-1 routing. Stage 1 trains each domain's
    /// LoRA alone; for stage 2 load them (<see cref="MixtureOfLoraExperts.ImportLoraExperts"/>) and set
    /// <paramref name="freezeExperts"/>. r, α, the CE coefficient 1 and the targets are our choices [RECALL]. In the
    /// estimators the domain labels come from <c>LowRankTrainerOptions.TaskColumnName</c> at Fit; prediction routes by the
    /// router alone.</summary>
    /// <param name="numDomains">Domains (= experts).</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="routerLossCoef">Router cross-entropy coefficient.</param>
    /// <param name="freezeExperts">Train only the routers.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MoA(int numDomains = 4, int r = 8, double alpha = 16, double dropout = 0.05, double routerLossCoef = 1.0, bool freezeExperts = false) => new()
    {
        Preset = "moa", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numDomains, TopK = 1, R = r, LoraAlpha = alpha, LoraDropout = dropout,
        Gating = GatingMode.TopK, Renormalize = true, RouterInput = RouterInput.Sequence, FreezeExperts = freezeExperts,
        DefaultTargets = TargetSet.All, AuxLosses = Aux((AuxiliaryLossKind.RouterCrossEntropy, routerLossCoef)),
    };

    /// <summary>MoRAL (2402.11260; no public code): "MixLoRA-like" LoRA experts on the frozen FFN with a top-k router, for
    /// lifelong QA learning: FFN experts (no attention LoRA), E=4, top-2, r=8, α=16, Mixtral load balance 0.01 — all our
    /// choices [RECALL].</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="topK">k.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="auxLossCoef">Load-balance coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MoRAL(int numExperts = 4, int topK = 2, int r = 8, double alpha = 16, double dropout = 0.05, double auxLossCoef = 0.01)
    {
        var o = MixLoRA(numExperts, topK, r, alpha, dropout, auxLossCoef);
        o.Preset = "moral";
        o.DefaultTargets = TargetSet.FeedForward;
        o.RouterInit = RouterInitialization.KaimingUniform;
        return o;
    }

    /// <summary>PESC / Camelidae (2401.02731; wuhy68/Parameter-Efficient-MoE): each FFN becomes E experts sharing the frozen
    /// FFN and differing by a bottleneck adapter on its output, σ·Up_e(GELU(Down_e(dropout(h)))) (Down: d → 64, Up zero-init,
    /// dropout 0.1), a kaiming router on the FFN input, top-k on logits then softmax (= softmax → top-k → renormalise),
    /// PESC's load balance 0.01. The training script's values: E=8, top-2, σ=1 (the config defaults are top-1, σ=0.25).</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="topK">k.</param>
    /// <param name="adapterDim">Bottleneck size.</param>
    /// <param name="adapterScaling">σ.</param>
    /// <param name="auxLossCoef">Load-balance coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions PESC(int numExperts = 8, int topK = 2, int adapterDim = 64, double adapterScaling = 1.0, double auxLossCoef = 0.01) => new()
    {
        Preset = "pesc", ExpertPlacement = ExpertPlacement.FeedForward, FeedForwardExpert = FeedForwardExpertKind.Adapter,
        NumExperts = numExperts, TopK = topK, AdapterDim = adapterDim, AdapterScaling = adapterScaling, AdapterDropout = 0.1,
        Gating = GatingMode.TopK, RouterInput = RouterInput.Token, RouterInit = RouterInitialization.KaimingUniform,
        DefaultTargets = TargetSet.FeedForward, AuxLosses = Aux((AuxiliaryLossKind.PescLoadBalance, auxLossCoef)),
    };

    /// <summary>AdaMix (2205.12410; microsoft/AdaMix): E copies of a LoRA with B shared (the README run shares the up
    /// projection), no router: in training one random A and one random B per forward pass, at evaluation the averages
    /// (mergeable). README: E=4, adapter size 16. α = r (scaling 1) and the q/v targets are our choices. The consistency
    /// regulariser needs two forward passes: <see cref="MixtureOfLoraExperts.AdaMixConsistencyLoss"/>.</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="shareB">Share B across experts.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions AdaMix(int numExperts = 4, int r = 16, double alpha = 16, double dropout = 0.0, bool shareB = true) => new()
    {
        Preset = "adamix", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numExperts, R = r, LoraAlpha = alpha, LoraDropout = dropout,
        Gating = GatingMode.Stochastic, MixSpace = MixingSpace.Parameter, StochasticEval = StochasticEvaluation.Average,
        RouterInput = RouterInput.None, ShareLoraB = shareB, DefaultTargets = TargetSet.QueryValue,
    };

    /// <summary>SiRA (2311.09179; no public code): sparse top-k LoRA experts with a capacity limit (overflow tokens get no
    /// expert) and expert dropout on the gate. E=4, k=2, capacity factor 1, expert dropout 0.5, r=4, α=8 and a Mixtral-form
    /// load balance 0.01 are our choices [RECALL].</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="topK">k.</param>
    /// <param name="capacityFactor">Capacity factor.</param>
    /// <param name="expertDropout">Gate dropout.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="auxLossCoef">Load-balance coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions SiRA(int numExperts = 4, int topK = 2, double capacityFactor = 1.0, double expertDropout = 0.5, int r = 4, double alpha = 8, double auxLossCoef = 0.01) => new()
    {
        Preset = "sira", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numExperts, TopK = topK, R = r, LoraAlpha = alpha, LoraDropout = 0.05,
        Gating = GatingMode.TopK, RouterInput = RouterInput.Token, CapacityFactor = capacityFactor, ExpertDropout = expertDropout,
        DefaultTargets = TargetSet.All, AuxLosses = Aux((AuxiliaryLossKind.MixtralLoadBalance, auxLossCoef)),
    };

    /// <summary>MoCLE (2312.12379; no public code): instructions clustered offline (k-means on instruction embeddings,
    /// <see cref="MixtureOfLoraExperts.KMeans"/>), a cluster-conditional router (a logits table per cluster) picking the top-1
    /// expert weighted by its probability, plus one always-on universal expert. 64 clusters, E=8, r=8, α=16 are our
    /// choices [RECALL]. In the estimators the cluster ids come from <c>LowRankTrainerOptions.TaskColumnName</c>, or without
    /// it from k-means at Fit (seeded, k = min(clusters, rows)) on each row's instance embedding (the mean frozen token
    /// embedding of its instruction tokens, or <c>InstanceColumnName</c>); the centroids are saved with the model and new
    /// rows go to the nearest one.</summary>
    /// <param name="numClusters">Instruction clusters (router rows).</param>
    /// <param name="numExperts">E.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MoCLE(int numClusters = 64, int numExperts = 8, int r = 8, double alpha = 16, double dropout = 0.05) => new()
    {
        Preset = "mocle", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numExperts, R = r, LoraAlpha = alpha, LoraDropout = dropout,
        Gating = GatingMode.Switch, Renormalize = false, RouterInput = RouterInput.Task, NumTasks = numClusters, NumSharedExperts = 1,
        DefaultTargets = TargetSet.All,
    };

    /// <summary>Octavius (2311.02684; OpenGVLab/LAMM src/model/Octavius): LoRA-MoE on the decoder's attention projections with
    /// ONE global instance-level gate: the mean of the frozen token embeddings of the instruction
    /// (<see cref="MixtureOfLoraExperts.InstructionEmbedding"/>) → x·W_g (W_g ~ N(0, 1)) → softmax → top-2, renormalised,
    /// broadcast to every layer; experts stored as a stacked [E, in, r] tensor (so A's kaiming bound is 1/√(in·r)) and
    /// applied without α/r (the reference forward never multiplies by the scaling). The declared random second-expert drop
    /// is not applied (as in the code). E=4, r=32 are our defaults [RECALL]. In the estimators the instance embedding is
    /// the mean frozen token embedding of the row's instruction tokens (the prompt for causal LM, the whole encoded input
    /// otherwise), padding excluded so a row routes the same alone or batched, or <c>InstanceColumnName</c>.</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="topK">k.</param>
    /// <param name="r">Rank.</param>
    /// <param name="dropout">Dropout.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions Octavius(int numExperts = 4, int topK = 2, int r = 32, double dropout = 0.05) => new()
    {
        Preset = "octavius", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numExperts, TopK = topK, R = r, LoraAlpha = r, LoraDropout = dropout,
        ScaleExperts = false, Gating = GatingMode.TopK, RouterInput = RouterInput.Instance, RouterScope = RouterScope.Global,
        RouterInit = RouterInitialization.Normal, RouterInitScale = 1.0, ExpertInit = ExpertInitialization.KaimingStacked,
        DefaultTargets = TargetSet.Attention,
    };

    /// <summary>LLaVA-MoLE (2401.16160; no public code): LoRA experts only in the MLP layers, sparse top-1 routing per token
    /// (weighted by its probability so the router trains), Switch load balance. E=4, r=8, α=16, coefficient 0.01 are our
    /// choices [RECALL].</summary>
    /// <param name="numExperts">E.</param>
    /// <param name="r">Rank.</param>
    /// <param name="alpha">α.</param>
    /// <param name="dropout">Dropout.</param>
    /// <param name="auxLossCoef">Load-balance coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions LLaVAMoLE(int numExperts = 4, int r = 8, double alpha = 16, double dropout = 0.05, double auxLossCoef = 0.01) => new()
    {
        Preset = "llava-mole", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numExperts, TopK = 1, R = r, LoraAlpha = alpha, LoraDropout = dropout,
        Gating = GatingMode.Switch, Renormalize = false, RouterInput = RouterInput.Token, DefaultTargets = TargetSet.FeedForward,
        AuxLosses = Aux((AuxiliaryLossKind.SwitchLoadBalance, auxLossCoef)),
    };

    /// <summary>MOLE, Mixture of LoRA Experts (ICLR 2024, 2404.13628; the authors' repo has no code): N already-trained,
    /// frozen LoRAs (<see cref="MixtureOfLoraExperts.ImportLoraExperts"/>) under a learned gate per layer that reads the
    /// layer-normalised concatenation of their outputs, softmax with temperature, dense; gate-balance loss −Σ log q_e.
    /// Only the gates train. N=3, τ=1, coefficient 0.1 are our defaults [RECALL].</summary>
    /// <param name="numLoras">N.</param>
    /// <param name="r">Rank of the imported LoRAs (the largest one when they differ).</param>
    /// <param name="alpha">α of the experts (imported LoRAs are rescaled to it).</param>
    /// <param name="temperature">τ.</param>
    /// <param name="balanceCoef">Gate-balance coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MOLE(int numLoras = 3, int r = 8, double alpha = 16, double temperature = 1.0, double balanceCoef = 0.1) => new()
    {
        Preset = "mole", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numLoras, R = r, LoraAlpha = alpha, LoraDropout = 0,
        Gating = GatingMode.Dense, RouterInput = RouterInput.ExpertOutputs, RouterTemperature = temperature, FreezeExperts = true,
        RouterInit = RouterInitialization.KaimingUniform, DefaultTargets = TargetSet.All, AuxLosses = Aux((AuxiliaryLossKind.GateBalance, balanceCoef)),
    };

    /// <summary>Polytropon (2202.13914; PEFT "poly"): K LoRA skills per layer mixed in parameter space by a per-task router
    /// (logits [n_tasks, K], U(±1e-3) init; relaxed-Bernoulli samples in training, sigmoid at evaluation, normalised to 1),
    /// scaling 1/r (no α). PEFT defaults: r=8, K=4, one task; n_splits = 1 (multi-head routing is not implemented). In the
    /// estimators the task ids come from <c>LowRankTrainerOptions.TaskColumnName</c>; without one, a one-task router routes
    /// every row as task 0.</summary>
    /// <param name="numTasks">Tasks.</param>
    /// <param name="numSkills">K.</param>
    /// <param name="r">Rank.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions Poly(int numTasks = 1, int numSkills = 4, int r = 8) => new()
    {
        Preset = "poly", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numSkills, R = r, LoraAlpha = 1, LoraDropout = 0,
        Gating = GatingMode.RelaxedBernoulli, MixSpace = MixingSpace.Parameter, RouterInput = RouterInput.Task, NumTasks = numTasks,
        RouterInit = RouterInitialization.Uniform, RouterInitScale = 1e-3, DefaultTargets = TargetSet.QueryValue,
    };

    /// <summary>MLoRE (2403.17749; YuqiYang213/MLoRE), on linear layers (its conv experts come with vision backbones): 15
    /// experts of heterogeneous ranks 16, 24, ..., 128, a router on the sequence-pooled input with learned noise (noisy
    /// top-9 of 15, softmax over the kept ones), one always-on low-rank expert of rank 72 (the task-specific expert),
    /// experts unscaled, load balance 0.0003 (Switch form: our choice).</summary>
    /// <param name="topK">Experts kept.</param>
    /// <param name="auxLossCoef">Load-balance coefficient.</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MLoRE(int topK = 9, double auxLossCoef = 0.0003) => new()
    {
        Preset = "mlore", ExpertPlacement = ExpertPlacement.Linear, NumExperts = 15, ExpertRanks = Enumerable.Range(0, 15).Select(i => 16 + 8 * i).ToArray(),
        R = 16, TopK = topK, LoraAlpha = 16, ScaleExperts = false, LoraDropout = 0, Gating = GatingMode.NoisyTopK, RouterInput = RouterInput.Sequence,
        NumSharedExperts = 1, SharedExpertRank = 72, DefaultTargets = TargetSet.All, AuxLosses = Aux((AuxiliaryLossKind.SwitchLoadBalance, auxLossCoef)),
    };

    /// <summary>MoSA (2312.02923; no public code), on linear layers: one LoRA of rank r split into E disjoint rank slices
    /// (the sparse modules); in training one random slice per forward pass, scaled by E so its expectation is the full
    /// adapter; afterwards the full adapter (mergeable, no extra parameters). E=4, r=16 are our choices.</summary>
    /// <param name="numSlices">E.</param>
    /// <param name="r">Total rank (split over the slices).</param>
    /// <param name="alpha">α (scaling α/r of the total rank).</param>
    /// <returns>The options.</returns>
    public static MixtureOfLoraExpertsOptions MoSA(int numSlices = 4, int r = 16, double alpha = 16)
    {
        if (numSlices <= 0 || r % numSlices != 0) throw new ArgumentException($"MoSA splits the rank into slices: r = {r} must be a multiple of {numSlices}");
        int rs = r / numSlices;
        return new()
        {
            Preset = "mosa", ExpertPlacement = ExpertPlacement.Linear, NumExperts = numSlices, R = rs, LoraAlpha = alpha * rs / r, LoraDropout = 0,
            Gating = GatingMode.Stochastic, MixSpace = MixingSpace.Parameter, StochasticEval = StochasticEvaluation.Sum,
            RouterInput = RouterInput.None, DefaultTargets = TargetSet.All,
        };
    }

    /// <summary>Every preset, in registry order: name, paper, description, factory with the paper's defaults.</summary>
    public static IReadOnlyList<MixturePreset> Presets { get; } = new MixturePreset[]
    {
        new("molora", "general mixture of LoRA experts (methods.md §7.1)", "per-Linear LoRA experts, token router, softmax top-2; every knob settable", () => new MixtureOfLoraExpertsOptions { Preset = "molora" }),
        new("mixlora", "MixLoRA, arXiv 2404.15159", "FFN experts (LoRA on gate/up/down), top-2, Mixtral load balance; attention LoRA", () => MixLoRA()),
        new("mixlora-dynamic", "MixLoRA (MoE-PEFT mixlora-dynamic)", "MixLoRA with top-p 0.8 routing", () => MixLoRADynamic()),
        new("mixlora-switch", "MixLoRA (MoE-PEFT mixlora-switch)", "MixLoRA with switch top-1, capacity 32, z-loss", () => MixLoRASwitch()),
        new("loramoe", "LoRAMoE, arXiv 2312.09979", "dense LoRA experts on FFN linears, localized balancing constraint", () => LoRAMoE()),
        new("mola", "MoLA-▽, arXiv 2402.08562", "per-Linear top-2 experts, 2-4-6-8 experts by quarter of the blocks", () => MoLA(MolaAllocation.InvertedTriangle)),
        new("mola-8642", "MoLA-△, arXiv 2402.08562", "8-6-4-2 experts by quarter", () => MoLA(MolaAllocation.Triangle)),
        new("mola-3773", "MoLA-◇, arXiv 2402.08562", "3-7-7-3 experts by quarter (middle-heavy)", () => MoLA(MolaAllocation.Diamond)),
        new("mola-5555", "MoLA-□, arXiv 2402.08562", "5 experts in every block", () => MoLA(MolaAllocation.Square)),
        new("moelora", "MoELoRA (contrastive), arXiv 2402.12851", "top-2 LoRA experts with load balance and a contrastive loss", () => MoELoRA()),
        new("mmoelora", "MOELoRA (multi-task medical), arXiv 2310.18339", "rank split into experts, task-conditioned dense gate", () => MultiTaskMoELoRA()),
        new("moa", "MoA Mixture-of-LoRAs, arXiv 2403.03432", "one expert per domain, sequence router supervised by domain labels", () => MoA()),
        new("moral", "MoRAL, arXiv 2402.11260", "MixLoRA-like FFN experts without attention LoRA", () => MoRAL()),
        new("pesc", "PESC / Camelidae, arXiv 2401.02731", "FFN experts = shared FFN + bottleneck adapter, top-2", () => PESC()),
        new("adamix", "AdaMix, arXiv 2205.12410", "stochastic expert choice in training, averaged (mergeable) at inference", () => AdaMix()),
        new("sira", "SiRA, arXiv 2311.09179", "top-2 with capacity and expert dropout", () => SiRA()),
        new("mocle", "MoCLE, arXiv 2312.12379", "instruction-cluster router (top-1) plus a universal expert", () => MoCLE()),
        new("octavius", "Octavius, arXiv 2311.02684", "one global instance-level top-2 gate broadcast to every layer", () => Octavius()),
        new("llava-mole", "LLaVA-MoLE, arXiv 2401.16160", "sparse top-1 LoRA experts in the MLP", () => LLaVAMoLE()),
        new("mole", "MOLE, arXiv 2404.13628", "learned per-layer gate over frozen, already-trained LoRAs", () => MOLE()),
        new("poly", "Polytropon, arXiv 2202.13914", "task-level combination of LoRA skills in parameter space", () => Poly()),
        new("mlore", "MLoRE, arXiv 2403.17749", "heterogeneous-rank experts, noisy top-9 of 15, shared expert", () => MLoRE()),
        new("mosa", "MoSA, arXiv 2312.02923", "stochastic rank slices of one LoRA, merged afterwards", () => MoSA()),
    };

    /// <summary>The registry description of a preset: "paper: what it configures".</summary>
    /// <param name="name">The preset name.</param>
    /// <returns>One line.</returns>
    public static string Describe(string name)
    {
        var p = Presets.FirstOrDefault(x => string.Equals(x.Name, name, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"unknown mixture-of-experts preset '{name}'", nameof(name));
        return $"{p.Paper}: {p.Description}";
    }

    /// <summary>A preset by name (case-insensitive).</summary>
    /// <param name="name">The name, e.g. "mixlora".</param>
    /// <returns>New options with the preset's defaults.</returns>
    /// <exception cref="ArgumentException">No preset has that name (the message lists them).</exception>
    public static MixtureOfLoraExpertsOptions FromPreset(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        foreach (var p in Presets)
            if (string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase)) return p.Create();
        throw new ArgumentException($"unknown mixture-of-experts preset '{name}'; presets: {string.Join(", ", Presets.Select(p => p.Name))}", nameof(name));
    }
}
