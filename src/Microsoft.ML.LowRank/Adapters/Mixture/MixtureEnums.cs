namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>Where a mixture-of-LoRA-experts adapter puts its experts (<c>expert_placement</c>).</summary>
public enum ExpertPlacement
{
    /// <summary><c>"linear"</c>: every targeted Linear gets its own experts (LoRAs on that Linear) and its own router
    /// (LoRAMoE, MoLA, MoELoRA, SiRA, Octavius, ...).</summary>
    Linear,

    /// <summary><c>"ffn"</c>: one expert spans a whole feed-forward block (MixLoRA: a LoRA on each of gate/up/down with
    /// the frozen FFN shared; PESC: a bottleneck adapter on the FFN output) with one router per block on the block input.
    /// Targeted Linears outside feed-forward blocks get a plain LoRA (MixLoRA's attention LoRA).</summary>
    FeedForward,
}

/// <summary>What one FFN expert is (<c>ffn_expert</c>, with <see cref="ExpertPlacement.FeedForward"/>).</summary>
public enum FeedForwardExpertKind
{
    /// <summary><c>"lora"</c>: expert e runs the frozen FFN with its own LoRA deltas on the targeted gate/up/down
    /// projections (MixLoRA).</summary>
    Lora,

    /// <summary><c>"adapter"</c>: expert e adds a bottleneck adapter σ·Up_e(GELU(Down_e(dropout(h)))) to the FFN output h
    /// (PESC / Camelidae). Its weights live on the block's down projection.</summary>
    Adapter,
}

/// <summary>What the router reads (<c>router_input</c>).</summary>
public enum RouterInput
{
    /// <summary><c>"token"</c>: each token's hidden state at the adapted layer (MixLoRA, MoLA, LoRAMoE, SiRA, ...).</summary>
    Token,

    /// <summary><c>"sequence"</c>: the mean of the layer input over each sequence's tokens (padding excluded when a token
    /// mask is set in the routing context); one routing decision per sequence (MoA).</summary>
    Sequence,

    /// <summary><c>"instance"</c>: an instance embedding per example given in the routing context
    /// (<see cref="MixtureRoutingInputs.InstanceFeatures"/>, e.g. the mean frozen token embedding of the instruction:
    /// Octavius).</summary>
    Instance,

    /// <summary><c>"task"</c>: a task (or instruction-cluster) id per example from the routing context
    /// (<see cref="MixtureRoutingInputs.TaskIds"/>): Polytropon, MOELoRA (2310.18339), MoCLE.</summary>
    Task,

    /// <summary><c>"expert_outputs"</c>: the (layer-normalised, concatenated) outputs of the experts themselves (MOLE).</summary>
    ExpertOutputs,

    /// <summary><c>"none"</c>: no router (stochastic routing: AdaMix, MoSA).</summary>
    None,
}

/// <summary>How many routers an adapter has (<c>router_scope</c>).</summary>
public enum RouterScope
{
    /// <summary><c>"layer"</c>: one router per adapted Linear (or per FFN block).</summary>
    Layer,

    /// <summary><c>"global"</c>: one router for the whole model, computed from the routing context (instance or task)
    /// and broadcast to every layer (Octavius). It is stored in the first adapted layer.</summary>
    Global,
}

/// <summary>How router probabilities become expert weights (<c>gating</c>).</summary>
public enum GatingMode
{
    /// <summary><c>"dense"</c>: every expert, weighted by the softmax (LoRAMoE, MOELoRA, MOLE).</summary>
    Dense,

    /// <summary><c>"top_k"</c>: softmax → the k largest → renormalised to sum 1 (unless <c>renormalize</c> is false);
    /// ties go to the lower expert index (MixLoRA, MoLA, Octavius, MoELoRA).</summary>
    TopK,

    /// <summary><c>"top_p"</c>: the fewest largest experts whose probabilities reach p, the expert crossing p included;
    /// weights are the probabilities (MixLoRA-dynamic).</summary>
    TopP,

    /// <summary><c>"switch"</c>: top-1 weighted by its probability (no renormalisation), usually with a capacity
    /// (MixLoRA-switch, Switch Transformer).</summary>
    Switch,

    /// <summary><c>"noisy_top_k"</c>: in training, logits + N(0,1)·σ(x) with σ from a learned noise projection, then
    /// top-k renormalised (MLoRE; noise off in evaluation).</summary>
    NoisyTopK,

    /// <summary><c>"stochastic"</c>: no router; in training a random expert per forward pass, at evaluation all experts
    /// combined in parameter space (AdaMix, MoSA; needs <c>mix_space = "parameter"</c>).</summary>
    Stochastic,

    /// <summary><c>"relaxed_bernoulli"</c>: Polytropon's task router: in training a relaxed-Bernoulli sample of
    /// sigmoid(logits) per expert, in evaluation sigmoid(logits); normalised to sum 1.</summary>
    RelaxedBernoulli,
}

/// <summary>Where expert weights are mixed (<c>mix_space</c>).</summary>
public enum MixingSpace
{
    /// <summary><c>"output"</c>: y = base(x) + Σ_e g_e·s_e·B_e·A_e·x.</summary>
    Output,

    /// <summary><c>"parameter"</c>: y = base(x) + s·(Σ_e g_e B_e)(Σ_e g_e A_e)·x (Polytropon, AdaMix, MoSA).</summary>
    Parameter,
}

