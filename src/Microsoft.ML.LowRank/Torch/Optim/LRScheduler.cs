namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public static partial class optim
    {
        /// <summary>Learning-rate schedulers (PyTorch's <c>torch.optim.lr_scheduler</c>) and Hugging Face's warmup schedules.</summary>
        public static class lr_scheduler
        {
            /// <summary>
            /// Base of the schedulers. A scheduler owns a step counter <see cref="last_epoch"/> (PyTorch's name; in step-based
            /// training it counts optimizer steps) and sets every group's learning rate from its base learning rate. Creating it
            /// performs the initial step (counter 0), so the first optimizer step uses the rate for step 0; call
            /// <see cref="step"/> after every <see cref="Optimizer.step"/>.
            /// </summary>
            public abstract class LRScheduler
            {
                private readonly double[] _baseLrs;
                private double[] _lastLrs;

                /// <summary>Attaches the scheduler: records each group's <see cref="ParamGroup.InitialLearningRate"/> (the
                /// current rate, unless a scheduler already recorded one) as its base rate.</summary>
                /// <param name="optimizer">The optimizer.</param>
                protected LRScheduler(Optimizer optimizer)
                {
                    this.optimizer = optimizer ?? throw new ArgumentNullException(nameof(optimizer));
                    var groups = optimizer.param_groups;
                    _baseLrs = new double[groups.Count];
                    for (int i = 0; i < groups.Count; i++)
                    {
                        if (!groups[i].HasInitialLearningRate) groups[i].InitialLearningRate = groups[i].LearningRate;
                        _baseLrs[i] = groups[i].InitialLearningRate;
                    }
                    _lastLrs = (double[])_baseLrs.Clone();
                    last_epoch = -1;
                }

                /// <summary>Performs the initial step; derived constructors call it once they are fully set up.</summary>
                protected void InitialStep() => step();

                /// <summary>The optimizer whose rates this scheduler sets.</summary>
                public Optimizer optimizer { get; }

                /// <summary>Number of <see cref="step"/> calls after the initial one (0 right after construction).</summary>
                public int last_epoch { get; private set; }

                /// <summary>The base learning rate of each group.</summary>
                public IReadOnlyList<double> base_lrs => _baseLrs;

                /// <summary>The learning rates last set, one per group.</summary>
                /// <returns>The rates.</returns>
                public double[] get_last_lr() => (double[])_lastLrs.Clone();

                /// <summary>The learning rate of each group for step counter <paramref name="step"/>.</summary>
                /// <param name="step">The counter value.</param>
                /// <param name="baseLrs">The base rates.</param>
                /// <returns>One rate per group.</returns>
                protected abstract double[] ComputeLearningRates(int step, IReadOnlyList<double> baseLrs);

                /// <summary>Advances the counter and sets each group's learning rate.</summary>
                public void step()
                {
                    last_epoch++;
                    Apply();
                }

                private void Apply()
                {
                    var lrs = ComputeLearningRates(last_epoch, _baseLrs);
                    var groups = optimizer.param_groups;
                    if (lrs.Length != groups.Count) throw new InvalidOperationException($"the scheduler computed {lrs.Length} rates for {groups.Count} groups");
                    for (int i = 0; i < groups.Count; i++) groups[i].LearningRate = lrs[i];
                    _lastLrs = lrs;
                }

                /// <summary>The scheduler's state: the step counter and the base rates.</summary>
                /// <returns>The state.</returns>
                public SchedulerState state_dict() => new(last_epoch, (double[])_baseLrs.Clone());

                /// <summary>Restores a state and sets the groups' rates for its step counter.</summary>
                /// <param name="state">The state from <see cref="state_dict"/>.</param>
                public void load_state_dict(SchedulerState state)
                {
                    ArgumentNullException.ThrowIfNull(state);
                    if (state.base_lrs.Length != _baseLrs.Length)
                        throw new ArgumentException($"the saved scheduler has {state.base_lrs.Length} groups, this one {_baseLrs.Length}", nameof(state));
                    Array.Copy(state.base_lrs, _baseLrs, _baseLrs.Length);
                    last_epoch = state.last_epoch;
                    Apply();
                }
            }

            /// <summary>A scheduler's serialisable state.</summary>
            /// <param name="last_epoch">The step counter.</param>
            /// <param name="base_lrs">The base learning rate of each group.</param>
            public sealed record SchedulerState(int last_epoch, double[] base_lrs);

            /// <summary>Sets each group's rate to its base rate times a factor computed from the step counter.</summary>
            public sealed class LambdaLRScheduler : LRScheduler
            {
                private readonly Func<int, double>[] _lambdas;

                /// <summary>Creates the scheduler.</summary>
                /// <param name="optimizer">The optimizer.</param>
                /// <param name="lr_lambdas">One factor function for every group, or a single one shared by all groups.</param>
                public LambdaLRScheduler(Optimizer optimizer, IReadOnlyList<Func<int, double>> lr_lambdas) : base(optimizer)
                {
                    ArgumentNullException.ThrowIfNull(lr_lambdas);
                    int n = optimizer.param_groups.Count;
                    if (lr_lambdas.Count == 1) _lambdas = Enumerable.Repeat(lr_lambdas[0], n).ToArray();
                    else if (lr_lambdas.Count == n) _lambdas = lr_lambdas.ToArray();
                    else throw new ArgumentException($"expected 1 or {n} lambdas, got {lr_lambdas.Count}", nameof(lr_lambdas));
                    foreach (var f in _lambdas) ArgumentNullException.ThrowIfNull(f, nameof(lr_lambdas));
                    InitialStep();
                }

                /// <inheritdoc/>
                protected override double[] ComputeLearningRates(int step, IReadOnlyList<double> baseLrs)
                {
                    var r = new double[baseLrs.Count];
                    for (int i = 0; i < r.Length; i++) r[i] = baseLrs[i] * _lambdas[i](step);
                    return r;
                }
            }

            /// <summary>A scheduler that multiplies each base rate by <paramref name="lr_lambda"/>(step).</summary>
            /// <param name="optimizer">The optimizer.</param>
            /// <param name="lr_lambda">The factor function.</param>
            /// <returns>The scheduler.</returns>
            public static LambdaLRScheduler LambdaLR(Optimizer optimizer, Func<int, double> lr_lambda)
                => new(optimizer, new[] { lr_lambda ?? throw new ArgumentNullException(nameof(lr_lambda)) });

            /// <summary>A scheduler with one factor function per group.</summary>
            /// <param name="optimizer">The optimizer.</param>
            /// <param name="lr_lambdas">The factor functions.</param>
            /// <returns>The scheduler.</returns>
            public static LambdaLRScheduler LambdaLR(Optimizer optimizer, IReadOnlyList<Func<int, double>> lr_lambdas) => new(optimizer, lr_lambdas);

            /// <summary>Hugging Face's constant schedule: factor 1.</summary>
            /// <param name="optimizer">The optimizer.</param>
            /// <returns>The scheduler.</returns>
            public static LambdaLRScheduler get_constant_schedule(Optimizer optimizer) => LambdaLR(optimizer, _ => 1.0);

            /// <summary>Hugging Face's constant schedule with linear warmup: step/max(1, warmup) during warmup, then 1.</summary>
            /// <param name="optimizer">The optimizer.</param>
            /// <param name="num_warmup_steps">Warmup steps.</param>
            /// <returns>The scheduler.</returns>
            public static LambdaLRScheduler get_constant_schedule_with_warmup(Optimizer optimizer, int num_warmup_steps)
            {
                CheckSteps(num_warmup_steps, 0);
                return LambdaLR(optimizer, s => ConstantWithWarmupFactor(s, num_warmup_steps));
            }

            /// <summary>Hugging Face's linear schedule: step/max(1, warmup) during warmup, then
            /// max(0, (total − step)/max(1, total − warmup)).</summary>
            /// <param name="optimizer">The optimizer.</param>
            /// <param name="num_warmup_steps">Warmup steps.</param>
            /// <param name="num_training_steps">Total optimizer steps.</param>
            /// <returns>The scheduler.</returns>
            public static LambdaLRScheduler get_linear_schedule_with_warmup(Optimizer optimizer, int num_warmup_steps, int num_training_steps)
            {
                CheckSteps(num_warmup_steps, num_training_steps);
                return LambdaLR(optimizer, s => LinearWithWarmupFactor(s, num_warmup_steps, num_training_steps));
            }

            /// <summary>Hugging Face's cosine schedule: step/max(1, warmup) during warmup, then
            /// max(0, ½(1 + cos(π · 2·num_cycles · progress))) with progress = (step − warmup)/max(1, total − warmup).</summary>
            /// <param name="optimizer">The optimizer.</param>
            /// <param name="num_warmup_steps">Warmup steps.</param>
            /// <param name="num_training_steps">Total optimizer steps.</param>
            /// <param name="num_cycles">Number of cosine waves (0.5: a single decrease from the peak to 0).</param>
            /// <returns>The scheduler.</returns>
            public static LambdaLRScheduler get_cosine_schedule_with_warmup(Optimizer optimizer, int num_warmup_steps, int num_training_steps, double num_cycles = 0.5)
            {
                CheckSteps(num_warmup_steps, num_training_steps);
                return LambdaLR(optimizer, s => CosineWithWarmupFactor(s, num_warmup_steps, num_training_steps, num_cycles));
            }

            private static void CheckSteps(int warmup, int total)
            {
                if (warmup < 0) throw new ArgumentOutOfRangeException("num_warmup_steps", warmup, "must be >= 0");
                if (total < 0) throw new ArgumentOutOfRangeException("num_training_steps", total, "must be >= 0");
            }

            internal static double ConstantWithWarmupFactor(int step, int warmup)
                => step < warmup ? (double)step / Math.Max(1.0, warmup) : 1.0;

            internal static double LinearWithWarmupFactor(int step, int warmup, int total)
            {
                if (step < warmup) return (double)step / Math.Max(1, warmup);
                return Math.Max(0.0, (double)(total - step) / Math.Max(1, total - warmup));
            }

            internal static double CosineWithWarmupFactor(int step, int warmup, int total, double cycles)
            {
                if (step < warmup) return (double)step / Math.Max(1, warmup);
                double progress = (double)(step - warmup) / Math.Max(1, total - warmup);
                return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * cycles * 2.0 * progress)));
            }
        }
    }
}
