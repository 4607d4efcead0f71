namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    /// <summary>Optimizers, parameter groups and learning-rate schedulers (PyTorch's <c>torch.optim</c>).</summary>
    public static partial class optim
    {
        /// <summary>
        /// A set of parameters that share hyper-parameters. Every hyper-parameter left unset (null in the constructor)
        /// takes the optimizer-wide default when the group is added to an optimizer; after that the properties hold the
        /// resolved values and may be changed between steps (schedulers change <see cref="LearningRate"/>).
        /// Hyper-parameters an optimizer does not use are ignored by it.
        /// </summary>
        public sealed class ParamGroup
        {
            private readonly List<nn.Parameter> _parameters;
            private readonly List<string>? _names;
            private double? _lr, _wd, _beta1, _beta2, _eps, _momentum, _dampening, _initialLr;
            private bool? _amsgrad, _maximize, _nesterov;

            /// <summary>Creates a group.</summary>
            /// <param name="parameters">The parameters (each may belong to one group of an optimizer only).</param>
            /// <param name="lr">Learning rate.</param>
            /// <param name="weight_decay">Weight decay (decoupled for AdamW, L2 for SGD).</param>
            /// <param name="beta1">Adam's first-moment decay.</param>
            /// <param name="beta2">Adam's second-moment decay.</param>
            /// <param name="eps">Adam's denominator term.</param>
            /// <param name="amsgrad">Adam's AMSGrad variant.</param>
            /// <param name="maximize">Maximise the objective instead of minimising it.</param>
            /// <param name="momentum">SGD momentum.</param>
            /// <param name="dampening">SGD momentum dampening.</param>
            /// <param name="nesterov">SGD Nesterov momentum.</param>
            /// <param name="name">A label for the group (logging, diagnostics).</param>
            /// <param name="parameter_names">Optional names of the parameters, in the same order.</param>
            public ParamGroup(IEnumerable<nn.Parameter> parameters, double? lr = null, double? weight_decay = null, double? beta1 = null,
                double? beta2 = null, double? eps = null, bool? amsgrad = null, bool? maximize = null, double? momentum = null,
                double? dampening = null, bool? nesterov = null, string? name = null, IEnumerable<string>? parameter_names = null)
            {
                ArgumentNullException.ThrowIfNull(parameters);
                _parameters = parameters.ToList();
                for (int i = 0; i < _parameters.Count; i++)
                    if (_parameters[i] is null) throw new ArgumentException($"parameter {i} of the group is null", nameof(parameters));
                if (parameter_names is not null)
                {
                    _names = parameter_names.ToList();
                    if (_names.Count != _parameters.Count)
                        throw new ArgumentException($"{_names.Count} names were given for {_parameters.Count} parameters", nameof(parameter_names));
                }
                _lr = lr; _wd = weight_decay; _beta1 = beta1; _beta2 = beta2; _eps = eps; _amsgrad = amsgrad; _maximize = maximize;
                _momentum = momentum; _dampening = dampening; _nesterov = nesterov;
                Name = name;
            }

            /// <summary>Creates a group from named parameters (the names are kept for diagnostics).</summary>
            /// <param name="parameters">(name, parameter) pairs.</param>
            /// <param name="lr">Learning rate (null: the optimizer's).</param>
            /// <param name="weight_decay">Weight decay (null: the optimizer's).</param>
            /// <param name="name">A label for the group.</param>
            /// <returns>The group.</returns>
            public static ParamGroup FromNamed(IEnumerable<(string name, nn.Parameter parameter)> parameters, double? lr = null,
                double? weight_decay = null, string? name = null)
            {
                ArgumentNullException.ThrowIfNull(parameters);
                var list = parameters.ToList();
                return new ParamGroup(list.Select(p => p.parameter), lr: lr, weight_decay: weight_decay, name: name,
                    parameter_names: list.Select(p => p.name));
            }

            /// <summary>The group's parameters.</summary>
            public IReadOnlyList<nn.Parameter> Parameters => _parameters;

            /// <summary>The parameters' names when known (same order as <see cref="Parameters"/>), else null.</summary>
            public IReadOnlyList<string>? ParameterNames => _names;

            /// <summary>A label for the group, or null.</summary>
            public string? Name { get; set; }

            /// <summary>The current learning rate.</summary>
            public double LearningRate { get => _lr ?? throw Unresolved(); set => _lr = value; }

            /// <summary>The learning rate schedulers scale (PyTorch's <c>initial_lr</c>); set by the first scheduler attached.</summary>
            public double InitialLearningRate { get => _initialLr ?? LearningRate; set => _initialLr = value; }

            /// <summary>Weight decay.</summary>
            public double WeightDecay { get => _wd ?? throw Unresolved(); set => _wd = value; }

            /// <summary>Adam's first-moment decay rate.</summary>
            public double Beta1 { get => _beta1 ?? throw Unresolved(); set => _beta1 = value; }

            /// <summary>Adam's second-moment decay rate.</summary>
            public double Beta2 { get => _beta2 ?? throw Unresolved(); set => _beta2 = value; }

            /// <summary>Adam's denominator term.</summary>
            public double Eps { get => _eps ?? throw Unresolved(); set => _eps = value; }

            /// <summary>Adam's AMSGrad variant.</summary>
            public bool AmsGrad { get => _amsgrad ?? throw Unresolved(); set => _amsgrad = value; }

            /// <summary>Maximise the objective.</summary>
            public bool Maximize { get => _maximize ?? throw Unresolved(); set => _maximize = value; }

            /// <summary>SGD momentum factor.</summary>
            public double Momentum { get => _momentum ?? throw Unresolved(); set => _momentum = value; }

            /// <summary>SGD dampening of the momentum update.</summary>
            public double Dampening { get => _dampening ?? throw Unresolved(); set => _dampening = value; }

            /// <summary>SGD Nesterov momentum.</summary>
            public bool Nesterov { get => _nesterov ?? throw Unresolved(); set => _nesterov = value; }

            internal bool HasInitialLearningRate => _initialLr.HasValue;

            internal void ResolveDefaults(Defaults d)
            {
                _lr ??= d.lr; _wd ??= d.weight_decay; _beta1 ??= d.beta1; _beta2 ??= d.beta2; _eps ??= d.eps;
                _amsgrad ??= d.amsgrad; _maximize ??= d.maximize; _momentum ??= d.momentum; _dampening ??= d.dampening; _nesterov ??= d.nesterov;
            }

            private static InvalidOperationException Unresolved()
                => new("this hyper-parameter was not set and the group has not been added to an optimizer yet");

            internal double Get(string key) => key switch
            {
                "lr" => LearningRate,
                "initial_lr" => InitialLearningRate,
                "weight_decay" => WeightDecay,
                "beta1" => Beta1,
                "beta2" => Beta2,
                "eps" => Eps,
                "amsgrad" => AmsGrad ? 1 : 0,
                "maximize" => Maximize ? 1 : 0,
                "momentum" => Momentum,
                "dampening" => Dampening,
                "nesterov" => Nesterov ? 1 : 0,
                _ => throw new KeyNotFoundException(key),
            };

            internal void Set(string key, double v)
            {
                switch (key)
                {
                    case "lr": LearningRate = v; break;
                    case "initial_lr": InitialLearningRate = v; break;
                    case "weight_decay": WeightDecay = v; break;
                    case "beta1": Beta1 = v; break;
                    case "beta2": Beta2 = v; break;
                    case "eps": Eps = v; break;
                    case "amsgrad": AmsGrad = v != 0; break;
                    case "maximize": Maximize = v != 0; break;
                    case "momentum": Momentum = v; break;
                    case "dampening": Dampening = v; break;
                    case "nesterov": Nesterov = v != 0; break;
                    default: throw new KeyNotFoundException(key);
                }
            }

            internal static readonly string[] Keys =
                { "lr", "initial_lr", "weight_decay", "beta1", "beta2", "eps", "amsgrad", "maximize", "momentum", "dampening", "nesterov" };
        }

        /// <summary>Optimizer-wide hyper-parameter defaults, applied to groups that leave a value unset.</summary>
        /// <param name="lr">Learning rate.</param>
        /// <param name="weight_decay">Weight decay.</param>
        /// <param name="beta1">First-moment decay.</param>
        /// <param name="beta2">Second-moment decay.</param>
        /// <param name="eps">Denominator term.</param>
        /// <param name="amsgrad">AMSGrad.</param>
        /// <param name="maximize">Maximise.</param>
        /// <param name="momentum">Momentum.</param>
        /// <param name="dampening">Dampening.</param>
        /// <param name="nesterov">Nesterov.</param>
        public sealed record Defaults(double lr, double weight_decay = 0, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
            bool amsgrad = false, bool maximize = false, double momentum = 0, double dampening = 0, bool nesterov = false);

        /// <summary>
        /// The per-parameter state an optimizer keeps (moments, step counts). Tensors are owned by the optimizer
        /// (detached from every dispose scope) and freed when it is disposed or the state is reset.
        /// </summary>
        public sealed class ParamState
        {
            /// <summary>State tensors by name (e.g. "exp_avg").</summary>
            public Dictionary<string, Tensor> Tensors { get; } = new(StringComparer.Ordinal);

            /// <summary>State scalars by name (e.g. "step").</summary>
            public Dictionary<string, double> Scalars { get; } = new(StringComparer.Ordinal);

            /// <summary>Stores a state tensor, taking ownership of it (detaches it from dispose scopes; disposes any previous one).</summary>
            /// <param name="name">The name.</param>
            /// <param name="value">The tensor.</param>
            /// <returns>The tensor.</returns>
            public Tensor Set(string name, Tensor value)
            {
                ArgumentNullException.ThrowIfNull(value);
                value.DetachFromDisposeScope();
                if (Tensors.TryGetValue(name, out var old) && !ReferenceEquals(old, value)) old.Dispose();
                Tensors[name] = value;
                return value;
            }

            /// <summary>Frees every state tensor and clears the scalars.</summary>
            public void Clear()
            {
                foreach (var t in Tensors.Values) t.Dispose();
                Tensors.Clear();
                Scalars.Clear();
            }
        }

        /// <summary>
        /// A flat, serialisable snapshot of an optimizer: state tensors keyed <c>state.{index}.{name}</c> and scalars keyed
        /// <c>state.{index}.{name}</c> or <c>param_groups.{group}.{hyper-parameter}</c>, where index counts parameters across
        /// groups in order (PyTorch's convention). The tensors are aliases the snapshot owns: dispose it when done.
        /// </summary>
        public sealed class OptimizerState : IDisposable
        {
            /// <summary>State tensors.</summary>
            public Dictionary<string, Tensor> Tensors { get; } = new(StringComparer.Ordinal);

            /// <summary>Scalars: per-parameter state and group hyper-parameters.</summary>
            public Dictionary<string, double> Scalars { get; } = new(StringComparer.Ordinal);

            /// <summary>Frees the tensor aliases.</summary>
            public void Dispose()
            {
                foreach (var t in Tensors.Values) t.Dispose();
                Tensors.Clear();
            }
        }

        /// <summary>
        /// Base of every optimizer: parameter groups with per-group hyper-parameters, per-parameter state, gradient clearing,
        /// state save/restore. Subclasses implement <see cref="step"/>, normally under <see cref="no_grad"/> with in-place ops.
        /// Dispose the optimizer to free its state tensors.
        /// </summary>
        public abstract class Optimizer : IDisposable
        {
            private readonly List<ParamGroup> _groups = new();
            private readonly Dictionary<nn.Parameter, ParamState> _state = new(ReferenceEqualityComparer.Instance);
            private bool _disposed;

            /// <summary>Creates an optimizer.</summary>
            /// <param name="groups">The parameter groups.</param>
            /// <param name="defaults">Defaults for hyper-parameters the groups leave unset.</param>
            protected Optimizer(IEnumerable<ParamGroup> groups, Defaults defaults)
            {
                ArgumentNullException.ThrowIfNull(groups);
                this.defaults = defaults ?? throw new ArgumentNullException(nameof(defaults));
                foreach (var g in groups) add_param_group(g);
                if (_groups.Count == 0) throw new ArgumentException("an optimizer needs at least one parameter group", nameof(groups));
            }

            /// <summary>Wraps a plain parameter list as one group.</summary>
            /// <param name="parameters">The parameters.</param>
            /// <returns>A one-element group list.</returns>
            protected static IEnumerable<ParamGroup> Single(IEnumerable<nn.Parameter> parameters)
            {
                ArgumentNullException.ThrowIfNull(parameters);
                return new[] { new ParamGroup(parameters) };
            }

            /// <summary>The optimizer-wide defaults.</summary>
            public Defaults defaults { get; }

            /// <summary>The parameter groups, in order.</summary>
            public IReadOnlyList<ParamGroup> param_groups => _groups;

            /// <summary>Every parameter, group by group.</summary>
            /// <returns>The parameters.</returns>
            public IEnumerable<nn.Parameter> parameters() => _groups.SelectMany(g => g.Parameters);

            /// <summary>Adds a group, filling unset hyper-parameters from <see cref="defaults"/>.</summary>
            /// <param name="group">The group.</param>
            public void add_param_group(ParamGroup group)
            {
                ArgumentNullException.ThrowIfNull(group);
                var seen = new HashSet<nn.Parameter>(parameters(), ReferenceEqualityComparer.Instance);
                foreach (var p in group.Parameters)
                {
                    if (!seen.Add(p)) throw new ArgumentException("a parameter appears in more than one group (or twice in one group)", nameof(group));
                    if (!p.dtype.IsFloatingPoint()) throw new ArgumentException($"optimizers update floating-point parameters only, not {p.dtype}", nameof(group));
                }
                group.ResolveDefaults(defaults);
                Validate(group);
                _groups.Add(group);
            }

            /// <summary>Checks a group's hyper-parameters (throws <see cref="ArgumentOutOfRangeException"/> on bad values).</summary>
            /// <param name="group">The resolved group.</param>
            protected virtual void Validate(ParamGroup group)
            {
                if (!(group.LearningRate >= 0)) throw new ArgumentOutOfRangeException(nameof(group), group.LearningRate, "learning rate must be >= 0");
                if (!(group.WeightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(group), group.WeightDecay, "weight decay must be >= 0");
            }

            /// <summary>Clears (default) or zeroes the gradients of every parameter.</summary>
            /// <param name="set_to_none">Release the gradient tensors instead of zeroing them.</param>
            public void zero_grad(bool set_to_none = true)
            {
                foreach (var g in _groups)
                    foreach (var p in g.Parameters)
                    {
                        if (set_to_none) p.grad = null;
                        else p.zero_grad();
                    }
            }

            /// <summary>Performs one update of every parameter that has a gradient.</summary>
            public abstract void step();

            /// <summary>The state of a parameter (created empty on first use).</summary>
            /// <param name="parameter">A parameter of this optimizer.</param>
            /// <returns>Its state.</returns>
            public ParamState state(nn.Parameter parameter)
            {
                ArgumentNullException.ThrowIfNull(parameter);
                if (!_state.TryGetValue(parameter, out var s)) _state[parameter] = s = new ParamState();
                return s;
            }

            /// <summary>Whether a parameter has any state yet.</summary>
            /// <param name="parameter">The parameter.</param>
            /// <returns>True once the optimizer has stepped it.</returns>
            public bool has_state(nn.Parameter parameter) => _state.TryGetValue(parameter, out var s) && (s.Tensors.Count > 0 || s.Scalars.Count > 0);

            /// <summary>Forgets a parameter's state (moments, step count): the next step treats it as new. Used by methods that
            /// re-initialise adapters (PeriodicLoRA, COLA).</summary>
            /// <param name="parameter">The parameter.</param>
            public void reset_state(nn.Parameter parameter)
            {
                if (_state.Remove(parameter, out var s)) s.Clear();
            }

            /// <summary>A snapshot of the state and the group hyper-parameters (see <see cref="OptimizerState"/>).</summary>
            /// <returns>The snapshot; the caller disposes it.</returns>
            public OptimizerState state_dict()
            {
                var sd = new OptimizerState();
                int index = 0;
                for (int gi = 0; gi < _groups.Count; gi++)
                {
                    var g = _groups[gi];
                    foreach (var key in ParamGroup.Keys) sd.Scalars[$"param_groups.{gi}.{key}"] = g.Get(key);
                    sd.Scalars[$"param_groups.{gi}.count"] = g.Parameters.Count;
                    foreach (var p in g.Parameters)
                    {
                        if (_state.TryGetValue(p, out var s))
                        {
                            foreach (var (k, t) in s.Tensors)
                            {
                                var a = t.alias();
                                a.DetachFromDisposeScope();
                                sd.Tensors[$"state.{index}.{k}"] = a;
                            }
                            foreach (var (k, v) in s.Scalars) sd.Scalars[$"state.{index}.{k}"] = v;
                        }
                        index++;
                    }
                }
                return sd;
            }

            /// <summary>
            /// Restores a snapshot from <see cref="state_dict"/> of an optimizer with the same groups (same sizes, parameters of
            /// the same shapes in the same order). State tensors are copied (converted to each parameter's device), so the
            /// snapshot stays owned by the caller.
            /// </summary>
            /// <param name="state">The snapshot.</param>
            /// <exception cref="ArgumentException">The snapshot does not match this optimizer's groups.</exception>
            public void load_state_dict(OptimizerState state)
            {
                ArgumentNullException.ThrowIfNull(state);
                var all = parameters().ToList();
                for (int gi = 0; gi < _groups.Count; gi++)
                {
                    if (!state.Scalars.TryGetValue($"param_groups.{gi}.count", out var c))
                        throw new ArgumentException($"the saved optimizer state has no parameter group {gi} (this optimizer has {_groups.Count})", nameof(state));
                    if ((int)c != _groups[gi].Parameters.Count)
                        throw new ArgumentException($"parameter group {gi} has {_groups[gi].Parameters.Count} parameters but the saved state has {(int)c}", nameof(state));
                }
                if (state.Scalars.ContainsKey($"param_groups.{_groups.Count}.count"))
                    throw new ArgumentException($"the saved optimizer state has more parameter groups than this optimizer ({_groups.Count})", nameof(state));

                // Validate every tensor before changing anything.
                var parsed = new List<(int index, string name, Tensor value)>();
                foreach (var (key, t) in state.Tensors)
                {
                    var (index, name) = ParseStateKey(key, all.Count);
                    if (!t.shape.SequenceEqual(all[index].shape) && t.dim() != 0)
                    {
                        // Moments have the parameter's shape; other tensors (e.g. factored state) are accepted as they are.
                        if (name is "exp_avg" or "exp_avg_sq" or "max_exp_avg_sq" or "momentum_buffer")
                            throw new ArgumentException($"saved state '{key}' has shape [{string.Join(", ", t.shape)}] but parameter {index} has [{string.Join(", ", all[index].shape)}]", nameof(state));
                    }
                    parsed.Add((index, name, t));
                }

                foreach (var s in _state.Values) s.Clear();
                _state.Clear();
                using (NewDisposeScope())
                using (no_grad())
                {
                    foreach (var (index, name, t) in parsed)
                    {
                        var p = all[index];
                        var copy = t.dtype.IsFloatingPoint() && t.dtype != p.dtype && name is "exp_avg" or "exp_avg_sq" or "max_exp_avg_sq" or "momentum_buffer"
                            ? t.to(p.dtype, p.device)
                            : t.to(p.device);
                        copy = copy.is_same(t) ? copy.clone() : copy; // never share storage with the caller's snapshot
                        this.state(p).Set(name, copy);
                    }
                }
                foreach (var (key, v) in state.Scalars)
                {
                    if (key.StartsWith("state.", StringComparison.Ordinal))
                    {
                        var (index, name) = ParseStateKey(key, all.Count);
                        this.state(all[index]).Scalars[name] = v;
                    }
                }
                for (int gi = 0; gi < _groups.Count; gi++)
                    foreach (var k in ParamGroup.Keys)
                        if (state.Scalars.TryGetValue($"param_groups.{gi}.{k}", out var v)) _groups[gi].Set(k, v);
            }

            private static (int index, string name) ParseStateKey(string key, int count)
            {
                var parts = key.Split('.', 3);
                if (parts.Length != 3 || parts[0] != "state" || !int.TryParse(parts[1], out var index))
                    throw new ArgumentException($"unrecognised optimizer state key '{key}'", nameof(key));
                if (index < 0 || index >= count)
                    throw new ArgumentException($"optimizer state key '{key}' refers to parameter {index} but there are {count}", nameof(key));
                return (index, parts[2]);
            }

            /// <summary>Frees the state tensors.</summary>
            public void Dispose()
            {
                Dispose(true);
                GC.SuppressFinalize(this);
            }

            /// <summary>Frees the state tensors.</summary>
            /// <param name="disposing">True from <see cref="Dispose()"/>.</param>
            protected virtual void Dispose(bool disposing)
            {
                if (_disposed || !disposing) return;
                _disposed = true;
                foreach (var s in _state.Values) s.Clear();
                _state.Clear();
            }

            /// <summary>Throws when the optimizer has been disposed.</summary>
            protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
        }
    }
}
