using System.Text.RegularExpressions;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>
/// PEFT's target-module rules applied to a model's module names: which modules get an adapter and which are wrapped
/// as modules to save.
/// </summary>
public static class TargetMatcher
{
    /// <summary>Top-level output heads never selected by "all-linear".</summary>
    public static IReadOnlyList<string> OutputHeadNames { get; } = new[] { "lm_head", "score", "classifier" };

    /// <summary>The modules of a model that rules may select: every named module except the root and the inside of
    /// adapter modules (an adapter layer or modules-to-save wrapper is a candidate itself).</summary>
    /// <param name="model">The model.</param>
    /// <returns>(name, module) pairs.</returns>
    public static List<(string name, torch.nn.Module module)> Candidates(torch.nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var result = new List<(string, torch.nn.Module)>();
        var inside = new List<string>();
        foreach (var (name, m) in model.named_modules())
        {
            if (name.Length == 0) continue;
            if (inside.Exists(p => name.StartsWith(p, StringComparison.Ordinal))) continue;
            result.Add((name, m));
            if (m is IAdapterModule) inside.Add(name + ".");
        }
        return result;
    }

    /// <summary>Whether a module name lies in a top-level output head.</summary>
    /// <param name="name">Module name.</param>
    /// <returns>True for lm_head, score, classifier and their descendants.</returns>
    public static bool IsInOutputHead(string name)
    {
        foreach (var h in OutputHeadNames)
            if (name == h || name.StartsWith(h + ".", StringComparison.Ordinal)) return true;
        return false;
    }

    /// <summary>The block index in a module name for layers_to_transform (PEFT's rule), or null.</summary>
    /// <param name="name">Module name.</param>
    /// <param name="layersPattern">Block list names, or null for any.</param>
    /// <returns>The index.</returns>
    public static int? LayerIndex(string name, IReadOnlyList<string>? layersPattern)
    {
        if (layersPattern is null || layersPattern.Count == 0)
        {
            var m = Regex.Match(name, @"\A.*\.[^.]*\.(\d+)\.", RegexOptions.CultureInvariant);
            return m.Success ? int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null;
        }
        foreach (var p in layersPattern)
        {
            var m = Regex.Match(name, @"\A.*\." + p + @"\.(\d+)\.", RegexOptions.CultureInvariant);
            if (m.Success) return int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        }
        return null;
    }

    /// <summary>Whether the target rule of <paramref name="options"/> selects a module by name (PEFT's
    /// check_target_module_exists, with exclude_modules and layers_to_transform).</summary>
    /// <param name="options">The options (TargetModules set).</param>
    /// <param name="name">Module name.</param>
    /// <param name="module">The module (for "all-linear").</param>
    /// <returns>True when selected.</returns>
    public static bool IsTarget(LowRankAdapterOptions options, string name, torch.nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(options);
        var targets = options.TargetModules ?? throw new ArgumentException("target_modules is not set");
        if (options.ExcludeModules is { } ex && ex.Matches(name)) return false;
        if (targets.IsAllLinear)
            return (AdapterLayer.IsSupportedBaseLayer(module) || module is AdapterLayer) && !IsInOutputHead(name);
        if (!targets.IsList) return targets.Matches(name);
        if (targets.Names!.Contains(name)) return true;
        if (targets.MatchingName(name) is null) return false;
        if (options.LayersToTransform is not { Count: > 0 } layers) return true;
        return LayerIndex(name, options.LayersPattern) is { } idx && layers.Contains(idx);
    }

    /// <summary>
    /// The modules an adapter's rules select, checked: every name in a target list (and a target regular expression)
    /// must match some module, and every selected module must be adaptable; otherwise an exception lists the
    /// adaptable module names.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="options">The options (TargetModules set).</param>
    /// <returns>(name, module) pairs in model order.</returns>
    public static List<(string name, torch.nn.Module module)> FindTargets(torch.nn.Module model, LowRankAdapterOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var candidates = Candidates(model);
        var targets = options.TargetModules ?? throw new ArgumentException("target_modules is not set");
        if (targets.IsList)
        {
            var unknown = targets.Names!.Where(t => !candidates.Exists(c => c.name == t || c.name.EndsWith("." + t, StringComparison.Ordinal))).ToList();
            if (unknown.Count > 0)
                throw new ArgumentException($"target module name(s) {string.Join(", ", unknown.Select(u => "'" + u + "'"))} match no module of {model.name}. {Available(candidates)}");
        }
        else if (!targets.IsAllLinear && !candidates.Exists(c => targets.Matches(c.name)))
            throw new ArgumentException($"target_modules '{targets.Pattern}' matches no module of {model.name}. {Available(candidates)}");
        var selected = new List<(string, torch.nn.Module)>();
        foreach (var (name, m) in candidates)
        {
            if (!IsTarget(options, name, m)) continue;
            if (!AdapterLayer.IsSupportedBaseLayer(m) && m is not AdapterLayer)
                throw new NotSupportedException($"target module '{name}' is a {m.name}, which cannot be adapted: supported base layers are Linear and GPT-2's Conv1D. {Available(candidates)}");
            selected.Add((name, m));
        }
        if (selected.Count == 0)
            throw new ArgumentException($"target_modules {targets} with exclude_modules {options.ExcludeModules?.ToString() ?? "none"} and layers_to_transform {(options.LayersToTransform is null ? "none" : "[" + string.Join(", ", options.LayersToTransform) + "]")} select no module of {model.name}. {Available(candidates)}");
        return selected;
    }

    /// <summary>A sentence listing the adaptable module names of a model (short names, then examples).</summary>
    /// <param name="candidates">The model's candidate modules.</param>
    /// <returns>The text.</returns>
    public static string Available(List<(string name, torch.nn.Module module)> candidates)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        var linear = candidates.Where(c => AdapterLayer.IsSupportedBaseLayer(c.module) || c.module is AdapterLayer).Select(c => c.name).ToList();
        var shortNames = linear.Select(n => n[(n.LastIndexOf('.') + 1)..]).Distinct().ToList();
        return $"Adaptable (Linear/Conv1D) modules: {string.Join(", ", shortNames)}; full names: {string.Join(", ", linear.Take(12))}{(linear.Count > 12 ? $", ... ({linear.Count} in all)" : "")}";
    }

    /// <summary>Modules selected by a modules_to_save name (exact name or dotted suffix).</summary>
    /// <param name="candidates">Candidate modules.</param>
    /// <param name="saveName">The name.</param>
    /// <returns>Matching (name, module) pairs.</returns>
    public static List<(string name, torch.nn.Module module)> FindModulesToSave(List<(string name, torch.nn.Module module)> candidates, string saveName)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        var r = candidates.Where(c => c.name == saveName || c.name.EndsWith("." + saveName, StringComparison.Ordinal)).ToList();
        // A container and its children may both match a suffix; keep the outermost.
        return r.Where(c => !r.Exists(o => o.name != c.name && c.name.StartsWith(o.name + ".", StringComparison.Ordinal))).ToList();
    }
}
