using System.Collections.Concurrent;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>One token produced by a <see cref="TokenizerModel"/> for a pre-tokenized piece of text.</summary>
/// <param name="Id">The token id.</param>
/// <param name="Value">The token string as it appears in the vocabulary.</param>
/// <param name="Start">Start char offset of the token within the piece.</param>
/// <param name="End">End char offset (exclusive) of the token within the piece.</param>
public readonly record struct Token(int Id, string Value, int Start, int End);

/// <summary>
/// The core of a tokenizer: splits one pre-tokenized piece ("word") into vocabulary tokens
/// (<see cref="BpeModel"/>, <see cref="WordPieceModel"/>, <see cref="WordLevelModel"/>, <see cref="TiktokenModel"/>).
/// </summary>
public abstract class TokenizerModel
{
    /// <summary>Splits <paramref name="sequence"/> into tokens, appending them to <paramref name="tokens"/>.</summary>
    /// <param name="sequence">A pre-tokenized piece of normalized text.</param>
    /// <param name="tokens">The list to append to; token offsets are relative to <paramref name="sequence"/>.</param>
    public abstract void Tokenize(string sequence, List<Token> tokens);

    /// <summary>The id of a vocabulary token, or <see langword="null"/>.</summary>
    public abstract int? TokenToId(string token);

    /// <summary>The vocabulary token of an id, or <see langword="null"/>.</summary>
    public abstract string? IdToToken(int id);

    /// <summary>The number of entries in the model's vocabulary.</summary>
    public abstract int VocabularySize { get; }

    /// <summary>The largest id of the model's vocabulary (-1 when empty).</summary>
    public abstract int MaxId { get; }

    /// <summary>A copy of the vocabulary (token to id).</summary>
    public abstract IReadOnlyDictionary<string, int> GetVocabulary();
}

/// <summary>A bounded, thread-safe cache of per-word tokenization results.</summary>
internal sealed class WordCache
{
    /// <summary>Words longer than this are not cached.</summary>
    public const int MaxWordLength = 128;

    private readonly ConcurrentDictionary<string, Token[]> _map = new();
    private readonly int _capacity;

    public WordCache(int capacity = 100_000) => _capacity = capacity;

    public bool TryGet(string word, out Token[] tokens) => _map.TryGetValue(word, out tokens!);

    public void Add(string word, Token[] tokens)
    {
        if (word.Length <= MaxWordLength && _map.Count < _capacity)
        {
            _map.TryAdd(word, tokens);
        }
    }

    public void Clear() => _map.Clear();
}

/// <summary>
/// The byte-pair merge loop shared by <see cref="BpeModel"/> and <see cref="TiktokenModel"/>: repeatedly merges the
/// adjacent pair with the lowest rank (the leftmost one on ties) until no adjacent pair can be merged.
/// </summary>
internal abstract class BpeMerger
{
    /// <summary>Words with at most this many symbols use the simple quadratic loop, longer ones a priority queue.</summary>
    public int SmallWordLimit { get; set; } = 24;

    /// <summary>Looks up whether two adjacent symbols merge, with what rank and into which id.</summary>
    /// <param name="word">The word being merged.</param>
    /// <param name="leftId">Id of the left symbol.</param>
    /// <param name="rightId">Id of the right symbol.</param>
    /// <param name="start">Start char of the left symbol in <paramref name="word"/>.</param>
    /// <param name="end">End char of the right symbol in <paramref name="word"/>.</param>
    /// <param name="rank">The merge rank (lower merges first).</param>
    /// <param name="newId">The id of the merged symbol.</param>
    protected abstract bool TryGetMerge(string word, int leftId, int rightId, int start, int end, out int rank, out int newId);