/// <summary>What stochastic routing does at evaluation (<c>stochastic_eval</c>).</summary>
public enum StochasticEvaluation
{
    /// <summary><c>"average"</c>: AdaMix: training draws one A and (independently) one B per forward pass; evaluation uses
    /// the averages A = mean_e A_e, B = mean_e B_e (a single, mergeable LoRA: the product of the averages).</summary>
    Average,

    /// <summary><c>"sum"</c>: MoSA: the experts are disjoint slices of one LoRA; training draws one slice per forward pass
    /// (scaled by the number of experts, so its expectation is the full adapter); evaluation uses the full adapter.</summary>
    Sum,
}

/// <summary>Router weight initialisation (<c>router_init</c>).</summary>
public enum RouterInitialization
{
    /// <summary><c>"kaiming_uniform"</c>: U(±1/√fan_in) (PyTorch Linear default; LoRAMoE, MoLA, PESC).</summary>
    KaimingUniform,

    /// <summary><c>"normal"</c>: N(0, <c>router_init_scale</c>²) (MixLoRA 0.02, MixLoRA-switch 1.0, Octavius 1.0).</summary>
    Normal,

    /// <summary><c>"uniform"</c>: U(±<c>router_init_scale</c>) (Polytropon 1e-3).</summary>
    Uniform,

    /// <summary><c>"zeros"</c>: all zero (uniform routing at the start).</summary>
    Zeros,
}

/// <summary>Expert A initialisation (<c>expert_init</c>); every B starts at zero so the adapter is a no-op at step 0.</summary>
public enum ExpertInitialization
{
    /// <summary><c>"kaiming"</c>: each expert's A [r, in] as PEFT's LoRA, U(±1/√in).</summary>
    Kaiming,

    /// <summary><c>"kaiming_stacked"</c>: as libtorch initialises a stacked [E, in, r] tensor (fan_in = in·r):
    /// U(±1/√(in·r)), a √r smaller bound (Octavius).</summary>
    KaimingStacked,

    /// <summary><c>"gaussian"</c>: N(0, <c>expert_init_std</c>²) (MOELoRA 2310.18339: 0.01).</summary>
    Gaussian,
}

/// <summary>Default targets by model type when <c>target_modules</c> is not set (<c>default_targets</c>).</summary>
public enum TargetSet
{
    /// <summary><c>"attention"</c>: q/k/v/o (LLaMA family), c_attn and attn.c_proj (GPT-2), query/key/value and
    /// attention.output.dense (BERT).</summary>
    Attention,

    /// <summary><c>"ffn"</c>: gate/up/down (LLaMA family), c_fc and mlp.c_proj (GPT-2), intermediate.dense and the
    /// block's output.dense (BERT; per-Linear experts only).</summary>
    FeedForward,

    /// <summary><c>"all"</c>: attention and feed-forward projections.</summary>
    All,

    /// <summary><c>"query_value"</c>: the query and value projections (q_proj/v_proj, GPT-2's fused c_attn, BERT's
    /// query/value), PEFT's LoRA default.</summary>
    QueryValue,
}

/// <summary>An auxiliary loss of a mixture-of-experts adapter, added to the training loss with a coefficient.</summary>
public enum AuxiliaryLossKind
{
    /// <summary><c>"load_balance_mixtral"</c> (MixLoRA, HF Mixtral): over the routers' tokens concatenated (padding
    /// masked), f[k,e] = fraction of tokens whose k-th choice is e, P[e] = mean probability; E·Σ_{k,e} f[k,e]·P[e]
    /// (≈ k at balance).</summary>
    MixtralLoadBalance,

    /// <summary><c>"load_balance_switch"</c> (Switch Transformer, MixLoRA-switch): f[e] = fraction of tokens whose top-1 is
    /// e; E·Σ_e f[e]·P[e] over the routers' tokens concatenated.</summary>
    SwitchLoadBalance,

    /// <summary><c>"load_balance_mola"</c> (MoLA): per module group (the routers of one attention or MLP module
    /// concatenated), f[e] = selections of e / all selections, E·Σ f·P; summed over groups.</summary>
    MolaLoadBalance,

    /// <summary><c>"load_balance_pesc"</c> (PESC / Camelidae, an early HF-Mixtral form): E²·mean_{t,e}(f[t,e]·p[t]) with
    /// f[t,e] = mean over the k slots of one-hot choices and p[t] = mean of the token's renormalised top-k weights. As
    /// written it equals E/k for any router (no gradient); implemented exactly, documented.</summary>
    PescLoadBalance,

    /// <summary><c>"z_loss"</c> (ST-MoE, MixLoRA-switch): mean over tokens of logsumexp(logits)².</summary>
    ZLoss,

    /// <summary><c>"lbc"</c> (LoRAMoE's localized balancing constraint): per router, Q = Σ_seq gate weights per example
    /// and expert, weighted 1+δ for the half of the experts matching the example's task type (0/1) and 1−δ for the
    /// other half; CV²(Q) = var/(mean²+1e-10), summed over routers. Needs task types in the routing context.</summary>
    LocalizedBalance,

    /// <summary><c>"contrastive"</c> (MoELoRA 2402.12851): supervised-contrastive (InfoNCE) loss on the normalised
    /// outputs of the selected experts: outputs of the same expert are positives, of other experts negatives.</summary>
    Contrastive,

    /// <summary><c>"gate_balance"</c> (MOLE): −Σ_e log q_e with q_e the mean gate weight of expert e, per router.</summary>
    GateBalance,

    /// <summary><c>"router_ce"</c> (MoA): cross-entropy of the sequence-level router logits against the domain label of
    /// each example (<see cref="MixtureRoutingInputs.RouterLabels"/>), per router.</summary>
    RouterCrossEntropy,
}
