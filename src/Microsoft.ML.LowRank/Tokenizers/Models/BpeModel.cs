using System.Buffers;
using System.Globalization;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>Options of a <see cref="BpeModel"/> (the fields of a tokenizer.json <c>"BPE"</c> model).</summary>
public sealed class BpeOptions
{
    /// <summary>The unknown token, used for chars that are not in the vocabulary (and have no byte fallback).</summary>
    public string? UnknownToken { get; init; }

    /// <summary>Prefix of tokens that continue a word (e.g. "##"), or <see langword="null"/>.</summary>
    public string? ContinuingSubwordPrefix { get; init; }

    /// <summary>Suffix of tokens that end a word (e.g. "&lt;/w&gt;"), or <see langword="null"/>.</summary>
    public string? EndOfWordSuffix { get; init; }

    /// <summary>Whether consecutive unknown chars become a single unknown token.</summary>
    public bool FuseUnknown { get; init; }

    /// <summary>Whether chars missing from the vocabulary are written as their UTF-8 bytes (<c>&lt;0x41&gt;</c> tokens).</summary>
    public bool ByteFallback { get; init; }

    /// <summary>Whether a word that is itself in the vocabulary is emitted as one token without merging (LLaMA-3).</summary>
    public bool IgnoreMerges { get; init; }
}

/// <summary>
/// Byte-pair encoding with a ranked merge list, as in Hugging Face tokenizers: byte-level BPE (GPT-2, RoBERTa,
/// LLaMA-3, Qwen2 — used with the byte-level pre-tokenizer) and SentencePiece-style BPE with byte fallback
/// (LLaMA-2, Mistral — used with the metaspace pre-tokenizer or normalizer).
/// </summary>
public sealed class BpeModel : TokenizerModel
{
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabLookup;
    private readonly string?[] _idToToken;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly int[] _byteFallbackIds; // id of <0xNN> per byte, -1 when absent
    private readonly int _unkId;
    private readonly WordCache _cache = new();
    private readonly Merger _merger;
    private readonly string? _prefix; // null when empty
    private readonly string? _suffix; // null when empty

    /// <summary>Creates a BPE model.</summary>
    /// <param name="vocabulary">Token to id.</param>
    /// <param name="merges">The merges, highest priority first, as pairs of tokens.</param>
    /// <param name="options">Options; <see langword="null"/> for the defaults.</param>
    public BpeModel(IReadOnlyDictionary<string, int> vocabulary, IEnumerable<(string Left, string Right)> merges, BpeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(merges);
        Options = options ?? new BpeOptions();
        _vocab = new Dictionary<string, int>(vocabulary, StringComparer.Ordinal);
        _vocabLookup = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        int max = -1;
        foreach (int id in _vocab.Values)
        {
            if (id < 0)
            {
                throw new ArgumentException("Token ids must not be negative.", nameof(vocabulary));
            }
            max = Math.Max(max, id);
        }
        _idToToken = new string?[max + 1];
        foreach (var (token, id) in _vocab)
        {
            _idToToken[id] = token;
        }
        MaxId = max;

        _prefix = string.IsNullOrEmpty(Options.ContinuingSubwordPrefix) ? null : Options.ContinuingSubwordPrefix;
        _suffix = string.IsNullOrEmpty(Options.EndOfWordSuffix) ? null : Options.EndOfWordSuffix;
        string? prefix = _prefix;
        _merges = new Dictionary<long, (int, int)>();
        int rank = 0;
        foreach (var (left, right) in merges)
        {
            if (!_vocab.TryGetValue(left, out int leftId) || !_vocab.TryGetValue(right, out int rightId))
            {
                throw new FormatException($"BPE merge '{left} {right}' uses a token that is not in the vocabulary.");
            }
            string merged = prefix is not null && right.StartsWith(prefix, StringComparison.Ordinal)
                ? left + right.Substring(prefix.Length)
                : left + right;
            if (!_vocab.TryGetValue(merged, out int newId))
            {
                throw new FormatException($"BPE merge '{left} {right}' produces '{merged}', which is not in the vocabulary.");
            }
            _merges.TryAdd(Key(leftId, rightId), (rank, newId));
            rank++;
        }

        _byteFallbackIds = new int[256];
        for (int b = 0; b < 256; b++)
        {
            _byteFallbackIds[b] = _vocab.TryGetValue(ByteToken(b), out int id) ? id : -1;
        }
        _unkId = Options.UnknownToken is not null && _vocab.TryGetValue(Options.UnknownToken, out int unk) ? unk : -1;
        if (Options.UnknownToken is not null && _unkId < 0)
        {
            throw new ArgumentException($"The unknown token '{Options.UnknownToken}' is not in the vocabulary.", nameof(options));
        }
        _merger = new Merger(_merges);
    }

    /// <summary>The options the model was created with.</summary>
    public BpeOptions Options { get; }

    /// <summary>Words with at most this many symbols use the quadratic merge loop (for tests of the heap path).</summary>
    internal int SmallWordLimit
    {
        get => _merger.SmallWordLimit;
        set
        {
            _merger.SmallWordLimit = value;
            _cache.Clear();
        }
    }

    /// <summary>The number of merges.</summary>
    public int MergeCount => _merges.Count;

    /// <inheritdoc/>
    public override int VocabularySize => _vocab.Count;

    /// <inheritdoc/>
    public override int MaxId { get; }

