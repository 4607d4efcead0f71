namespace Microsoft.ML.LowRank.Tests.Helpers;

/// <summary>Paths inside the repository (found by walking up to LowRank.sln).</summary>
public static class Repo
{
    private static readonly Lazy<string> s_root = new(() =>
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "LowRank.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("LowRank.sln not found above " + AppContext.BaseDirectory);
    });

    public static string Root => s_root.Value;

    public static string Fixture(params string[] parts) => Path.Combine(new[] { Root, "test", "fixtures" }.Concat(parts).ToArray());
}
