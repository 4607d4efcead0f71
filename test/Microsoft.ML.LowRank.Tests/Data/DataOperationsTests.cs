using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Tests.Data;

/// <summary>TrainTestSplit, ShuffleRows, TakeRows, SkipRows, FilterRowsByColumn and Cache.</summary>
public class DataOperationsTests
{
    private static readonly DataOperationsCatalog Data = new(seed: 1);

    public sealed class Item
    {
        public int Id { get; set; }
        public string Group { get; set; } = "";
        public float Value { get; set; }
    }

    private static Item[] Items(int n) =>
        [.. Enumerable.Range(0, n).Select(i => new Item { Id = i, Group = $"g{i % 7}", Value = i * 0.5f })];

    private static IEnumerable<Item> Streamed(int n)
    {
        foreach (var item in Items(n))
            yield return item;
    }

    [Theory]
    [InlineData(100, 0.1, 10)]
    [InlineData(100, 0.25, 25)]
    [InlineData(10, 0.25, 3)] // 2.5 rounds up
    [InlineData(7, 0.5, 4)]
    [InlineData(3, 0.1, 0)]
    public void SplitSizesAreTheRoundedFraction(int n, double fraction, int expectedTest)
    {
        var split = Data.TrainTestSplit(Data.LoadFromEnumerable(Items(n)), testFraction: fraction, seed: 42);
        Assert.Equal(expectedTest, split.TestSet.GetRowCount());
        Assert.Equal(n - expectedTest, split.TrainSet.GetRowCount());
        Assert.Equal(expectedTest, split.TestSet.GetColumn<int>("Id").Count());
    }

    [Fact]
    public void SplitIsDisjointCompleteOrderedAndDeterministic()
    {
        var data = Data.LoadFromEnumerable(Items(200));
        var a = Data.TrainTestSplit(data, 0.3, seed: 7);
        var b = Data.TrainTestSplit(data, 0.3, seed: 7);
        var c = Data.TrainTestSplit(data, 0.3, seed: 8);
        var trainIds = a.TrainSet.GetColumn<int>("Id").ToArray();
        var testIds = a.TestSet.GetColumn<int>("Id").ToArray();
        Assert.Empty(trainIds.Intersect(testIds));
        Assert.Equal(Enumerable.Range(0, 200), trainIds.Concat(testIds).Order());
        Assert.Equal(trainIds.Order(), trainIds); // original order kept
        Assert.Equal(testIds.Order(), testIds);
        Assert.Equal(testIds, b.TestSet.GetColumn<int>("Id"));
        Assert.NotEqual(testIds, c.TestSet.GetColumn<int>("Id"));
        // Reading a set twice gives the same rows.
        Assert.Equal(testIds, a.TestSet.GetColumn<int>("Id"));
    }

    [Fact]
    public void SplitWithoutSeedUsesTheCatalogSeed()
    {
        var data = Data.LoadFromEnumerable(Items(100));
        var first = new DataOperationsCatalog(seed: 5).TrainTestSplit(data).TestSet.GetColumn<int>("Id").ToArray();
        var again = new DataOperationsCatalog(seed: 5).TrainTestSplit(data).TestSet.GetColumn<int>("Id").ToArray();
        Assert.Equal(first, again);
        Assert.Equal(10, first.Length);
    }

    [Fact]
    public void SamplingKeyKeepsGroupsTogether()
    {
        var data = Data.LoadFromEnumerable(Items(140)); // 7 groups of 20
        var split = Data.TrainTestSplit(data, 0.3, samplingKeyColumnName: "Group", seed: 3);
        var trainGroups = split.TrainSet.GetColumn<string>("Group").ToHashSet();
        var testGroups = split.TestSet.GetColumn<string>("Group").ToHashSet();
        Assert.Empty(trainGroups.Intersect(testGroups));
        Assert.Equal(7, trainGroups.Count + testGroups.Count);
        int testRows = split.TestSet.GetColumn<int>("Id").Count();
        Assert.Equal(40, testRows); // 2 groups of 20: closest to 42 in whole groups
        Assert.Equal(testRows, split.TestSet.GetRowCount());

        // Numeric keys work too, and the split is deterministic.
        var byValue = Data.TrainTestSplit(data, 0.5, samplingKeyColumnName: "Id", seed: 3);
        Assert.Equal(70, byValue.TestSet.GetRowCount());
    }

