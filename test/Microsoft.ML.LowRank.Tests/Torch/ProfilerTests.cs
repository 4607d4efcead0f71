using Microsoft.ML.LowRank.Tests.Helpers;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

/// <summary>torch.profiler: the operator table of a recorded region.</summary>
[Collection(SerialCollection.Name)]
public class ProfilerTests
{
    [Fact]
    public void TheTableListsEachOperatorWithItsShapesAndCallCount()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(Path.GetTempPath(), $"lowrank-profile-{Guid.NewGuid():N}.tsv");
        var a = randn(new long[] { 24, 16 });
        var b = randn(new long[] { 16, 8 });
        profiler.start(record_shapes: true);
        for (int i = 0; i < 3; i++) a.matmul(b).Dispose();
        (a + 1).Dispose();
        profiler.stop(path);
        try
        {
            var rows = File.ReadAllLines(path).Select(l => l.Split('\t')).ToList();
            Assert.All(rows, r => Assert.Equal(5, r.Length));
            var mm = rows.Single(r => r[3] == "aten::mm" && r[4] == "[[24,16], [16,8]]");
            Assert.Equal("3", mm[2]);
            double self = double.Parse(mm[0], System.Globalization.CultureInfo.InvariantCulture);
            double total = double.Parse(mm[1], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(self > 0 && self <= total + 1e-9, $"self {self} total {total}");
            Assert.Contains(rows, r => r[3] == "aten::add");
            // sorted by self time, largest first
            var selfs = rows.Select(r => double.Parse(r[0], System.Globalization.CultureInfo.InvariantCulture)).ToList();
            Assert.Equal(selfs.OrderByDescending(x => x), selfs);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void AnUnwritablePathIsReportedByName()
    {
        profiler.start();
        var e = Assert.ThrowsAny<Exception>(() => profiler.stop("/nonexistent-dir/x/profile.tsv"));
        Assert.Contains("/nonexistent-dir/x/profile.tsv", e.Message);
    }
}
