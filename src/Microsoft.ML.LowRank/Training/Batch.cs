using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// One micro-batch: token ids, an optional attention mask and optional labels (for causal LM: token ids, -100 where no
/// loss is wanted; for classification: class ids). Disposing it frees its tensors (they also belong to the dispose scope
/// open when they were created).
/// </summary>
public sealed class Batch : IDisposable
{
    private long? _tokenCount;

    /// <summary>Creates a batch.</summary>
    /// <param name="inputIds">Token ids [batch, seq], int64.</param>
    /// <param name="attentionMask">1 for real tokens, 0 for padding, [batch, seq]; null means no padding.</param>
    /// <param name="labels">Targets, or null.</param>
    public Batch(Tensor inputIds, Tensor? attentionMask = null, Tensor? labels = null)
    {
        InputIds = inputIds ?? throw new ArgumentNullException(nameof(inputIds));
        if (inputIds.dim() < 1) throw new ArgumentException("input ids need a batch dimension", nameof(inputIds));
        AttentionMask = attentionMask;
        Labels = labels;
    }

    /// <summary>Token ids [batch, seq].</summary>
    public Tensor InputIds { get; }

    /// <summary>Attention mask [batch, seq], or null.</summary>
    public Tensor? AttentionMask { get; }

    /// <summary>Targets, or null.</summary>
    public Tensor? Labels { get; }

    /// <summary>Segment ids (BERT sentence pairs), or null.</summary>
    public Tensor? TokenTypeIds { get; init; }

    /// <summary>Positions [batch, seq] (packed sequences restart at 0), or null for the default positions.</summary>
    public Tensor? PositionIds { get; init; }

    /// <summary>Packed sequences: the sequence each token belongs to [batch, seq] (attention stays inside a sequence), or null.</summary>
    public Tensor? SequenceIds { get; init; }

    /// <summary>Number of examples (rows).</summary>
    public int Size => (int)InputIds.size(0);

    /// <summary>Number of real (non-padding) tokens, for throughput reports: the sum of the attention mask, or every
    /// position without one. Computed on first use unless given.</summary>
    public long TokenCount
    {
        get
        {
            if (_tokenCount is null)
            {
                if (AttentionMask is null) _tokenCount = InputIds.numel();
                else
                {
                    using var s = AttentionMask.sum();
                    _tokenCount = s.ToInt64();
                }
            }
            return _tokenCount.Value;
        }
        init => _tokenCount = value;
    }

    /// <summary>Number of terms the loss averages over (e.g. unmasked target tokens after the causal shift), when known;
    /// used by <see cref="AccumulationLossWeighting.TokenWeighted"/>.</summary>
    public long? TargetCount { get; init; }

    /// <summary>The indices of the examples in their <see cref="IBatchSource"/>, when known.</summary>
    public IReadOnlyList<int>? ExampleIndices { get; init; }

    /// <summary>This batch on a device: itself when every tensor is already there, else a new batch (in the current
    /// dispose scope) with moved copies.</summary>
    /// <param name="device">The device.</param>
    /// <returns>The batch on the device.</returns>
    public Batch To(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (InputIds.device == device) return this;
        return new Batch(InputIds.to(device), AttentionMask?.to(device), Labels?.to(device))
        {
            TokenTypeIds = TokenTypeIds?.to(device),
            PositionIds = PositionIds?.to(device),
            SequenceIds = SequenceIds?.to(device),
            TargetCount = TargetCount,
            ExampleIndices = ExampleIndices,
            TokenCount = TokenCount,
        };
    }

    /// <summary>The batch as model inputs (the tensors are shared, not copied).</summary>
    /// <returns>The inputs.</returns>
    public ModelInputs ToModelInputs() => new()
    {
        InputIds = InputIds,
        AttentionMask = AttentionMask,
        Labels = Labels,
        TokenTypeIds = TokenTypeIds,
        PositionIds = PositionIds,
        SequenceIds = SequenceIds,
    };

    /// <summary>Frees the tensors.</summary>
    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask?.Dispose();
        Labels?.Dispose();
        TokenTypeIds?.Dispose();
        PositionIds?.Dispose();
        SequenceIds?.Dispose();
    }
}

/// <summary>
/// Training or validation data addressed by example index: the trainer decides the order (seeded shuffling, resumable
/// positions) and asks for one micro-batch at a time.
/// </summary>
public interface IBatchSource
{
    /// <summary>Number of examples.</summary>
    int Count { get; }

