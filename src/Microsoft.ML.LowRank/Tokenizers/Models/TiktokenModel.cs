namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>
/// tiktoken's rank-based byte-pair encoding: the mergeable tokens are byte strings with a rank (which is also the
/// id), and a word's bytes are merged pairwise, lowest-ranked concatenation first. A word that is itself a token is
/// emitted directly. Tokens are represented as byte-level strings (GPT-2's byte-to-char alphabet, e.g. "Ġhello"),
/// so the model composes with <see cref="ByteLevelPreTokenizer"/> and <see cref="ByteLevelDecoder"/>.
/// </summary>
public sealed class TiktokenModel : TokenizerModel
{
    private readonly Dictionary<string, int> _ranks;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly string?[] _idToToken;
    private readonly int[] _byteIds = new int[256];
    private readonly WordCache _cache = new();
    private readonly Merger _merger;

    /// <summary>Creates a model from byte-string ranks.</summary>
    /// <param name="ranks">The mergeable tokens as raw bytes, with their ranks (= ids).</param>
    public TiktokenModel(IEnumerable<(byte[] Bytes, int Rank)> ranks)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        _ranks = new Dictionary<string, int>(StringComparer.Ordinal);
        int max = -1;
        foreach (var (bytes, rank) in ranks)
        {
            if (rank < 0)
            {
                throw new ArgumentException("Ranks must not be negative.", nameof(ranks));
            }
            _ranks[ByteLevelAlphabet.FromBytes(bytes)] = rank;
            max = Math.Max(max, rank);
        }
        _lookup = _ranks.GetAlternateLookup<ReadOnlySpan<char>>();
        _idToToken = new string?[max + 1];
        foreach (var (token, id) in _ranks)
        {
            _idToToken[id] = token;
        }
        MaxId = max;
        for (int b = 0; b < 256; b++)
        {
            if (!_ranks.TryGetValue(ByteLevelAlphabet.ByteToChar[b].ToString(), out _byteIds[b]))
            {
                throw new ArgumentException($"The ranks do not contain the single byte 0x{b:X2}.", nameof(ranks));
            }
        }
        _merger = new Merger(this);
    }

    /// <summary>Loads a tiktoken rank file: one "base64-token rank" pair per line.</summary>
    public static TiktokenModel FromFile(string path)
    {
        using var stream = File.OpenRead(path);
        return FromStream(stream);
    }

    /// <summary>Reads a tiktoken rank file: one "base64-token rank" pair per line.</summary>
    public static TiktokenModel FromStream(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var list = new List<(byte[], int)>(100_000);
        using var reader = new StreamReader(stream, System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: false);
        string? line;
        int lineNumber = 0;
        while ((line = reader.ReadLine()) is not null)
        {
            lineNumber++;
            if (line.Length == 0)
            {
                continue;
            }
            int space = line.IndexOf(' ');
            if (space <= 0 || !int.TryParse(line.AsSpan(space + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int rank))
            {
                throw new FormatException($"Line {lineNumber} of the tiktoken file is not 'base64 rank': '{line}'.");
            }
            list.Add((Convert.FromBase64String(line.Substring(0, space)), rank));
        }
        return new TiktokenModel(list);
    }

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

    /// <inheritdoc/>
    public override int VocabularySize => _ranks.Count;

    /// <inheritdoc/>
    public override int MaxId { get; }

    /// <inheritdoc/>
    public override int? TokenToId(string token) => _ranks.TryGetValue(token, out int id) ? id : null;

    /// <inheritdoc/>
    public override string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, int> GetVocabulary() => new Dictionary<string, int>(_ranks);

    /// <summary>The raw bytes of a token id, or <see langword="null"/>.</summary>
    public byte[]? IdToBytes(int id)
    {
        string? token = IdToToken(id);
        if (token is null)
        {
            return null;
        }
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            bytes[i] = (byte)ByteLevelAlphabet.CharToByte(token[i]);
        }
        return bytes;
    }

    /// <inheritdoc/>
    public override void Tokenize(string sequence, List<Token> tokens)
    {
        if (sequence.Length == 0)
        {
            return;
        }
        if (_ranks.TryGetValue(sequence, out int whole))
        {
            tokens.Add(new Token(whole, _idToToken[whole]!, 0, sequence.Length));
            return;
        }
        if (_cache.TryGet(sequence, out var cached))
        {
            tokens.AddRange(cached);
            return;
        }
        int n = sequence.Length;
        var ids = new int[n];
        var starts = new int[n];
        var ends = new int[n];
        for (int i = 0; i < n; i++)
        {
            int b = ByteLevelAlphabet.CharToByte(sequence[i]);
            if (b < 0)
            {
                throw new ArgumentException("The sequence is not a byte-level string; use the byte-level pre-tokenizer.", nameof(sequence));
            }
            ids[i] = _byteIds[b];
            starts[i] = i;
            ends[i] = i + 1;
        }
        int count = _merger.Merge(sequence, ids, starts, ends, n);
        var result = new Token[count];
        for (int k = 0; k < count; k++)
        {
            result[k] = new Token(ids[k], _idToToken[ids[k]]!, starts[k], ends[k]);
        }
        _cache.Add(sequence, result);
        tokens.AddRange(result);
    }

    private sealed class Merger(TiktokenModel model) : BpeMerger
    {
        protected override bool TryGetMerge(string word, int leftId, int rightId, int start, int end, out int rank, out int newId)
        {
            if (model._lookup.TryGetValue(word.AsSpan(start, end - start), out rank))
            {
                newId = rank;
                return true;
            }
            newId = 0;
            return false;
        }
    }
}
