using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// Checkpoint folders of a training run: <c>checkpoint-{step}</c> sub-folders of the run's checkpoint folder, each
/// written complete into a hidden temporary folder that is then renamed into place, so a crash while writing never
/// leaves a partial <c>checkpoint-*</c> folder and never touches the previous checkpoints.
/// </summary>
public static partial class Checkpoints
{
    /// <summary>The file holding the trainer's position, histories and scalars.</summary>
    public const string StateFileName = "trainer_state.json";
    /// <summary>The file holding the trainable parameters, by name.</summary>
    public const string ParametersFileName = "trainable.safetensors";
    /// <summary>The file holding the optimizer's state tensors.</summary>
    public const string OptimizerFileName = "optimizer.safetensors";
    /// <summary>The file holding the random generators' states.</summary>
    public const string RngFileName = "rng_state.safetensors";
    /// <summary>The file holding training hooks' state tensors (only when a hook has state).</summary>
    public const string HooksFileName = "hooks.safetensors";

    private const string TempPrefix = ".tmp-checkpoint-";
    private const string OldPrefix = ".old-checkpoint-";

    /// <summary>Test hook: called with each file name before the file is written.</summary>
    [ThreadStatic] internal static Action<string>? t_beforeFile;

    [GeneratedRegex(@"^checkpoint-(\d+)$", RegexOptions.CultureInvariant)]
    private static partial Regex CheckpointName();

    /// <summary>The folder name of the checkpoint of a step.</summary>
    /// <param name="step">Optimizer steps completed.</param>
    /// <returns>"checkpoint-{step}".</returns>
    public static string FolderName(int step) => "checkpoint-" + step.ToString(CultureInfo.InvariantCulture);

    /// <summary>The complete checkpoints under a folder, oldest (lowest step) first.</summary>
    /// <param name="folder">The run's checkpoint folder.</param>
    /// <returns>(step, path) pairs; empty when the folder does not exist.</returns>
    public static IReadOnlyList<(int Step, string Path)> List(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var result = new List<(int, string)>();
        if (!Directory.Exists(folder)) return result;
        foreach (var dir in Directory.EnumerateDirectories(folder))
        {
            var m = CheckpointName().Match(Path.GetFileName(dir));
            if (!m.Success || !int.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var step)) continue;
            if (!File.Exists(Path.Combine(dir, StateFileName))) continue;
            result.Add((step, dir));
        }
        result.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return result;
    }

    /// <summary>The most recent complete checkpoint under a folder.</summary>
    /// <param name="folder">The run's checkpoint folder.</param>
    /// <returns>Its path, or null when there is none.</returns>
    public static string? FindLatest(string folder)
    {
        var all = List(folder);
        return all.Count == 0 ? null : all[^1].Path;
    }

    /// <summary>Writes a checkpoint atomically: <paramref name="write"/> fills a fresh temporary folder, which then replaces
    /// <c>checkpoint-{step}</c> by rename. On failure the temporary folder is removed and the exception propagates.</summary>
    /// <param name="folder">The run's checkpoint folder.</param>
    /// <param name="step">Optimizer steps completed.</param>
    /// <param name="write">Writes the files into the folder it is given.</param>
    /// <returns>The checkpoint's path.</returns>
    internal static string WriteAtomically(string folder, int step, Action<string> write)
    {
        Directory.CreateDirectory(folder);
        var final = Path.Combine(folder, FolderName(step));
        var temp = Path.Combine(folder, TempPrefix + step.ToString(CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(temp);
        try
        {
            write(temp);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        string? old = null;
        if (Directory.Exists(final))
        {
            old = Path.Combine(folder, OldPrefix + step.ToString(CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N"));
            Directory.Move(final, old);
        }
        try
        {
            Directory.Move(temp, final);
        }
        catch
        {
            // Put the previous checkpoint of this step back rather than lose it.
            if (old is not null && !Directory.Exists(final)) Directory.Move(old, final);
            TryDelete(temp);
            throw;
        }
        if (old is not null) TryDelete(old);
        return final;
    }

    /// <summary>Deletes the oldest checkpoints so that at most <paramref name="keep"/> remain.</summary>
    /// <param name="folder">The run's checkpoint folder.</param>
    /// <param name="keep">How many to keep.</param>
    internal static void Rotate(string folder, int keep)
    {
        var all = List(folder);
        for (int i = 0; i < all.Count - keep; i++) TryDelete(all[i].Path);
    }

    /// <summary>Removes temporary folders left by an interrupted write.</summary>
    /// <param name="folder">The run's checkpoint folder.</param>
    internal static void CleanTemporary(string folder)
    {
        if (!Directory.Exists(folder)) return;
        foreach (var dir in Directory.EnumerateDirectories(folder))
        {
            var name = Path.GetFileName(dir);
            if (name.StartsWith(TempPrefix, StringComparison.Ordinal) || name.StartsWith(OldPrefix, StringComparison.Ordinal)) TryDelete(dir);
        }
    }

    internal static void BeforeFile(string name) => t_beforeFile?.Invoke(name);

    /// <summary>Writes a small file durably (flushed to disk before returning).</summary>
    internal static void WriteFile(string path, ReadOnlySpan<byte> content)
    {
        BeforeFile(Path.GetFileName(path));
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        fs.Write(content);
        fs.Flush(flushToDisk: true);
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    // ---------------- JSON helpers (doubles round-trip exactly; non-finite values as strings) ----------------

    internal static void WriteDouble(Utf8JsonWriter w, double v)
    {
        if (double.IsFinite(v)) w.WriteNumberValue(v);
        else w.WriteStringValue(v.ToString(CultureInfo.InvariantCulture));
    }

    internal static void WriteDouble(Utf8JsonWriter w, string name, double v)
    {
        w.WritePropertyName(name);
        WriteDouble(w, v);
    }

    internal static double ReadDouble(JsonElement e) => e.ValueKind == JsonValueKind.String
        ? double.Parse(e.GetString()!, NumberStyles.Float, CultureInfo.InvariantCulture)
        : e.GetDouble();
}
