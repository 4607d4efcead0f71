namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class optim
    {
        /// <summary>LoRA-RITE (arXiv 2410.20625) over parameter groups (see <see cref="LoraRiteOptimizer"/>).</summary>
        /// <param name="groups">The trainable parameters (both factors of every pair, and any other parameter).</param>
        /// <param name="pairs">The LoRA pairs, matched by module (e.g. <c>Training.LoraPairs.Find(model)</c>).</param>
        /// <param name="lr">Learning rate.</param>
        /// <param name="beta1">First-moment decay.</param>
        /// <param name="beta2">Second-moment decay.</param>
        /// <param name="eps">Added after the square root of the preconditioner's eigenvalues (the reference's 1e-6).</param>
        /// <param name="weight_decay">Weight decay added to the preconditioned update (decoupled, scaled by lr).</param>
        /// <param name="clip_unmagnified_grad">Clip the global 2-norm of all unmagnified gradients to this value (0: off).</param>
        /// <param name="update_skipping">Zero a factor's unmagnified gradient whose RMS exceeds this value (0: off).</param>
        /// <param name="update_capping">Scale a factor's first moment down to this RMS before it is used (0: off).</param>
        /// <param name="apply_escape">Track the "escaped mass" of the second moment lost by the basis change and add it to
        /// the preconditioner's eigenvalues.</param>
        /// <param name="balance_param">After the step, rescale A and B to the geometric mean of their norms.</param>
        /// <returns>The optimizer.</returns>
        public static LoraRiteOptimizer LoraRite(IEnumerable<ParamGroup> groups, IEnumerable<LoraPair> pairs, double lr = 1e-3, double beta1 = 0.9,
            double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0, double clip_unmagnified_grad = 1.0, double update_skipping = 1.0,
            double update_capping = 0, bool apply_escape = false, bool balance_param = false)
            => new(groups, pairs, lr, beta1, beta2, eps, weight_decay, clip_unmagnified_grad, update_skipping, update_capping, apply_escape, balance_param);

        /// <summary>
        /// LoRA-RITE, the transformation-invariant adaptive optimizer for LoRA pairs, following the first author's PyTorch
        /// port (<c>gkevinyen5418/LoRA-RITE: lora_rite.py</c>). The update of s·B·A does not depend on how the product is
        /// factored (A → M·A, B → B·M⁻¹). For each pair, with the r axis last (Â = Aᵀ [in, r], B [out, r]), t the pair's
        /// 0-based step count and the bias-corrected decay β̂ = β·(1 − β^t)/(1 − β^(t+1)):
        /// <code>
        /// 1. QR: Â = U_A·R_A,  B = U_B·R_B;  basis transports P_A = U_Bᵀ·U_B,old,  P_B = U_Aᵀ·U_A,old (0 at the first step)
        /// 2. unmagnified gradients ḡ_A = g_Aᵀ·R_B⁺,  ḡ_B = g_B·R_A⁺;  a factor whose RMS(ḡ) &gt; update_skipping is zeroed;
        ///    all ḡ of the optimizer are scaled by min(1, clip/‖ḡ‖) (one global norm)
        /// 3. V = sym((1 − β̂2)·ḡᵀḡ/rows(ḡ) + β̂2·P·V·Pᵀ)                                    (r×r)
        /// 4. S = ḡ·Q·diag(1/(√(max(w, 0) + e) + ε))·Qᵀ  with V = Q·diag(w)·Qᵀ (e: escaped mass, 0 unless apply_escape)
        /// 5. M = (1 − β̂1)·S + β̂1·M·Pᵀ;  M capped to RMS update_capping when set
        /// 6. Δ_A = (M_A·R_B⁺ᵀ)ᵀ,  Δ_B = M_B·R_A⁺ᵀ;  with weight decay λ: Δ = Δ + λ·θ;  θ = θ − lr·Δ
        /// </code>
        /// (the unmagnified gradient of A uses B's R and vice versa). Deviation: eigenvalues of V are clamped at 0 before
        /// the square root; the port lets a rounding-negative eigenvalue give NaN, which it then turns into a zero update.
        /// The port's <c>relative_epsilon</c> path reads an undefined variable and is not offered. State on A and on B:
        /// <c>rite_v</c> (r×r), <c>rite_m</c> and <c>rite_basis</c> (the factor with its r axis last), <c>rite_escape</c> (a
        /// scalar tensor, with apply_escape), and <c>step</c> on A. Parameters outside pairs take an AdamW step
        /// (<see cref="LoraPairOptimizer.AdamWStep"/>; the port assumes every parameter is a factor).
        /// </summary>
        public sealed class LoraRiteOptimizer : LoraPairOptimizer
        {
            /// <summary>Creates the optimizer.</summary>
            /// <param name="groups">The trainable parameters.</param>
            /// <param name="pairs">The LoRA pairs, matched by module.</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="beta1">First-moment decay.</param>
            /// <param name="beta2">Second-moment decay.</param>
            /// <param name="eps">Added after the square root of the eigenvalues.</param>
            /// <param name="weight_decay">Weight decay.</param>
            /// <param name="clip_unmagnified_grad">Global clip of the unmagnified gradients (0: off).</param>
            /// <param name="update_skipping">RMS above which a factor's unmagnified gradient is zeroed (0: off).</param>
            /// <param name="update_capping">RMS cap of the first moment (0: off).</param>
            /// <param name="apply_escape">Add the escaped second-moment mass to the eigenvalues.</param>
            /// <param name="balance_param">Balance the norms of A and B after each step.</param>
            public LoraRiteOptimizer(IEnumerable<ParamGroup> groups, IEnumerable<LoraPair> pairs, double lr = 1e-3, double beta1 = 0.9,
                double beta2 = 0.999, double eps = 1e-6, double weight_decay = 0, double clip_unmagnified_grad = 1.0, double update_skipping = 1.0,
                double update_capping = 0, bool apply_escape = false, bool balance_param = false)
                : base(groups, pairs, new Defaults(lr, weight_decay, beta1, beta2, eps), trainsA: true)
            {
                if (!(clip_unmagnified_grad >= 0)) throw new ArgumentOutOfRangeException(nameof(clip_unmagnified_grad), clip_unmagnified_grad, "must be >= 0");
                if (!(update_skipping >= 0)) throw new ArgumentOutOfRangeException(nameof(update_skipping), update_skipping, "must be >= 0");
                if (!(update_capping >= 0)) throw new ArgumentOutOfRangeException(nameof(update_capping), update_capping, "must be >= 0");
                this.clip_unmagnified_grad = clip_unmagnified_grad;
                this.update_skipping = update_skipping;
                this.update_capping = update_capping;
                this.apply_escape = apply_escape;
                this.balance_param = balance_param;
            }

            /// <summary>Global clip of the unmagnified gradients (0: off).</summary>
            public double clip_unmagnified_grad { get; }

            /// <summary>RMS above which a factor's unmagnified gradient is zeroed (0: off).</summary>
            public double update_skipping { get; }

            /// <summary>RMS cap of the first moment (0: off).</summary>
            public double update_capping { get; }

            /// <summary>Whether the escaped second-moment mass is tracked and added to the eigenvalues.</summary>
            public bool apply_escape { get; }

            /// <summary>Whether A and B are rescaled to the geometric mean of their norms after each step.</summary>
            public bool balance_param { get; }

            private sealed class Work
            {
                public required LoraPair Pair;
                public required Tensor RInvA, RInvB, GradA, GradB, TransportA, TransportB;
            }

            /// <inheritdoc/>
            protected override void StepPairs()
            {
                var work = new List<Work>();
                Tensor? normSq = null;
                foreach (var pair in pairs)
                {
                    var ga = pair.A.grad;
                    var gb = pair.B.grad;
                    if (ga is null && gb is null) continue;
                    var ct = ComputeType(pair.B);
                    var aHat = pair.A.detach().to_type(ct).t();
                    var b = pair.B.detach().to_type(ct);
                    var (uA, rA) = linalg.qr(aHat);
                    var (uB, rB) = linalg.qr(b);
                    var rInvA = linalg.pinv(rA);
                    var rInvB = linalg.pinv(rB);
                    var sA = state(pair.A);
                    var sB = state(pair.B);
                    var transportA = Transport(uB, sB);
                    var transportB = Transport(uA, sA);
                    var gA = (ga is null ? zeros_like(aHat) : ga.to_type(ct).t()).matmul(rInvB);
                    var gB = (gb is null ? zeros_like(b) : gb.to_type(ct)).matmul(rInvA);
                    if (update_skipping > 0)
                    {
                        gA = Skip(gA, update_skipping);
                        gB = Skip(gB, update_skipping);
                    }
                    sA.Set("rite_basis", uA);
                    sB.Set("rite_basis", uB);
                    var sq = gA.square().sum() + gB.square().sum();
                    normSq = normSq is null ? sq : normSq + sq.to_type(normSq.dtype);
                    work.Add(new Work { Pair = pair, RInvA = rInvA, RInvB = rInvB, GradA = gA, GradB = gB, TransportA = transportA, TransportB = transportB });
                }
                if (work.Count == 0) return;

                Tensor? clipFactor = null;
                if (clip_unmagnified_grad > 0)
                {
                    // min(1, clip/‖ḡ‖) without a device sync; a zero norm gives 1.
                    var norm = normSq!.sqrt();
                    clipFactor = clip_unmagnified_grad / norm.clamp_min(clip_unmagnified_grad);
                }

                foreach (var w in work)
                {
                    var pair = w.Pair;
                    var sA = state(pair.A);
                    var sB = state(pair.B);
                    double t = sA.Scalars.TryGetValue("step", out var saved) ? saved : 0;
                    var gA = clipFactor is null ? w.GradA : w.GradA * clipFactor.to_type(w.GradA.dtype);
                    var gB = clipFactor is null ? w.GradB : w.GradB * clipFactor.to_type(w.GradB.dtype);
                    var groupA = GroupOf(pair.A);
                    var groupB = GroupOf(pair.B);
                    double beta1 = groupB.Beta1, beta2 = groupB.Beta2, eps = groupB.Eps;
                    double b1 = BiasCorrectedDecay(t, beta1), b2 = BiasCorrectedDecay(t, beta2);

                    var mA = Precondition(sA, gA, w.TransportA, t, b1, b2, eps);
                    var mB = Precondition(sB, gB, w.TransportB, t, b1, b2, eps);
                    var upA = mA.matmul(w.RInvB.t());
                    var upB = mB.matmul(w.RInvA.t());
                    var aHat = pair.A.detach().to_type(upA.dtype).t();
                    var b = pair.B.detach().to_type(upB.dtype);
                    if (groupA.WeightDecay > 0) upA = upA + aHat * groupA.WeightDecay;
                    if (groupB.WeightDecay > 0) upB = upB + b * groupB.WeightDecay;
                    var dA = upA * -groupA.LearningRate;
                    var dB = upB * -groupB.LearningRate;
                    if (balance_param)
                    {
                        var nA = (aHat + dA).norm() + 1e-6;
                        var nB = (b + dB).norm() + 1e-6;
                        var balanced = (nA * nB).sqrt();
                        dA = dA * (balanced / nA) + aHat * (balanced / nA - 1);
                        dB = dB * (balanced / nB) + b * (balanced / nB - 1);
                    }
                    pair.A.add_(dA.t().to_type(pair.A.dtype));
                    pair.B.add_(dB.to_type(pair.B.dtype));
                    sA.Scalars["step"] = t + 1;
                }
            }

            /// <summary>P = U_newᵀ·U_old, or 0 before the first step.</summary>
            private static Tensor Transport(Tensor basis, ParamState s)
                => s.Tensors.TryGetValue("rite_basis", out var old)
                    ? basis.t().matmul(old.to_type(basis.dtype))
                    : zeros(new[] { basis.size(1), basis.size(1) }, basis.dtype, basis.device);

            /// <summary>Zero when RMS(g) &gt; threshold (a NaN RMS keeps g, as the port's comparison does).</summary>
            private static Tensor Skip(Tensor g, double threshold)
            {
                var rms = g.square().mean().sqrt();
                return g * rms.gt(threshold).logical_not().to_type(g.dtype);
            }

            /// <summary>The port's bias-corrected decay for 0-based step t: β·(1 − β^t)/(1 − β^(t+1)).</summary>
            internal static double BiasCorrectedDecay(double t, double beta) => beta * (1 - Math.Pow(beta, t)) / (1 - Math.Pow(beta, t + 1));

            private static Tensor Sym(Tensor x) => (x + x.t()) * 0.5;

            /// <summary>Steps 3-5 for one factor: updates rite_v / rite_m (/ rite_escape) and returns the new first moment.</summary>
            private Tensor Precondition(ParamState s, Tensor g, Tensor transport, double t, double b1, double b2, double eps)
            {
                long r = g.size(1);
                var second = Sym(g.t().matmul(g) / g.size(0));
                var vOld = s.Tensors.TryGetValue("rite_v", out var vo) ? vo.to_type(g.dtype) : zeros(new[] { r, r }, g.dtype, g.device);
                var vTransported = Sym(transport.matmul(vOld).matmul(transport.t())).nan_to_num();
                Tensor? escape = null;
                if (apply_escape)
                {
                    var escOld = s.Tensors.TryGetValue("rite_escape", out var eo) ? eo.to_type(g.dtype) : zeros(Array.Empty<long>(), g.dtype, g.device);
                    var eigDiff = (linalg.eigvalsh(vOld) - linalg.eigvalsh(vTransported)).max().clamp_min(0);
                    var traceDiff = (vOld.diagonal().sum() - vTransported.diagonal().sum()).clamp_min(0);
                    escape = (eigDiff.minimum(traceDiff) + escOld) * b2;
                    s.Set("rite_escape", escape.clone());
                }
                var v = Sym(second * (1 - b2) + vTransported * b2);
                var (w, q) = linalg.eigh(Sym(v));
                w = w.clamp_min(0);
                if (escape is not null) w = w + escape;
                var inv = (w.sqrt() + eps).reciprocal();
                var qir = Sym((q * inv.unsqueeze(0)).matmul(q.t()));
                var precond = g.matmul(qir).nan_to_num();
                var mOld = s.Tensors.TryGetValue("rite_m", out var mo) ? mo.to_type(g.dtype) : zeros_like(g);
                var m = precond * (1 - b1) + mOld.matmul(transport.t()) * b1;
                s.Set("rite_v", v);
                s.Set("rite_m", m);
                if (update_capping > 0)
                {
                    var rms = m.square().mean().sqrt().nan_to_num(double.NaN, double.NaN, double.NaN);
                    return m / (rms / update_capping).clamp_min(1);
                }
                return m;
            }
        }
    }
}