    [Fact]
    public void SplitErrors()
    {
        var data = Data.LoadFromEnumerable(Items(10));
        Assert.Throws<ArgumentOutOfRangeException>(() => Data.TrainTestSplit(data, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Data.TrainTestSplit(data, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Data.TrainTestSplit(data, double.NaN));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Data.TrainTestSplit(data, 0.2, samplingKeyColumnName: "Nope"));
        Assert.Contains("'Nope'", ex.Message);
    }

    [Fact]
    public void SplitOfAStreamingViewSelectsByPosition()
    {
        var data = Data.LoadFromEnumerable(Streamed(50));
        Assert.False(data.CanShuffle);
        var split = Data.TrainTestSplit(data, 0.2, seed: 11);
        var expected = Data.TrainTestSplit(Data.LoadFromEnumerable(Items(50)), 0.2, seed: 11);
        Assert.Equal(expected.TestSet.GetColumn<int>("Id"), split.TestSet.GetColumn<int>("Id"));
        Assert.Equal(expected.TrainSet.GetColumn<int>("Id"), split.TrainSet.GetColumn<int>("Id"));
        Assert.Equal(10, split.TestSet.GetRowCount());
    }

    [Fact]
    public void ShuffleIsAPermutationDeterminedBySeed()
    {
        var data = Data.LoadFromEnumerable(Items(100));
        var a = Data.ShuffleRows(data, seed: 1).GetColumn<int>("Id").ToArray();
        var b = Data.ShuffleRows(data, seed: 1).GetColumn<int>("Id").ToArray();
        var c = Data.ShuffleRows(data, seed: 2).GetColumn<int>("Id").ToArray();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.NotEqual(Enumerable.Range(0, 100), a);
        Assert.Equal(Enumerable.Range(0, 100), a.Order());
        // The same view read twice gives the same order.
        var view = Data.ShuffleRows(data, seed: 9);
        Assert.Equal(view.GetColumn<int>("Id"), view.GetColumn<int>("Id"));
        // A streaming source is cached and shuffled the same way.
        Assert.Equal(a, Data.ShuffleRows(Data.LoadFromEnumerable(Streamed(100)), seed: 1).GetColumn<int>("Id"));
    }

    [Fact]
    public void TakeAndSkip()
    {
        foreach (var data in new[] { Data.LoadFromEnumerable(Items(10)), Data.LoadFromEnumerable(Streamed(10)) })
        {
            Assert.Equal([0, 1, 2], Data.TakeRows(data, 3).GetColumn<int>("Id"));
            Assert.Equal([7, 8, 9], Data.SkipRows(data, 7).GetColumn<int>("Id"));
            Assert.Equal(Enumerable.Range(0, 10), Data.TakeRows(data, 100).GetColumn<int>("Id"));
            Assert.Empty(Data.SkipRows(data, 100).GetColumn<int>("Id"));
            Assert.Equal([3, 4], Data.TakeRows(Data.SkipRows(data, 3), 2).GetColumn<int>("Id"));
            Assert.Empty(Data.TakeRows(data, 0).GetColumn<int>("Id"));
        }
        Assert.Equal(3, Data.TakeRows(Data.LoadFromEnumerable(Items(10)), 3).GetRowCount());
        Assert.Equal(3, Data.SkipRows(Data.LoadFromEnumerable(Items(10)), 7).GetRowCount());
        Assert.Throws<ArgumentOutOfRangeException>(() => Data.TakeRows(Data.LoadFromEnumerable(Items(1)), -1));
    }

    [Fact]
    public void TakeStopsReadingTheSourceEarly()
    {
        int produced = 0;
        IEnumerable<Item> Counting()
        {
            foreach (var item in Items(1000))
            {
                produced++;
                yield return item;
            }
        }

        Assert.Equal([0, 1], Data.TakeRows(Data.LoadFromEnumerable(Counting()), 2).GetColumn<int>("Id"));
        Assert.Equal(2, produced);
    }

    [Fact]
    public void FilterRowsByColumnKeepsHalfOpenRange()
    {
        var data = Data.LoadFromEnumerable(Items(10)); // Value = 0, 0.5, ..., 4.5
        Assert.Equal([2, 3, 4, 5], Data.FilterRowsByColumn(data, "Value", 1.0, 3.0).GetColumn<int>("Id"));
        Assert.Equal([6, 7, 8, 9], Data.FilterRowsByColumn(data, "Id", lowerBound: 6).GetColumn<int>("Id"));
        // The filter column need not be read by the caller.
        Assert.Equal(["g0", "g1"], Data.FilterRowsByColumn(data, "Id", upperBound: 2).GetColumn<string>("Group"));
        Assert.Contains("'Nope'", Assert.Throws<ArgumentOutOfRangeException>(() => Data.FilterRowsByColumn(data, "Nope")).Message);
        Assert.Contains("'Group'", Assert.Throws<ArgumentOutOfRangeException>(() => Data.FilterRowsByColumn(data, "Group")).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Data.FilterRowsByColumn(data, "Id", 3, 3));

        var withNaN = Data.LoadFromEnumerable(new[] { new Item { Id = 0, Value = float.NaN }, new Item { Id = 1, Value = 1 } });
        Assert.Equal([1], Data.FilterRowsByColumn(withNaN, "Value").GetColumn<int>("Id"));
    }

    [Fact]
    public void CacheReadsTheSourceOnceOnFirstUse()
    {
        int enumerations = 0;
        IEnumerable<Item> Counting()
        {
            enumerations++;
            foreach (var item in Items(5))
                yield return item;
        }

        var cached = Data.Cache(Data.LoadFromEnumerable(Counting()));
        Assert.Equal(0, enumerations);
        Assert.True(cached.CanShuffle);
        Assert.Equal(Enumerable.Range(0, 5), cached.GetColumn<int>("Id"));
        Assert.Equal(["g0", "g1", "g2", "g3", "g4"], cached.GetColumn<string>("Group"));
        Assert.Equal(5, cached.GetRowCount());
        Assert.Equal(1, enumerations);
        Assert.Throws<ArgumentOutOfRangeException>(() => Data.Cache(cached, "Nope"));
    }
}