    /// <inheritdoc/>
    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    /// <inheritdoc/>
    public override string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, int> GetVocabulary() => new Dictionary<string, int>(_vocab);

    /// <summary>The token a byte falls back to: <c>&lt;0x0A&gt;</c>.</summary>
    internal static string ByteToken(int b) => "<0x" + b.ToString("X2", CultureInfo.InvariantCulture) + ">";

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <inheritdoc/>
    public override void Tokenize(string sequence, List<Token> tokens)
    {
        if (sequence.Length == 0)
        {
            return;
        }
        if (Options.IgnoreMerges && _vocab.TryGetValue(sequence, out int whole))
        {
            tokens.Add(new Token(whole, _idToToken[whole]!, 0, sequence.Length));
            return;
        }
        if (_cache.TryGet(sequence, out var cached))
        {
            tokens.AddRange(cached);
            return;
        }
        var result = MergeWord(sequence);
        _cache.Add(sequence, result);
        tokens.AddRange(result);
    }

    private Token[] MergeWord(string word)
    {
        int capacity = word.Length * 4 + 4;
        int[] ids = ArrayPool<int>.Shared.Rent(capacity);
        int[] starts = ArrayPool<int>.Shared.Rent(capacity);
        int[] ends = ArrayPool<int>.Shared.Rent(capacity);
        try
        {
            int count = 0;
            int pendingUnkStart = -1, pendingUnkEnd = -1;
            string? prefix = _prefix;
            string? suffix = _suffix;
            Span<char> buffer = stackalloc char[64];
            Span<byte> utf8 = stackalloc byte[4];
            for (int i = 0; i < word.Length;)
            {
                int cp = word.ConvertToUtf32OrSelf(i, out int len);
                int end = i + len;
                scoped ReadOnlySpan<char> symbol = word.AsSpan(i, len);
                if ((prefix is not null && i > 0) || (suffix is not null && end == word.Length))
                {
                    string p = i > 0 ? prefix ?? "" : "";
                    string s = end == word.Length ? suffix ?? "" : "";
                    Span<char> b = p.Length + len + s.Length <= buffer.Length ? buffer : new char[p.Length + len + s.Length];
                    p.AsSpan().CopyTo(b);
                    symbol.CopyTo(b.Slice(p.Length));
                    s.AsSpan().CopyTo(b.Slice(p.Length + len));
                    symbol = b.Slice(0, p.Length + len + s.Length);
                }
                if (_vocabLookup.TryGetValue(symbol, out int id))
                {
                    FlushUnk(ref count, ref pendingUnkStart, pendingUnkEnd, ids, starts, ends);
                    ids[count] = id;
                    starts[count] = i;
                    ends[count] = end;
                    count++;
                }
                else if (Options.ByteFallback && TryByteFallback(cp, utf8, out int n))
                {
                    FlushUnk(ref count, ref pendingUnkStart, pendingUnkEnd, ids, starts, ends);
                    for (int k = 0; k < n; k++)
                    {
                        ids[count] = _byteFallbackIds[utf8[k]];
                        starts[count] = i;
                        ends[count] = end;
                        count++;
                    }
                }
                else if (_unkId >= 0)
                {
                    if (Options.FuseUnknown && pendingUnkStart >= 0)
                    {
                        pendingUnkEnd = end;
                    }
                    else
                    {
                        FlushUnk(ref count, ref pendingUnkStart, pendingUnkEnd, ids, starts, ends);
                        pendingUnkStart = i;
                        pendingUnkEnd = end;
                    }
                }
                i = end;
            }
            FlushUnk(ref count, ref pendingUnkStart, pendingUnkEnd, ids, starts, ends);

            count = _merger.Merge(word, ids, starts, ends, count);
            var result = new Token[count];
            for (int k = 0; k < count; k++)
            {
                result[k] = new Token(ids[k], _idToToken[ids[k]]!, starts[k], ends[k]);
            }
            return result;
        }
        finally
        {
            ArrayPool<int>.Shared.Return(ids);
            ArrayPool<int>.Shared.Return(starts);
            ArrayPool<int>.Shared.Return(ends);
        }
    }

    private void FlushUnk(ref int count, ref int pendingStart, int pendingEnd, int[] ids, int[] starts, int[] ends)
    {
        if (pendingStart >= 0)
        {
            ids[count] = _unkId;
            starts[count] = pendingStart;
            ends[count] = pendingEnd;
            count++;
            pendingStart = -1;
        }
    }

    private bool TryByteFallback(int cp, Span<byte> utf8, out int n)
    {
        if (cp is >= 0xD800 and <= 0xDFFF)
        {
            cp = 0xFFFD;
        }
        n = new System.Text.Rune(cp).EncodeToUtf8(utf8);
        for (int k = 0; k < n; k++)
        {
            if (_byteFallbackIds[utf8[k]] < 0)
            {
                return false;
            }
        }
        return true;
    }

    private sealed class Merger(Dictionary<long, (int Rank, int NewId)> merges) : BpeMerger
    {
        protected override bool TryGetMerge(string word, int leftId, int rightId, int start, int end, out int rank, out int newId)
        {
            if (merges.TryGetValue(Key(leftId, rightId), out var m))
            {
                rank = m.Rank;
                newId = m.NewId;
                return true;
            }
            rank = 0;
            newId = 0;
            return false;
        }
    }
}
