namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>
/// GPT-2's reversible byte-to-char table: printable Latin-1 bytes stand for themselves, the other 68 bytes
/// are shifted to U+0100 and above, so every byte sequence becomes a printable string (space becomes 'Ġ').
/// </summary>
internal static class ByteLevelAlphabet
{
    /// <summary>The char each byte is written as.</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>The byte each char stands for, -1 for chars outside the alphabet (index by char, 0..0x143).</summary>
    private static readonly short[] s_charToByte = BuildCharToByte();

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is (>= '!' and <= '~') or (>= 0xA1 and <= 0xAC) or (>= 0xAE and <= 0xFF);
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[0x144];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++)
        {
            map[ByteToChar[b]] = (short)b;
        }
        return map;
    }

    /// <summary>The byte a char stands for, or -1.</summary>
    public static int CharToByte(char c) => c < s_charToByte.Length ? s_charToByte[c] : -1;

    /// <summary>Maps a byte sequence to its byte-level string.</summary>
    public static string FromBytes(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++)
            {
                dst[i] = ByteToChar[src[i]];
            }
        });
    }

    /// <summary>
    /// <see cref="Transform"/> of <c>text.Slice(start, end)</c>, without the intermediate slice for the common case of
    /// ASCII chars that map positionally onto the original.
    /// </summary>
    public static NormalizedText TransformRange(NormalizedText text, int start, int end)
    {
        if (text.IsPositional && !text.Text.AsSpan(start, end - start).ContainsAnyExceptInRange('\0', '\u007F'))
        {
            string mapped = string.Create(end - start, (text.Text, start), static (dst, state) =>
            {
                var src = state.Text.AsSpan(state.start, dst.Length);
                for (int i = 0; i < src.Length; i++)
                {
                    dst[i] = ByteToChar[src[i]];
                }
            });
            int offset = text.CharStart(0) + start;
            return NormalizedText.Positional(mapped, offset, offset, offset + (end - start));
        }
        return Transform(text.Slice(start, end));
    }

    /// <summary>
    /// Rewrites a piece as the byte-level chars of its UTF-8 encoding. Each byte char keeps the original range
    /// of the char it was encoded from. Lone surrogates are encoded as U+FFFD.
    /// </summary>
    public static NormalizedText Transform(NormalizedText piece)
    {
        string s = piece.Text;
        bool ascii = true;
        foreach (char c in s)
        {
            if (c >= 0x80)
            {
                ascii = false;
                break;
            }
        }
        if (ascii)
        {
            string mapped = string.Create(s.Length, s, static (dst, src) =>
            {
                for (int i = 0; i < src.Length; i++)
                {
                    dst[i] = ByteToChar[src[i]];
                }
            });
            return piece.WithSameAlignment(mapped);
        }
        var builder = new AlignedTextBuilder(s.Length * 2);
        Span<byte> buf = stackalloc byte[4];
        for (int i = 0; i < s.Length;)
        {
            int cp = s.ConvertToUtf32OrSelf(i, out int len);
            if (cp is >= 0xD800 and <= 0xDFFF)
            {
                cp = 0xFFFD;
            }
            int n = new System.Text.Rune(cp).EncodeToUtf8(buf);
            var (os, oe) = piece.MapRange(i, i + len);
            for (int k = 0; k < n; k++)
            {
                builder.Append(ByteToChar[buf[k]], os, oe);
            }
            i += len;
        }
        return builder.Build(piece.OriginalStart, piece.OriginalEnd);
    }
}