    /// <summary>
    /// Merges the symbols in place. <paramref name="ids"/>, <paramref name="starts"/> and <paramref name="ends"/>
    /// describe the initial symbols; returns the number of symbols left (compacted at the front of the arrays).
    /// </summary>
    public int Merge(string word, int[] ids, int[] starts, int[] ends, int count)
    {
        if (count < 2)
        {
            return count;
        }
        if (count <= SmallWordLimit)
        {
            return MergeSmall(word, ids, starts, ends, count);
        }
        var prev = new int[count];
        var next = new int[count];
        for (int i = 0; i < count; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < count ? i + 1 : -1;
        }
        var queue = new PriorityQueue<(int Left, int Right, int LeftId, int RightId, int NewId), long>();
        for (int i = 0; i + 1 < count; i++)
        {
            if (TryGetMerge(word, ids[i], ids[i + 1], starts[i], ends[i + 1], out int rank, out int newId))
            {
                queue.Enqueue((i, i + 1, ids[i], ids[i + 1], newId), ((long)rank << 32) | (uint)starts[i]);
            }
        }
        var alive = new bool[count];
        Array.Fill(alive, true);
        while (queue.TryDequeue(out var m, out _))
        {
            int l = m.Left, r = m.Right;
            if (!alive[l] || !alive[r] || next[l] != r || ids[l] != m.LeftId || ids[r] != m.RightId)
            {
                continue;
            }
            ids[l] = m.NewId;
            ends[l] = ends[r];
            alive[r] = false;
            next[l] = next[r];
            if (next[r] >= 0)
            {
                prev[next[r]] = l;
            }
            int p = prev[l];
            if (p >= 0 && TryGetMerge(word, ids[p], ids[l], starts[p], ends[l], out int rank, out int newId))
            {
                queue.Enqueue((p, l, ids[p], ids[l], newId), ((long)rank << 32) | (uint)starts[p]);
            }
            int n = next[l];
            if (n >= 0 && TryGetMerge(word, ids[l], ids[n], starts[l], ends[n], out rank, out newId))
            {
                queue.Enqueue((l, n, ids[l], ids[n], newId), ((long)rank << 32) | (uint)starts[l]);
            }
        }
        int k = 0;
        for (int i = 0; i < count; i++)
        {
            if (alive[i])
            {
                ids[k] = ids[i];
                starts[k] = starts[i];
                ends[k] = ends[i];
                k++;
            }
        }
        return k;
    }

    /// <summary>The quadratic version for short words: keeps the rank of each adjacent pair in an array.</summary>
    private int MergeSmall(string word, int[] ids, int[] starts, int[] ends, int count)
    {
        Span<int> ranks = stackalloc int[count];
        Span<int> newIds = stackalloc int[count];
        for (int i = 0; i + 1 < count; i++)
        {
            ranks[i] = TryGetMerge(word, ids[i], ids[i + 1], starts[i], ends[i + 1], out int r, out int n) ? r : int.MaxValue;
            newIds[i] = n;
        }
        while (count > 1)
        {
            int best = -1;
            int bestRank = int.MaxValue;
            for (int i = 0; i + 1 < count; i++)
            {
                if (ranks[i] < bestRank)
                {
                    bestRank = ranks[i];
                    best = i;
                }
            }
            if (best < 0)
            {
                break;
            }
            ids[best] = newIds[best];
            ends[best] = ends[best + 1];
            for (int i = best + 1; i + 1 < count; i++)
            {
                ids[i] = ids[i + 1];
                starts[i] = starts[i + 1];
                ends[i] = ends[i + 1];
                ranks[i] = ranks[i + 1];
                newIds[i] = newIds[i + 1];
            }
            count--;
            if (best > 0)
            {
                ranks[best - 1] = TryGetMerge(word, ids[best - 1], ids[best], starts[best - 1], ends[best], out int r, out int n) ? r : int.MaxValue;
                newIds[best - 1] = n;
            }
            if (best + 1 < count)
            {
                ranks[best] = TryGetMerge(word, ids[best], ids[best + 1], starts[best], ends[best + 1], out int r, out int n) ? r : int.MaxValue;
                newIds[best] = n;
            }
            else
            {
                ranks[best] = int.MaxValue;
            }
        }
        return count;
    }
}
