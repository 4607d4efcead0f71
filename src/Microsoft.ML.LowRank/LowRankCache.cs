namespace Microsoft.ML.LowRank;

/// <summary>
/// The library's cache folder for downloaded data and extracted models: <c>$LOWRANK_CACHE_DIR</c>, else
/// <c>$XDG_CACHE_HOME/lowrank</c>, else <c>~/.cache/lowrank</c>.
/// </summary>
public static class LowRankCache
{
    /// <summary>The cache root.</summary>
    public static string Root
    {
        get
        {
            string? explicitRoot = Environment.GetEnvironmentVariable("LOWRANK_CACHE_DIR");
            if (!string.IsNullOrEmpty(explicitRoot)) return explicitRoot;
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string baseDir = !string.IsNullOrEmpty(xdg)
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(baseDir, "lowrank");
        }
    }
}