    /// <summary>Builds the micro-batch holding the given examples, in that order. The caller disposes it.</summary>
    /// <param name="indices">Example indices in [0, <see cref="Count"/>).</param>
    /// <returns>The batch.</returns>
    Batch GetBatch(IReadOnlyList<int> indices);
}

/// <summary>An <see cref="IBatchSource"/> over a function that builds batches (for data the <see cref="TokenBatcher"/>
/// does not cover, such as classification features).</summary>
public sealed class DelegateBatchSource : IBatchSource
{
    private readonly Func<IReadOnlyList<int>, Batch> _factory;

    /// <summary>Creates the source.</summary>
    /// <param name="count">Number of examples.</param>
    /// <param name="factory">Builds the batch of the given example indices.</param>
    public DelegateBatchSource(int count, Func<IReadOnlyList<int>, Batch> factory)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "must be >= 0");
        Count = count;
        _factory = factory ?? throw new ArgumentNullException(nameof(factory));
    }

    /// <inheritdoc/>
    public int Count { get; }

    /// <inheritdoc/>
    public Batch GetBatch(IReadOnlyList<int> indices) => _factory(indices);
}

/// <summary>The order in which the trainer visits examples: a pure function of (seed, epoch), so a run can resume at any
/// batch without replaying the data.</summary>
public static class DataOrder
{
    /// <summary>The example order of an epoch: 0..count-1, shuffled (Fisher–Yates over a SplitMix64 stream seeded by
    /// seed and epoch) when <paramref name="shuffle"/> is set. Identical on every platform and .NET version.</summary>
    /// <param name="count">Number of examples.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="epoch">The epoch (0-based).</param>
    /// <param name="shuffle">Shuffle, or keep the natural order.</param>
    /// <returns>The permutation.</returns>
    public static int[] Permutation(int count, int seed, int epoch, bool shuffle = true)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, "must be >= 0");
        var p = new int[count];
        for (int i = 0; i < count; i++) p[i] = i;
        if (!shuffle) return p;
        ulong state = unchecked((ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ ((ulong)(uint)epoch + 1) * 0xD1B54A32D192ED03UL);
        for (int i = count - 1; i > 0; i--)
        {
            int j = (int)Bounded(ref state, (ulong)i + 1);
            (p[i], p[j]) = (p[j], p[i]);
        }
        return p;
    }

    /// <summary>The micro-batches of an epoch: consecutive chunks of <see cref="Permutation"/>.</summary>
    /// <param name="count">Number of examples.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="epoch">The epoch.</param>
    /// <param name="shuffle">Shuffle the examples.</param>
    /// <param name="dropLast">Drop a last, smaller batch.</param>
    /// <returns>Example indices of each batch.</returns>
    public static List<int[]> Plan(int count, int batchSize, int seed, int epoch, bool shuffle, bool dropLast)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be >= 1");
        var order = Permutation(count, seed, epoch, shuffle);
        var batches = new List<int[]>();
        for (int start = 0; start < count; start += batchSize)
        {
            int n = Math.Min(batchSize, count - start);
            if (n < batchSize && dropLast) break;
            batches.Add(order.AsSpan(start, n).ToArray());
        }
        return batches;
    }

    /// <summary>The batches of one epoch, built lazily from a source (each one is the caller's to dispose).</summary>
    /// <param name="source">The data.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="seed">The run's seed.</param>
    /// <param name="epoch">The epoch.</param>
    /// <param name="shuffle">Shuffle the examples.</param>
    /// <param name="dropLast">Drop a last, smaller batch.</param>
    /// <returns>The batches.</returns>
    public static IEnumerable<Batch> Batches(IBatchSource source, int batchSize, int seed = 0, int epoch = 0, bool shuffle = false, bool dropLast = false)
    {
        ArgumentNullException.ThrowIfNull(source);
        foreach (var idx in Plan(source.Count, batchSize, seed, epoch, shuffle, dropLast)) yield return source.GetBatch(idx);
    }

    private static ulong Next(ref ulong state)
    {
        unchecked
        {
            state += 0x9E3779B97F4A7C15UL;
            ulong z = state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }

    private static ulong Bounded(ref ulong state, ulong bound)
    {
        // Rejection sampling: uniform in [0, bound) without modulo bias.
        ulong threshold = unchecked(0UL - bound) % bound;
        while (true)
        {
            ulong r = Next(ref state);
            if (r >= threshold) return r % bound;
        }
    }
}
