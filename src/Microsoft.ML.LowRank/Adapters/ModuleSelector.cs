using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Microsoft.ML.LowRank.Adapters;

/// <summary>
/// Which modules an adapter rule selects, with PEFT's semantics for <c>target_modules</c> / <c>exclude_modules</c>:
/// a list of names selects a module whose full dotted name equals a name or ends with "." + a name (so "q_proj"
/// selects "model.layers.0.self_attn.q_proj" and "self_attn.q_proj" selects it too); a single string is a regular
/// expression that must match the whole module name; the string <c>"all-linear"</c> selects every Linear (and GPT-2
/// Conv1D) layer except the model's output head (lm_head, score, classifier).
/// A string converts implicitly to a regular-expression selector (or the all-linear one), a string array to a list.
/// </summary>
public sealed class ModuleSelector
{
    /// <summary>PEFT's shorthand for every linear layer except the output head.</summary>
    public const string AllLinearShorthand = "all-linear";

    private readonly Regex? _regex;

    private ModuleSelector(IReadOnlyList<string>? names, string? pattern)
    {
        Names = names;
        Pattern = pattern;
        if (pattern is not null && pattern != AllLinearShorthand)
        {
            try { _regex = new Regex(@"\A(?:" + pattern + @")\z", RegexOptions.CultureInvariant); }
            catch (ArgumentException e) { throw new ArgumentException($"invalid module regular expression '{pattern}': {e.Message}", nameof(pattern), e); }
        }
    }

    /// <summary>The names (list form), or null for the regular-expression form.</summary>
    public IReadOnlyList<string>? Names { get; }

    /// <summary>The regular expression (or <see cref="AllLinearShorthand"/>), or null for the list form.</summary>
    public string? Pattern { get; }

    /// <summary>True for the <c>"all-linear"</c> shorthand.</summary>
    public bool IsAllLinear => Pattern == AllLinearShorthand;

    /// <summary>True for the list form.</summary>
    public bool IsList => Names is not null;

    /// <summary>Selects modules by exact name or by dotted suffix.</summary>
    /// <param name="names">Module names or dotted suffixes (duplicates are dropped, order kept).</param>
    /// <returns>The selector.</returns>
    public static ModuleSelector FromNames(params string[] names) => FromNames((IEnumerable<string>)names);

    /// <summary>Selects modules by exact name or by dotted suffix.</summary>
    /// <param name="names">Module names or dotted suffixes (duplicates are dropped, order kept).</param>
    /// <returns>The selector.</returns>
    public static ModuleSelector FromNames(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        var list = new List<string>();
        foreach (var n in names)
        {
            if (string.IsNullOrEmpty(n)) throw new ArgumentException("module names must be non-empty", nameof(names));
            if (!list.Contains(n)) list.Add(n);
        }
        if (list.Count == 0) throw new ArgumentException("at least one module name is needed", nameof(names));
        return new ModuleSelector(list, null);
    }

    /// <summary>Selects modules whose whole dotted name matches a regular expression (Python <c>re.fullmatch</c>).</summary>
    /// <param name="pattern">The expression.</param>
    /// <returns>The selector.</returns>
    public static ModuleSelector FromRegex(string pattern)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        return new ModuleSelector(null, pattern);
    }

    /// <summary>The <c>"all-linear"</c> selector.</summary>
    public static ModuleSelector AllLinear { get; } = new(null, AllLinearShorthand);

    /// <summary>A string is a regular expression (or the all-linear shorthand), as in PEFT.</summary>
    /// <param name="pattern">The string.</param>
    public static implicit operator ModuleSelector(string pattern) => pattern == AllLinearShorthand ? AllLinear : FromRegex(pattern);

    /// <summary>A string array is a list of names or suffixes.</summary>
    /// <param name="names">The names.</param>
    public static implicit operator ModuleSelector(string[] names) => FromNames(names);

    /// <summary>Whether the rule selects a module (the all-linear form needs the module type too: see the injector).</summary>
    /// <param name="moduleName">Full dotted module name, e.g. "model.layers.0.self_attn.q_proj".</param>
    /// <returns>True when selected by name.</returns>
    public bool Matches(string moduleName)
    {
        ArgumentNullException.ThrowIfNull(moduleName);
        if (Names is not null) return MatchingName(moduleName) is not null;
        if (IsAllLinear) return false;
        return _regex!.IsMatch(moduleName);
    }

    /// <summary>The list entry that selects a module (exact name first, then the first dotted suffix), or null.</summary>
    /// <param name="moduleName">Full dotted module name.</param>
    /// <returns>The entry, or null (also for the regular-expression form).</returns>
    public string? MatchingName(string moduleName)
    {
        if (Names is null) return null;
        foreach (var n in Names) if (n == moduleName) return n;
        foreach (var n in Names) if (moduleName.EndsWith("." + n, StringComparison.Ordinal)) return n;
        return null;
    }

    /// <summary>The PEFT JSON value: a list of names or a string.</summary>
    /// <returns>The node.</returns>
    public JsonNode ToJson() => Names is not null ? new JsonArray(Names.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray()) : JsonValue.Create(Pattern!);

    /// <summary>Reads PEFT's JSON value (null, a string, or a list of strings).</summary>
    /// <param name="node">The node.</param>
    /// <param name="field">Field name for error messages.</param>
    /// <returns>The selector, or null.</returns>
    public static ModuleSelector? FromJson(JsonNode? node, string field)
    {
        switch (node)
        {
            case null: return null;
            case JsonArray a:
                if (a.Count == 0) return null;
                return FromNames(a.Select(v => v is JsonValue jv && jv.TryGetValue<string>(out var s) ? s : throw new FormatException($"{field}: expected a list of strings")));
            case JsonValue v when v.TryGetValue<string>(out var str): return str;
            default: throw new FormatException($"{field}: expected null, a string or a list of strings, got {node.ToJsonString()}");
        }
    }

    /// <inheritdoc/>
    public override string ToString() => Names is not null ? "[" + string.Join(", ", Names) + "]" : "'" + Pattern + "'";
}
