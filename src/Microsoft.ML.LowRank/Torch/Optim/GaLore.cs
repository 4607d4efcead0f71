namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class optim
    {
        /// <summary>Which side of a weight GaLore projects its gradient on (GaLore's <c>proj_type</c>).</summary>
        public enum GaLoreProjectionType
        {
            /// <summary><c>"std"</c> (the default): G [m, n] with m ≥ n uses the right projector (R = G·Qᵀ, [m, r]), otherwise the
            /// left one (R = Pᵀ·G, [r, n]): the projected gradient and the moments always have r·max(m, n) elements.</summary>
            Std,
            /// <summary><c>"reverse_std"</c>: the opposite sides (r·min(m, n) elements).</summary>
            ReverseStd,
            /// <summary><c>"left"</c>: always P = U[:, :r], R = Pᵀ·G [r, n].</summary>
            Left,
            /// <summary><c>"right"</c>: always Q = Vh[:r], R = G·Qᵀ [m, r].</summary>
            Right,
        }

        /// <summary>
        /// GaLore settings of a parameter group (arXiv 2403.03507): the rank r of the gradient projection, how often the
        /// projector is recomputed from the current gradient, the scale α applied to the projected-back update, and the
        /// projection side.
        /// </summary>
        /// <param name="rank">r (GaLore's pre-training default 128; its RoBERTa GLUE runs use 4-8). Values above min(m, n) act as min(m, n).</param>
        /// <param name="update_proj_gap">T: the projector is recomputed at steps 1, T + 1, 2T + 1, ... of each parameter
        /// (GaLore's default 200).</param>
        /// <param name="scale">α multiplying the projected-back update (GaLore's default 0.25).</param>
        /// <param name="proj_type">The projection side (default <see cref="GaLoreProjectionType.Std"/>).</param>
        public sealed record GaLoreSettings(int rank = 128, int update_proj_gap = 200, double scale = 0.25,
            GaLoreProjectionType proj_type = GaLoreProjectionType.Std)
        {
            /// <summary>Checks the values.</summary>
            /// <exception cref="ArgumentOutOfRangeException">rank or update_proj_gap below 1, or a non-finite scale.</exception>
            public void Validate()
            {
                if (rank < 1) throw new ArgumentOutOfRangeException(nameof(rank), rank, "the GaLore rank must be >= 1");
                if (update_proj_gap < 1) throw new ArgumentOutOfRangeException(nameof(update_proj_gap), update_proj_gap, "update_proj_gap must be >= 1");
                if (!double.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "the GaLore scale must be finite");
            }
        }

        /// <summary>A parameter group for <see cref="GaLoreAdamW(IEnumerable{GaLoreParamGroup}, double, double, double, double, double)"/>:
        /// its 2-D parameters are GaLore-projected when <see cref="GaLore"/> is set, everything else takes plain AdamW steps.
        /// A plain <see cref="ParamGroup"/> converts implicitly (no GaLore).</summary>
        /// <param name="Group">The parameters and their hyper-parameters.</param>
        /// <param name="GaLore">The GaLore settings, or null for plain AdamW.</param>
        public sealed record GaLoreParamGroup(ParamGroup Group, GaLoreSettings? GaLore = null)
        {
            /// <summary>A group without GaLore.</summary>
            /// <param name="group">The group.</param>
            public static implicit operator GaLoreParamGroup(ParamGroup group) => new(group);
        }

        /// <summary>GaLore's AdamW over groups, some of them with GaLore settings (see <see cref="GaLoreAdamWOptimizer"/>).
        /// Usable on any parameters, e.g. every weight of a plain pretrained model.</summary>
        /// <param name="groups">The groups.</param>
        /// <param name="lr">Learning rate.</param>
        /// <param name="beta1">First-moment decay.</param>
        /// <param name="beta2">Second-moment decay.</param>
        /// <param name="eps">Denominator term (GaLore's default 1e-6).</param>
        /// <param name="weight_decay">Decoupled weight decay, applied after the step.</param>
        /// <returns>The optimizer.</returns>
        public static GaLoreAdamWOptimizer GaLoreAdamW(IEnumerable<GaLoreParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
            double eps = 1e-6, double weight_decay = 0)
            => new(groups, lr, beta1, beta2, eps, weight_decay);

        /// <summary>GaLore's AdamW over named parameters: the 2-D parameters <paramref name="target"/> selects (default: every
        /// 2-D parameter) are projected with <paramref name="settings"/>, every other parameter takes plain AdamW steps.</summary>
        /// <param name="parameters">Named parameters, e.g. <c>model.named_parameters()</c> (those without requires_grad are skipped).</param>
        /// <param name="settings">The GaLore settings.</param>
        /// <param name="target">Which 2-D parameters to project, by name and parameter (null: all 2-D parameters).</param>
        /// <param name="lr">Learning rate.</param>
        /// <param name="beta1">First-moment decay.</param>
        /// <param name="beta2">Second-moment decay.</param>
        /// <param name="eps">Denominator term.</param>
        /// <param name="weight_decay">Decoupled weight decay.</param>
        /// <returns>The optimizer.</returns>
        public static GaLoreAdamWOptimizer GaLoreAdamW(IEnumerable<(string name, nn.Parameter parameter)> parameters, GaLoreSettings settings,
            Func<string, nn.Parameter, bool>? target = null, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6,
            double weight_decay = 0)
        {
            ArgumentNullException.ThrowIfNull(parameters);
            ArgumentNullException.ThrowIfNull(settings);
            var projected = new List<(string, nn.Parameter)>();
            var plain = new List<(string, nn.Parameter)>();
            foreach (var (name, p) in parameters)
            {
                if (!p.requires_grad) continue;
                if (p.dim() == 2 && (target?.Invoke(name, p) ?? true)) projected.Add((name, p));
                else plain.Add((name, p));
            }
            var groups = new List<GaLoreParamGroup>();
            if (projected.Count > 0) groups.Add(new GaLoreParamGroup(ParamGroup.FromNamed(projected, name: "galore"), settings));
            if (plain.Count > 0) groups.Add(ParamGroup.FromNamed(plain, name: "adamw"));
            return new GaLoreAdamWOptimizer(groups, lr, beta1, beta2, eps, weight_decay);
        }

        /// <summary>
        /// GaLore's AdamW (<c>jiaweizzhao/GaLore: galore_torch/adamw.py</c>, <c>galore_projector.py</c>). Full-rank 2-D weights
        /// W [m, n] of GaLore groups keep their Adam moments in a rank-r projection of the gradient G; for the parameter's
        /// 0-based step k:
        /// <code>
        /// if k mod T = 0: U, S, Vh = svd(G)  (reduced; float32 for half types)   right: Q = Vh[:r] [r, n]; left: P = U[:, :r] [m, r]
        /// R = G·Qᵀ [m, r]  or  Pᵀ·G [r, n]
        /// m = β1·m + (1 − β1)·R;  v = β2·v + (1 − β2)·R²;  N = m / (√v + ε)
        /// W = W − lr·√(1 − β2^(k+1))/(1 − β1^(k+1)) · α·(N·Q  or  P·N)
        /// W = W·(1 − lr·λ)                                (decoupled decay after the step, when λ &gt; 0)
        /// </code>
        /// The moments are NOT reset or rotated when the projector changes (GaLore's design: they are reused in the new
        /// basis as they are). State: <c>projector</c> (Q or P, in the parameter's type), <c>projected_exp_avg</c>,
        /// <c>projected_exp_avg_sq</c> (the projected shape) and <c>step</c>. Parameters of other groups, and parameters that
        /// are not 2-D in GaLore groups, take the same AdamW step on the raw gradient (<c>exp_avg</c>, <c>exp_avg_sq</c>).
        /// </summary>
        public sealed class GaLoreAdamWOptimizer : Optimizer
        {
            private readonly Dictionary<ParamGroup, GaLoreSettings> _settings = new(ReferenceEqualityComparer.Instance);

            /// <summary>Creates the optimizer.</summary>
            /// <param name="groups">The groups (GaLore settings per group).</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="beta1">First-moment decay.</param>
            /// <param name="beta2">Second-moment decay.</param>
            /// <param name="eps">Denominator term.</param>
            /// <param name="weight_decay">Decoupled weight decay.</param>
            public GaLoreAdamWOptimizer(IEnumerable<GaLoreParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
                double eps = 1e-6, double weight_decay = 0)
                : this(Materialize(groups), lr, beta1, beta2, eps, weight_decay) { }

            private GaLoreAdamWOptimizer(List<GaLoreParamGroup> groups, double lr, double beta1, double beta2, double eps, double weight_decay)
                : base(groups.Select(g => g.Group), new Defaults(lr, weight_decay, beta1, beta2, eps))
            {
                foreach (var g in groups)
                {
                    if (g.GaLore is null) continue;
                    g.GaLore.Validate();
                    _settings[g.Group] = g.GaLore;
                }
            }

            private static List<GaLoreParamGroup> Materialize(IEnumerable<GaLoreParamGroup> groups)
            {
                ArgumentNullException.ThrowIfNull(groups);
                var list = groups.ToList();
                for (int i = 0; i < list.Count; i++)
                    if (list[i]?.Group is null) throw new ArgumentException($"GaLore parameter group {i} is null", nameof(groups));
                return list;
            }

            /// <summary>The GaLore settings of a group, or null for a plain AdamW group.</summary>
            /// <param name="group">A group of this optimizer.</param>
            /// <returns>The settings.</returns>
            public GaLoreSettings? galore_settings(ParamGroup group) => _settings.GetValueOrDefault(group);

            /// <summary>Whether a parameter is GaLore-projected (a 2-D parameter of a GaLore group).</summary>
            /// <param name="parameter">A parameter of this optimizer.</param>
            /// <returns>True when projected.</returns>
            public bool is_projected(nn.Parameter parameter)
                => parameter.dim() == 2 && param_groups.Any(g => _settings.ContainsKey(g) && g.Parameters.Any(p => ReferenceEquals(p, parameter)));

            /// <inheritdoc/>
            protected override void Validate(ParamGroup group)
            {
                base.Validate(group);
                if (!(group.Beta1 >= 0 && group.Beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(group), group.Beta1, "beta1 must be in [0, 1)");
                if (!(group.Beta2 >= 0 && group.Beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(group), group.Beta2, "beta2 must be in [0, 1)");
                if (!(group.Eps >= 0)) throw new ArgumentOutOfRangeException(nameof(group), group.Eps, "eps must be >= 0");
                if (group.AmsGrad) throw new ArgumentException("GaLore's AdamW does not implement AMSGrad", nameof(group));
                if (group.Maximize) throw new ArgumentException("GaLore's AdamW does not implement maximize", nameof(group));
            }

            /// <inheritdoc/>
            public override void step()
            {
                ThrowIfDisposed();
                using var scope = NewDisposeScope();
                using var ng = no_grad();
                foreach (var group in param_groups)
                {
                    var settings = _settings.GetValueOrDefault(group);
                    foreach (var p in group.Parameters)
                    {
                        var grad = p.grad;
                        if (grad is null) continue;
                        if (settings is null || p.dim() != 2)
                            LoraPairOptimizer.HfAdamW(state(p), p, grad, group.LearningRate, group.Beta1, group.Beta2, group.Eps, group.WeightDecay);
                        else
                            ProjectedStep(p, grad, group, settings);
                    }
                }
            }

            /// <summary>Whether GaLore projects a [m, n] gradient on the right (Q, R = G·Qᵀ) for a projection type.</summary>
            /// <param name="rows">m.</param>
            /// <param name="columns">n.</param>
            /// <param name="type">The projection type.</param>
            /// <returns>True for the right projector, false for the left one.</returns>
            public static bool ProjectsRight(long rows, long columns, GaLoreProjectionType type) => type switch
            {
                GaLoreProjectionType.Std => rows >= columns,
                GaLoreProjectionType.ReverseStd => rows < columns,
                GaLoreProjectionType.Right => true,
                GaLoreProjectionType.Left => false,
                _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown GaLore projection type"),
            };

            private void ProjectedStep(nn.Parameter p, Tensor grad, ParamGroup group, GaLoreSettings settings)
            {
                var s = state(p);
                long m = p.size(0), n = p.size(1);
                bool right = ProjectsRight(m, n, settings.proj_type);
                double k = s.Scalars.TryGetValue("step", out var saved) ? saved : 0;
                if (!s.Tensors.ContainsKey("projector") || k % settings.update_proj_gap == 0)
                    s.Set("projector", Projector(grad, settings.rank, right));
                var proj = s.Tensors["projector"];
                var low = right ? grad.matmul(proj.t()) : proj.t().matmul(grad);
                var (normalized, stepSize) = LoraPairOptimizer.HfAdamDirection(s, low, group.LearningRate, group.Beta1, group.Beta2, group.Eps,
                    "projected_exp_avg", "projected_exp_avg_sq");
                var back = right ? normalized.matmul(proj) : proj.matmul(normalized);
                p.add_(back, -stepSize * settings.scale);
                if (group.WeightDecay > 0) p.mul_(1 - group.LearningRate * group.WeightDecay);
            }

            /// <summary>The top-r singular vectors of the gradient (float32 SVD for half types), in the gradient's type.</summary>
            private static Tensor Projector(Tensor grad, int rank, bool right)
            {
                var ct = grad.dtype is ScalarType.Float64 or ScalarType.Float32 ? grad.dtype : ScalarType.Float32;
                var (u, _, vh) = linalg.svd(grad.to_type(ct), full_matrices: false);
                var k = Math.Min(rank, right ? vh.size(0) : u.size(1));
                var q = right ? vh.narrow(0, 0, k) : u.narrow(1, 0, k);
                return q.to_type(grad.dtype).contiguous();
            }
        }
    }
}
