namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class optim
    {
        /// <summary>LoRA-Pro (arXiv 2407.18242) over parameter groups (see <see cref="LoraProOptimizer"/>).</summary>
        /// <param name="groups">The trainable parameters (both factors of every pair, and any other parameter).</param>
        /// <param name="pairs">The LoRA pairs, matched by module (e.g. <c>Training.LoraPairs.Find(model)</c>).</param>
        /// <param name="lr">Learning rate of the final SGD step on the adjusted gradients (and of AdamW on other parameters).</param>
        /// <param name="beta1">First-moment decay of the equivalent-gradient Adam.</param>
        /// <param name="beta2">Second-moment decay of the equivalent-gradient Adam.</param>
        /// <param name="eps">Adam's denominator term (the reference's 1e-8).</param>
        /// <param name="weight_decay">Decoupled weight decay (the reference scripts use 0).</param>
        /// <param name="sylvester">Use the optimal X of the Sylvester equation in the final adjustment (the reference); false
        /// uses X = 0 (also a minimiser of the gradient gap, not the closest to the previous update).</param>
        /// <returns>The optimizer.</returns>
        public static LoraProOptimizer LoraPro(IEnumerable<ParamGroup> groups, IEnumerable<LoraPair> pairs, double lr = 1e-3, double beta1 = 0.9,
            double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0, bool sylvester = true)
            => new(groups, pairs, lr, beta1, beta2, eps, weight_decay, sylvester);

        /// <summary>
        /// LoRA-Pro, as the authors' DeepSpeed code (<c>lorapro_full_adjustment</c>) runs it. A LoRA step equals a full
        /// fine-tuning step with the equivalent gradient g̃ = s·(B·g_A + g_B·A); LoRA-Pro keeps Adam moments of g̃ (full size,
        /// [out, in] per pair: as much state as full fine-tuning Adam for that matrix) and maps the Adam direction back to
        /// the factors by the closed-form minimiser of ‖s·(B·g_A + g_B·A) − D‖. Per pair, with t the pair's step count,
        /// (·)⁻¹ meaning pinv(· + 1e-8·I), and P = I − B(BᵀB)⁻¹Bᵀ:
        /// <code>
        /// 1. adjust the raw gradients, X = 0:  t = 1 (B = 0, BᵀB singular): a = g_A,              b = g_B(AAᵀ)⁻¹/s²
        ///                                      t &gt; 1:                       a = (BᵀB)⁻¹g_A/s²,   b = P·g_B(AAᵀ)⁻¹/s²
        /// 2. g̃ = s·(B·a + b·A);  m = β1·m + (1 − β1)·g̃;  v = β2·v + (1 − β2)·g̃²
        ///    D = (m/(1 − β1^t)) / (√v/√(1 − β2^t) + ε)
        /// 3. pseudo-gradients a' = s·Bᵀ·D, b' = s·D·Aᵀ, adjusted again:
        ///    t = 1: ĝ_A = a',  ĝ_B = b'(AAᵀ)⁻¹/s²
        ///    t &gt; 1: ĝ_A = (BᵀB)⁻¹a'/s² + X·A,  ĝ_B = P·b'(AAᵀ)⁻¹/s² − B·X,  where X solves the Sylvester equation
        ///           (BᵀB)·X + X·(AAᵀ) = −(BᵀB)⁻¹·a'·Aᵀ/s²     (X = 0 when <see cref="sylvester"/> is false)
        /// 4. SGD: A = A − lr_A·ĝ_A,  B = B − lr_B·ĝ_B        (decoupled decay θ·(1 − lr·λ) first, when λ &gt; 0)
        /// </code>
        /// s is the pair's own scaling (the reference hard-codes s = 2). BᵀB and AAᵀ are symmetric, so the Sylvester equation
        /// is solved exactly in real arithmetic from their eigen-decompositions BᵀB = UΛUᵀ, AAᵀ = VMVᵀ:
        /// X = U·[(UᵀCV)ᵢⱼ/(λᵢ + μⱼ)]·Vᵀ, a term with λᵢ + μⱼ ≤ 0 (both matrices singular in a common direction) set to 0
        /// (the reference solves the same equation by a general complex eigen-decomposition). The math runs in float32
        /// (float64 for float64 factors). State on B: <c>equiv_exp_avg</c>, <c>equiv_exp_avg_sq</c> ([out, in]) and
        /// <c>step</c>. Parameters outside pairs take an AdamW step (<see cref="LoraPairOptimizer.AdamWStep"/>; the
        /// reference trains everything with this SGD step, which suits only LoRA factors).
        /// </summary>
        public sealed class LoraProOptimizer : LoraPairOptimizer
        {
            /// <summary>Creates the optimizer.</summary>
            /// <param name="groups">The trainable parameters.</param>
            /// <param name="pairs">The LoRA pairs, matched by module.</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="beta1">First-moment decay.</param>
            /// <param name="beta2">Second-moment decay.</param>
            /// <param name="eps">Denominator term.</param>
            /// <param name="weight_decay">Decoupled weight decay.</param>
            /// <param name="sylvester">Optimal X (true) or X = 0.</param>
            public LoraProOptimizer(IEnumerable<ParamGroup> groups, IEnumerable<LoraPair> pairs, double lr = 1e-3, double beta1 = 0.9,
                double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0, bool sylvester = true)
                : base(groups, pairs, new Defaults(lr, weight_decay, beta1, beta2, eps), trainsA: true)
            {
                this.sylvester = sylvester;
            }

            /// <summary>Whether the final adjustment uses the Sylvester solution X (true) or X = 0.</summary>
            public bool sylvester { get; }

            /// <inheritdoc/>
            protected override void StepPairs()
            {
                foreach (var pair in pairs)
                {
                    using var scope = NewDisposeScope();
                    var (pa, pb) = (pair.A, pair.B);
                    var ga = pa.grad;
                    var gb = pb.grad;
                    if (ga is null && gb is null) continue;
                    var ct = ComputeType(pb);
                    var A = pa.detach().to_type(ct);
                    var B = pb.detach().to_type(ct);
                    var gA = ga is null ? zeros_like(A) : ga.to_type(ct);
                    var gB = gb is null ? zeros_like(B) : gb.to_type(ct);
                    var group = GroupOf(pb);
                    double s = pair.Scaling, s2 = s * s;
                    double beta1 = group.Beta1, beta2 = group.Beta2;

                    var st = state(pb);
                    if (!st.Tensors.TryGetValue("equiv_exp_avg", out var m))
                    {
                        m = st.Set("equiv_exp_avg", zeros(new[] { B.size(0), A.size(1) }, ct, B.device));
                        st.Set("equiv_exp_avg_sq", zeros(new[] { B.size(0), A.size(1) }, ct, B.device));
                        st.Scalars["step"] = 0;
                    }
                    var v = st.Tensors["equiv_exp_avg_sq"];
                    double t = st.Scalars["step"] + 1;
                    st.Scalars["step"] = t;
                    bool first = t == 1;

                    var aatInv = RegularizedPinv(A.matmul(A.t()));
                    Tensor? btbInv = first ? null : RegularizedPinv(B.t().matmul(B));
                    // P·M = M − B·((BᵀB)⁻¹·(Bᵀ·M)), never forming the [out, out] projector.
                    Tensor Project(Tensor M) => M - B.matmul(btbInv!.matmul(B.t().matmul(M)));

                    // 1-2. Adjusted gradients with X = 0, equivalent gradient, Adam on it.
                    Tensor a, b;
                    if (first) { a = gA; b = gB.matmul(aatInv) / s2; }
                    else { a = btbInv!.matmul(gA) / s2; b = Project(gB.matmul(aatInv)) / s2; }
                    var equiv = (B.matmul(a) + b.matmul(A)) * s;
                    m.mul_(beta1).add_(equiv, 1 - beta1);
                    v.mul_(beta2).addcmul_(equiv, equiv, 1 - beta2);
                    var direction = (m / (1 - Math.Pow(beta1, t))) / (v.sqrt() / Math.Sqrt(1 - Math.Pow(beta2, t)) + group.Eps);

                    // 3. Back to the factors, final adjustment.
                    var aPrime = B.t().matmul(direction) * s;
                    var bPrime = direction.matmul(A.t()) * s;
                    Tensor newA, newB;
                    if (first) { newA = aPrime; newB = bPrime.matmul(aatInv) / s2; }
                    else
                    {
                        newA = btbInv!.matmul(aPrime) / s2;
                        newB = Project(bPrime.matmul(aatInv)) / s2;
                        if (sylvester)
                        {
                            var x = SolveSylvester(B.t().matmul(B), A.matmul(A.t()), -(btbInv!.matmul(aPrime).matmul(A.t())) / s2);
                            newA = newA + x.matmul(A);
                            newB = newB - B.matmul(x);
                        }
                    }

                    // 4. SGD on the factors with their own groups' rates.
                    Apply(pa, newA, GroupOf(pa));
                    Apply(pb, newB, group);
                }
            }

            private static void Apply(nn.Parameter p, Tensor update, ParamGroup g)
            {
                if (g.WeightDecay > 0) p.mul_(1 - g.LearningRate * g.WeightDecay);
                p.sub_(update.dtype == p.dtype ? update : update.to_type(p.dtype), g.LearningRate);
            }

            /// <summary>
            /// Solves S·X + X·T = C for symmetric positive semi-definite S [r, r] and T [q, q]: with S = UΛUᵀ and T = VMVᵀ,
            /// X = U·Y·Vᵀ where Yᵢⱼ = (UᵀCV)ᵢⱼ/(λᵢ + μⱼ), and Yᵢⱼ = 0 where λᵢ + μⱼ ≤ 0.
            /// </summary>
            /// <param name="s">S.</param>
            /// <param name="t">T.</param>
            /// <param name="c">C [r, q].</param>
            /// <returns>X [r, q].</returns>
            public static Tensor SolveSylvester(Tensor s, Tensor t, Tensor c)
            {
                ArgumentNullException.ThrowIfNull(s);
                ArgumentNullException.ThrowIfNull(t);
                ArgumentNullException.ThrowIfNull(c);
                using var scope = NewDisposeScope();
                var (lam, u) = linalg.eigh(s);
                var (mu, vv) = linalg.eigh(t);
                var f = u.t().matmul(c).matmul(vv);
                var den = lam.unsqueeze(1) + mu.unsqueeze(0);
                var positive = den.gt(0);
                var y = where(positive, f / where(positive, den, 1.0), 0.0);
                return u.matmul(y).matmul(vv.t()).MoveToOuterDisposeScope();
            }
        }
    }
}
