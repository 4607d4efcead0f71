using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Speed;

/// <summary>The caching CPU allocator (torch.cpu.set_caching_allocator) and the runtime choices the loader makes.</summary>
[Collection(SerialCollection.Name)]
public class CpuCacheTests
{
    private static long ExpectedClass(long n)
    {
        if (n < 256 * 1024) return 0;
        long step = 64 * 1024;
        while (step * 2 <= n >> 3) step <<= 1;
        return (n + step - 1) / step * step;
    }

    [Fact]
    public void OnByDefaultAndSizeClassesWasteAtMostAnEighth()
    {
        Assert.Equal(Environment.GetEnvironmentVariable("LOWRANK_CPU_CACHE") != "0", cpu.is_caching);
        foreach (var n in new long[] { 1, 4096, 256 * 1024 - 1, 256 * 1024, 300_000, 1_000_000, 6_291_456, 6_291_457, 131_072_000, 3L << 30 })
        {
            var c = cpu.cache_size_class(n);
            Assert.Equal(ExpectedClass(n), c);
            if (c > 0) Assert.True(c >= n && c - n < Math.Max(n / 8, 64 * 1024), $"class {c} for {n}");
        }
    }

    [Fact]
    public void AFreedBlockIsReusedForTheSameSizeClassAndEmptyCacheReleasesIt()
    {
        bool was = cpu.is_caching;
        try
        {
            cpu.set_caching_allocator(true, 1L << 30);
            IntPtr first;
            using (var a = empty(new long[] { 1_000_000 / 4 }))
            {
                first = a.data_ptr();
                a.fill_(3);
            }
            // the same size class (1,000,000 and 990,000 bytes both round to 1 MiB): the block comes back
            var (hits0, _) = cpu.cache_counts();
            using (var b = empty(new long[] { 990_000 / 4 }))
            {
                Assert.Equal(first, b.data_ptr());
                Assert.Equal(hits0 + 1, cpu.cache_counts().hits);
                b.fill_(5);
                Assert.Equal(5.0 * (990_000 / 4), b.sum().ToDouble());
            }
            Assert.True(cpu.memory_cached() >= 1 << 20);
            cpu.empty_cache();
            Assert.Equal(0, cpu.memory_cached());
        }
        finally { cpu.set_caching_allocator(was, 1L << 30); }
    }

    [Fact]
    public void TheLimitCapsTheCachedBytesAndOffReleasesEverything()
    {
        bool was = cpu.is_caching;
        try
        {
            cpu.set_caching_allocator(true, 3L << 20);
            cpu.empty_cache();
            var ts = Enumerable.Range(0, 6).Select(_ => empty(new long[] { (1 << 20) / 4 })).ToList();
            foreach (var t in ts) t.Dispose();
            Assert.True(cpu.memory_cached() <= 3L << 20, $"cached {cpu.memory_cached()}");
            Assert.True(cpu.memory_cached() > 0);
            cpu.set_caching_allocator(false);
            Assert.False(cpu.is_caching);
            Assert.Equal(0, cpu.memory_cached());
            using var u = ones(new long[] { 1 << 18 });
            Assert.Equal(1 << 18, u.sum().ToDouble());
            Assert.Equal(0, cpu.memory_cached());
            Assert.Throws<ArgumentOutOfRangeException>(() => cpu.set_caching_allocator(true, 0));
        }
        finally { cpu.set_caching_allocator(was, 1L << 30); }
    }

    [Fact]
    public void MemoryTrackingCountsAllocationsServedFromTheCache()
    {
        using var scope = NewDisposeScope();
        empty(new long[] { 1 << 18 }).Dispose();  // leaves a 1 MiB block in the cache (when caching)
        cpu.track_memory(true);
        try
        {
            using var t = empty(new long[] { 1 << 18 });
            Assert.Equal(1L << 20, cpu.memory_allocated());
        }
        finally { cpu.track_memory(false); }
    }

    [Fact]
    public void TheLoaderReportsWhichOpenBlasBuildItUses()
    {
        _ = zeros(1);
        Assert.Contains(NativeLibraryLoader.BlasThreading, new[] { "openmp", "pthread", "other", "unknown" });
        bool debianLibtorch = Directory.Exists("/usr/lib/x86_64-linux-gnu") && Directory.EnumerateFiles("/usr/lib/x86_64-linux-gnu", "libtorch_cpu.so*").Any()
            && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("LIBTORCH"));
        if (debianLibtorch && File.Exists("/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3") && Environment.GetEnvironmentVariable("LOWRANK_BLAS") != "system")
            Assert.Equal("openmp", NativeLibraryLoader.BlasThreading);
    }
}
