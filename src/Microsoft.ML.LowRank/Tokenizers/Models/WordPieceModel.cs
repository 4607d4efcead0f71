namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>A model over a fixed token-to-id vocabulary (shared by WordPiece and WordLevel).</summary>
public abstract class VocabularyModel : TokenizerModel
{
    /// <summary>Token to id.</summary>
    private protected readonly Dictionary<string, int> _vocab;
    /// <summary>Id to token (null where the id is unused).</summary>
    private protected readonly string?[] _idToToken;

    /// <summary>Copies the vocabulary and builds the reverse table.</summary>
    /// <param name="vocabulary">Token to id.</param>
    private protected VocabularyModel(IReadOnlyDictionary<string, int> vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        _vocab = new Dictionary<string, int>(vocabulary, StringComparer.Ordinal);
        int max = _vocab.Count == 0 ? -1 : _vocab.Values.Max();
        _idToToken = new string?[max + 1];
        foreach (var (token, id) in _vocab)
        {
            _idToToken[id] = token;
        }
        MaxId = max;
    }

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
}

/// <summary>
/// BERT's WordPiece: each word is split greedily into the longest vocabulary prefixes, continuation pieces being
/// looked up with the <see cref="ContinuingSubwordPrefix"/> ("##"). A word that cannot be fully split, or that is
/// longer than <see cref="MaxInputCharsPerWord"/>, becomes the unknown token.
/// </summary>
public sealed class WordPieceModel : VocabularyModel
{
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly int _unkId;
    private readonly WordCache _cache = new();

    /// <summary>Creates a WordPiece model.</summary>
    /// <param name="vocabulary">Token to id.</param>
    /// <param name="unknownToken">The unknown token; must be in the vocabulary.</param>
    /// <param name="continuingSubwordPrefix">The prefix of continuation pieces.</param>
    /// <param name="maxInputCharsPerWord">Words with more chars (code points) than this become the unknown token.</param>
    public WordPieceModel(IReadOnlyDictionary<string, int> vocabulary, string unknownToken = "[UNK]", string continuingSubwordPrefix = "##", int maxInputCharsPerWord = 100)
        : base(vocabulary)
    {
        ArgumentNullException.ThrowIfNull(unknownToken);
        ArgumentNullException.ThrowIfNull(continuingSubwordPrefix);
        _lookup = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        if (!_vocab.TryGetValue(unknownToken, out _unkId))
        {
            throw new ArgumentException($"The unknown token '{unknownToken}' is not in the vocabulary.", nameof(unknownToken));
        }
        UnknownToken = unknownToken;
        ContinuingSubwordPrefix = continuingSubwordPrefix;
        MaxInputCharsPerWord = maxInputCharsPerWord;
    }

    /// <summary>Reads a BERT <c>vocab.txt</c> (one token per line, the line number being the id).</summary>
    public static WordPieceModel FromVocabFile(string path, string unknownToken = "[UNK]", string continuingSubwordPrefix = "##", int maxInputCharsPerWord = 100)
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        int id = 0;
        foreach (string line in File.ReadLines(path))
        {
            vocab.TryAdd(line.TrimEnd('\r', '\n'), id++);
        }
        return new WordPieceModel(vocab, unknownToken, continuingSubwordPrefix, maxInputCharsPerWord);
    }

    /// <summary>The unknown token.</summary>
    public string UnknownToken { get; }

    /// <summary>The prefix of continuation pieces.</summary>
    public string ContinuingSubwordPrefix { get; }

    /// <summary>The longest word (in chars) that is split; longer ones become the unknown token.</summary>
    public int MaxInputCharsPerWord { get; }

    /// <inheritdoc/>
    public override void Tokenize(string sequence, List<Token> tokens)
    {
        if (sequence.Length == 0)
        {
            return;
        }
        if (_cache.TryGet(sequence, out var cached))
        {
            tokens.AddRange(cached);
            return;
        }
        var result = Split(sequence);
        _cache.Add(sequence, result);
        tokens.AddRange(result);
    }

    private Token[] Split(string word)
    {
        var unk = new[] { new Token(_unkId, UnknownToken, 0, word.Length) };
        int chars = 0;
        for (int i = 0; i < word.Length; i++)
        {
            if (!char.IsLowSurrogate(word[i]))
            {
                chars++;
            }
        }
        if (chars > MaxInputCharsPerWord)
        {
            return unk;
        }
        var pieces = new List<Token>();
        int prefixLength = ContinuingSubwordPrefix.Length;
        var buffer = new char[prefixLength + word.Length];
        ContinuingSubwordPrefix.AsSpan().CopyTo(buffer);
        int start = 0;
        while (start < word.Length)
        {
            int end = word.Length;
            Token? found = null;
            while (start < end)
            {
                ReadOnlySpan<char> candidate;
                if (start > 0)
                {
                    word.AsSpan(start, end - start).CopyTo(buffer.AsSpan(prefixLength));
                    candidate = buffer.AsSpan(0, prefixLength + end - start);
                }
                else
                {
                    candidate = word.AsSpan(0, end);
                }
                if (_lookup.TryGetValue(candidate, out int id))
                {
                    found = new Token(id, _idToToken[id]!, start, end);
                    break;
                }
                // Step back one code point.
                end -= end - 2 >= start && char.IsLowSurrogate(word[end - 1]) && char.IsHighSurrogate(word[end - 2]) ? 2 : 1;
            }
            if (found is null)
            {
                return unk;
            }
            pieces.Add(found.Value);
            start = found.Value.End;
        }
        return pieces.ToArray();
    }
}

/// <summary>A whole-word vocabulary: each pre-tokenized piece is one token (or the unknown token).</summary>
public sealed class WordLevelModel : VocabularyModel
{

    private readonly int _unkId;

    /// <summary>Creates a word-level model.</summary>
    /// <param name="vocabulary">Token to id.</param>
    /// <param name="unknownToken">The unknown token, or <see langword="null"/> to drop unknown words.</param>
    public WordLevelModel(IReadOnlyDictionary<string, int> vocabulary, string? unknownToken = "[UNK]")
        : base(vocabulary)
    {
        _unkId = unknownToken is not null && _vocab.TryGetValue(unknownToken, out int unk) ? unk : -1;
        UnknownToken = unknownToken;
    }

    /// <summary>The unknown token.</summary>
    public string? UnknownToken { get; }

    /// <inheritdoc/>
    public override void Tokenize(string sequence, List<Token> tokens)
    {
        if (sequence.Length == 0)
        {
            return;
        }
        if (_vocab.TryGetValue(sequence, out int id))
        {
            tokens.Add(new Token(id, _idToToken[id]!, 0, sequence.Length));
        }
        else if (_unkId >= 0)
        {
            tokens.Add(new Token(_unkId, UnknownToken!, 0, sequence.Length));
        }
    }
}
