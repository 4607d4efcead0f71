using System.Text;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    /// <summary>Neural-network modules, layers and functions.</summary>
    public static partial class nn
    {
        /// <summary>
        /// Base of every layer and model. Parameters, buffers and child modules are registered by name
        /// (<see cref="register_parameter"/>, <see cref="register_buffer"/>, <see cref="register_module"/>) in
        /// registration order; dotted paths of those names are the state-dict keys, so a model whose children are
        /// registered under Hugging Face's module names loads HF checkpoints by lookup. Disposing a module disposes
        /// everything it owns.
        /// </summary>
        public abstract class Module : IDisposable
        {
            private readonly List<(string Name, Parameter? Value)> _parameters = new();
            private readonly List<(string Name, Tensor? Value, bool Persistent)> _buffers = new();
            private readonly List<(string Name, Module Value)> _modules = new();
            private bool _disposed;

            /// <summary>Creates a module.</summary>
            /// <param name="name">The module's type name (for printing).</param>
            protected Module(string name) { this.name = name; }

            /// <summary>The module's type name.</summary>
            public string name { get; }

            /// <summary>True in training mode (dropout active), false in evaluation mode.</summary>
            public bool training { get; private set; } = true;

            // ---------------- registration ----------------

            /// <summary>Registers (or replaces, or with null removes the value of) a parameter.</summary>
            /// <param name="name">Name, without dots.</param>
            /// <param name="param">The parameter, or null for an absent optional parameter (e.g. no bias).</param>
            public void register_parameter(string name, Parameter? param)
            {
                CheckName(name);
                var i = _parameters.FindIndex(p => p.Name == name);
                if (i >= 0)
                {
                    if (_parameters[i].Value is { } old && !ReferenceEquals(old, param)) old.Dispose();
                    _parameters[i] = (name, param);
                }
                else
                {
                    if (_buffers.Exists(b => b.Name == name) || _modules.Exists(m => m.Name == name))
                        throw new ArgumentException($"'{name}' is already registered in {this.name} as a buffer or module", nameof(name));
                    _parameters.Add((name, param));
                }
            }

            /// <summary>Registers (or replaces) a buffer: state that is not trained (e.g. rotary tables, running stats).</summary>
            /// <param name="name">Name, without dots.</param>
            /// <param name="tensor">The buffer; detached from dispose scopes (the module owns it).</param>
            /// <param name="persistent">Whether it is part of the state dict.</param>
            public void register_buffer(string name, Tensor? tensor, bool persistent = true)
            {
                CheckName(name);
                tensor?.DetachFromDisposeScope();
                var i = _buffers.FindIndex(b => b.Name == name);
                if (i >= 0)
                {
                    if (_buffers[i].Value is { } old && !ReferenceEquals(old, tensor)) old.Dispose();
                    _buffers[i] = (name, tensor, persistent);
                }
                else
                {
                    if (_parameters.Exists(p => p.Name == name) || _modules.Exists(m => m.Name == name))
                        throw new ArgumentException($"'{name}' is already registered in {this.name} as a parameter or module", nameof(name));
                    _buffers.Add((name, tensor, persistent));
                }
            }

            /// <summary>Registers (or replaces) a child module.</summary>
            /// <param name="name">Name, without dots (numbers for list items, as in PyTorch's ModuleList).</param>
            /// <param name="module">The child.</param>
            /// <returns>The child.</returns>
            public T register_module<T>(string name, T module) where T : Module
            {
                CheckName(name);
                ArgumentNullException.ThrowIfNull(module);
                var i = _modules.FindIndex(m => m.Name == name);
                if (i >= 0) _modules[i] = (name, module);
                else
                {
                    if (_parameters.Exists(p => p.Name == name) || _buffers.Exists(b => b.Name == name))
                        throw new ArgumentException($"'{name}' is already registered in {this.name} as a parameter or buffer", nameof(name));
                    _modules.Add((name, module));
                }
                return module;
            }

            private static void CheckName(string name)
            {
                if (string.IsNullOrEmpty(name) || name.Contains('.'))
                    throw new ArgumentException($"invalid component name '{name}' (must be non-empty and contain no '.')", nameof(name));
            }

            // ---------------- introspection ----------------

            /// <summary>Parameters of this module and (when recursing) its descendants, with dotted names.</summary>
            /// <param name="recurse">Include descendants.</param>
            /// <returns>(name, parameter) pairs in registration order.</returns>
            public IEnumerable<(string name, Parameter parameter)> named_parameters(bool recurse = true)
            {
                var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
                foreach (var (prefix, m) in recurse ? named_modules() : new[] { ("", this) })
                    foreach (var (n, p) in m._parameters)
                        if (p is not null && seen.Add(p)) yield return (Join(prefix, n), p);
            }

            /// <summary>All parameters (each once, even when shared).</summary>
            /// <param name="recurse">Include descendants.</param>
            /// <returns>The parameters.</returns>
            public IEnumerable<Parameter> parameters(bool recurse = true) => named_parameters(recurse).Select(p => p.parameter);

            /// <summary>Buffers of this module and its descendants, with dotted names.</summary>
            /// <param name="recurse">Include descendants.</param>
            /// <param name="include_nonpersistent">Include buffers that are not saved.</param>
            /// <returns>(name, buffer) pairs.</returns>
            public IEnumerable<(string name, Tensor buffer)> named_buffers(bool recurse = true, bool include_nonpersistent = true)
            {
                foreach (var (prefix, m) in recurse ? named_modules() : new[] { ("", this) })
                    foreach (var (n, b, persistent) in m._buffers)
                        if (b is not null && (persistent || include_nonpersistent)) yield return (Join(prefix, n), b);
            }

            /// <summary>Buffers.</summary>
            /// <param name="recurse">Include descendants.</param>
            /// <returns>The buffers.</returns>
            public IEnumerable<Tensor> buffers(bool recurse = true) => named_buffers(recurse).Select(b => b.buffer);

            /// <summary>Direct children with their names.</summary>
            /// <returns>(name, child) pairs.</returns>
            public IEnumerable<(string name, Module module)> named_children() => _modules.Select(m => (m.Name, m.Value));

            /// <summary>Direct children.</summary>
            /// <returns>The children.</returns>
            public IEnumerable<Module> children() => _modules.Select(m => m.Value);

            /// <summary>This module ("") and every descendant with its dotted path, depth first, each once.</summary>
            /// <returns>(path, module) pairs.</returns>
            public IEnumerable<(string name, Module module)> named_modules()
            {
                var seen = new HashSet<Module>(ReferenceEqualityComparer.Instance);
                var stack = new Stack<(string, Module)>();
                stack.Push(("", this));
                while (stack.Count > 0)
                {
                    var (path, m) = stack.Pop();
                    if (!seen.Add(m)) continue;
                    yield return (path, m);
                    for (int i = m._modules.Count - 1; i >= 0; i--) stack.Push((Join(path, m._modules[i].Name), m._modules[i].Value));
                }
            }

            /// <summary>This module and every descendant.</summary>
            /// <returns>The modules.</returns>
            public IEnumerable<Module> modules() => named_modules().Select(m => m.module);

            /// <summary>The descendant at a dotted path ("" is this module).</summary>
            /// <param name="path">Dotted path such as "model.layers.0.self_attn".</param>
            /// <returns>The module.</returns>
            /// <exception cref="KeyNotFoundException">No such module; the message lists the available children.</exception>
            public Module get_submodule(string path)
            {
                var m = this;
                if (path.Length == 0) return m;
                foreach (var part in path.Split('.'))
                {
                    var i = m._modules.FindIndex(c => c.Name == part);
                    if (i < 0)
                        throw new KeyNotFoundException($"{m.name} has no child module '{part}' (in '{path}'); children: {string.Join(", ", m._modules.Select(c => c.Name))}");
                    m = m._modules[i].Value;
                }
                return m;
            }

            /// <summary>The parameter at a dotted path.</summary>
            /// <param name="path">Dotted path such as "lm_head.weight".</param>
            /// <returns>The parameter.</returns>
            public Parameter get_parameter(string path)
            {
                var (owner, leaf) = SplitPath(path);
                var i = owner._parameters.FindIndex(p => p.Name == leaf);
                if (i < 0 || owner._parameters[i].Value is null) throw new KeyNotFoundException($"no parameter '{path}'");
                return owner._parameters[i].Value!;
            }

            /// <summary>
            /// Replaces every registration of <paramref name="old"/> in this module tree (tied weights included) by
            /// <paramref name="replacement"/>, and disposes <paramref name="old"/>. Used to materialise parameters built on
            /// the meta device.
            /// </summary>
            /// <param name="old">A parameter of this tree.</param>
            /// <param name="replacement">The new parameter.</param>
            public void swap_parameter(Parameter old, Parameter replacement)
            {
                bool found = false;
                foreach (var m in modules())
                    for (int i = 0; i < m._parameters.Count; i++)
                        if (ReferenceEquals(m._parameters[i].Value, old))
                        {
                            m._parameters[i] = (m._parameters[i].Name, replacement);
                            found = true;
                        }
                if (!found) throw new ArgumentException("the parameter does not belong to this module", nameof(old));
                old.Dispose();
            }

            /// <summary>Replaces a registered child module by path (used by adapter injection).</summary>
            /// <param name="path">Dotted path of an existing child.</param>
            /// <param name="module">The replacement.</param>
            public void set_submodule(string path, Module module)
            {
                var (owner, leaf) = SplitPath(path);
                if (!owner._modules.Exists(m => m.Name == leaf)) throw new KeyNotFoundException($"no module '{path}'");
                owner.register_module(leaf, module);
            }

            private (Module owner, string leaf) SplitPath(string path)
            {
                var dot = path.LastIndexOf('.');
                return dot < 0 ? (this, path) : (get_submodule(path[..dot]), path[(dot + 1)..]);
            }

            private static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;

            // ---------------- modes ----------------

            /// <summary>Sets training mode on this module and its descendants.</summary>
            /// <param name="mode">True for training, false for evaluation.</param>
            /// <returns>This module.</returns>
            public Module train(bool mode = true)
            {
                foreach (var m in modules()) m.training = mode;
                return this;
            }

            /// <summary>Sets evaluation mode.</summary>
            /// <returns>This module.</returns>
            public Module eval() => train(false);

            /// <summary>Freezes (false) or unfreezes (true) every parameter.</summary>
            /// <param name="requires_grad">The flag.</param>
            /// <returns>This module.</returns>
            public Module requires_grad_(bool requires_grad = true)
            {
                foreach (var p in parameters()) p.requires_grad = requires_grad;
                return this;
            }

            /// <summary>Clears (default) or zeroes the gradients of every parameter.</summary>
            /// <param name="set_to_none">Clear instead of zeroing.</param>
            public void zero_grad(bool set_to_none = true)
            {
                foreach (var p in parameters())
                {
                    if (set_to_none) p.grad = null;
                    else p.zero_grad();
                }
            }

            // ---------------- device and dtype ----------------

            /// <summary>Moves every parameter and buffer to a device, in place (parameters keep their identity).</summary>
            /// <param name="device">The device.</param>
            /// <returns>This module.</returns>
            public Module to(Device device) => Apply(t => t.to(device), floatingOnly: false);

            /// <summary>Converts every floating-point parameter and buffer to a type, in place.</summary>
            /// <param name="type">A floating-point type.</param>
            /// <returns>This module.</returns>
            public Module to(ScalarType type)
            {
                if (!type.IsFloatingPoint()) throw new ArgumentException($"modules convert to floating-point types only, not {type}", nameof(type));
                return Apply(t => t.to_type(type), floatingOnly: true);
            }

            /// <summary>Moves to a device and converts floating-point state to a type.</summary>
            /// <param name="device">The device.</param>
            /// <param name="type">A floating-point type.</param>
            /// <returns>This module.</returns>
            public Module to(Device device, ScalarType type)
            {
                to(device);
                return to(type);
            }

            private Module Apply(Func<Tensor, Tensor> convert, bool floatingOnly)
            {
                using var scope = NewDisposeScope();
                using var ng = no_grad();
                foreach (var p in parameters())
                {
                    if (floatingOnly && !p.dtype.IsFloatingPoint()) continue;
                    p.set_data(convert(p));
                }
                foreach (var m in modules())
                    for (int i = 0; i < m._buffers.Count; i++)
                    {
                        var (n, b, persistent) = m._buffers[i];
                        if (b is null || (floatingOnly && !b.dtype.IsFloatingPoint())) continue;
                        b.set_data(convert(b));
                    }
                return this;
            }

            // ---------------- state dict ----------------

            /// <summary>Parameters then persistent buffers, with dotted names (aliases; the module still owns the storage).</summary>
            /// <returns>Name-to-tensor map in registration order; the caller disposes the aliases.</returns>
            public Dictionary<string, Tensor> state_dict()
            {
                var d = new Dictionary<string, Tensor>();
                foreach (var (prefix, m) in named_modules())
                {
                    foreach (var (n, p) in m._parameters) if (p is not null) d.TryAdd(Join(prefix, n), p.alias());
                    foreach (var (n, b, persistent) in m._buffers) if (b is not null && persistent) d.TryAdd(Join(prefix, n), b.alias());
                }
                return d;
            }

            /// <summary>
            /// Copies values into this module's parameters and persistent buffers (under no_grad, converting dtype and device
            /// to the destination's). Shapes must match. In strict mode missing or unexpected keys fail with a report.
            /// </summary>
            /// <param name="source">Name-to-tensor map.</param>
            /// <param name="strict">Fail on missing or unexpected keys.</param>
            /// <returns>The keys this module has that the source lacks, and the source's keys this module does not have.</returns>
            public (IList<string> missing, IList<string> unexpected) load_state_dict(IReadOnlyDictionary<string, Tensor> source, bool strict = true)
            {
                ArgumentNullException.ThrowIfNull(source);
                var targets = new Dictionary<string, Tensor>();
                foreach (var (prefix, m) in named_modules())
                {
                    foreach (var (n, p) in m._parameters) if (p is not null) targets.TryAdd(Join(prefix, n), p);
                    foreach (var (n, b, persistent) in m._buffers) if (b is not null && persistent) targets.TryAdd(Join(prefix, n), b);
                }
                var missing = targets.Keys.Where(k => !source.ContainsKey(k)).ToList();
                var unexpected = source.Keys.Where(k => !targets.ContainsKey(k)).ToList();
                if (strict && (missing.Count > 0 || unexpected.Count > 0))
                    throw new InvalidOperationException(StateDictReport(name, missing, unexpected));
                var mismatched = new List<string>();
                foreach (var (k, dst) in targets)
                {
                    if (!source.TryGetValue(k, out var src)) continue;
                    if (!src.shape.SequenceEqual(dst.shape))
                        mismatched.Add($"{k}: checkpoint [{string.Join(", ", src.shape)}] vs model [{string.Join(", ", dst.shape)}]");
                }
                if (mismatched.Count > 0)
                    throw new InvalidOperationException($"shape mismatch loading the state dict of {name}:\n  " + string.Join("\n  ", mismatched));
                using var scope = NewDisposeScope();
                using var ng = no_grad();
                foreach (var (k, dst) in targets)
                {
                    if (!source.TryGetValue(k, out var src)) continue;
                    if (dst.device.type == DeviceType.META)
                    {
                        if (dst is Parameter mp) { swap_parameter(mp, new Parameter(src.to(mp.dtype, src.device), mp.requires_grad)); continue; }
                        throw new InvalidOperationException($"buffer '{k}' lives on the meta device; materialise it before loading");
                    }
                    dst.copy_(src);
                }
                return (missing, unexpected);
            }

            /// <summary>A readable report of missing and unexpected state-dict keys.</summary>
            /// <param name="model">Model name.</param>
            /// <param name="missing">Keys the source lacks.</param>
            /// <param name="unexpected">Keys the model does not have.</param>
            /// <returns>The report.</returns>
            public static string StateDictReport(string model, IList<string> missing, IList<string> unexpected)
            {
                var sb = new StringBuilder($"error loading the state dict of {model}:");
                if (missing.Count > 0) sb.Append($"\n  missing keys ({missing.Count}): ").Append(string.Join(", ", missing.Take(20))).Append(missing.Count > 20 ? ", ..." : "");
                if (unexpected.Count > 0) sb.Append($"\n  unexpected keys ({unexpected.Count}): ").Append(string.Join(", ", unexpected.Take(20))).Append(unexpected.Count > 20 ? ", ..." : "");
                return sb.ToString();
            }

            // ---------------- printing and disposal ----------------

            /// <summary>The module tree with parameter shapes.</summary>
            /// <returns>The text.</returns>
            public override string ToString()
            {
                var sb = new StringBuilder();
                void Walk(Module m, string label, int depth)
                {
                    sb.Append(' ', depth * 2).Append(label.Length == 0 ? "" : label + ": ").Append(m.name);
                    var ps = m._parameters.Where(p => p.Value is not null).Select(p => $"{p.Name}[{string.Join(",", p.Value!.shape)}]").ToList();
                    if (ps.Count > 0) sb.Append(" (").Append(string.Join(", ", ps)).Append(')');
                    sb.AppendLine();
                    foreach (var (n, c) in m._modules) Walk(c, n, depth + 1);
                }
                Walk(this, "", 0);
                return sb.ToString();
            }

            /// <summary>Disposes parameters, buffers and children.</summary>
            public void Dispose()
            {
                Dispose(true);
                GC.SuppressFinalize(this);
            }

            /// <summary>Releases what the module owns.</summary>
            /// <param name="disposing">True when called from <see cref="Dispose()"/>.</param>
            protected virtual void Dispose(bool disposing)
            {
                if (_disposed || !disposing) return;
                _disposed = true;
                foreach (var (_, p) in _parameters) p?.Dispose();
                foreach (var (_, b, _) in _buffers) b?.Dispose();
                foreach (var (_, m) in _modules) m.Dispose();
            }
        }

        /// <summary>A module with one input and one output.</summary>
        /// <typeparam name="T">Input type.</typeparam>
        /// <typeparam name="TResult">Output type.</typeparam>
        public abstract class Module<T, TResult> : Module
        {
            /// <summary>Creates the module.</summary>
            /// <param name="name">Type name.</param>
            protected Module(string name) : base(name) { }

            /// <summary>The computation.</summary>
            /// <param name="input">Input.</param>
            /// <returns>Output.</returns>
            public abstract TResult forward(T input);

            /// <summary>Runs <see cref="forward"/> (the place where hooks would run).</summary>
            /// <param name="input">Input.</param>
            /// <returns>Output.</returns>
            public TResult call(T input) => forward(input);
        }
    }
}
