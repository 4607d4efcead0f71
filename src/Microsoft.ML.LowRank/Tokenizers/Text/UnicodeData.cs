using System.Globalization;
using System.Text;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>
/// Unicode normalization (NFC, NFD, NFKC, NFKD) and character-class helpers that work without ICU, so that the
/// tokenizers behave the same with <c>InvariantGlobalization</c> (where <see cref="string.Normalize()"/> is a no-op).
/// </summary>
internal static partial class UnicodeData
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static class Tables
    {
        public static readonly Dictionary<int, (int Canonical, int Compat)> Decomp = BuildDecomp();
        public static readonly Dictionary<long, int> Compose = BuildCompose();

        private static Dictionary<int, (int, int)> BuildDecomp()
        {
            var d = Decompositions;
            var map = new Dictionary<int, (int, int)>(d.Length / 3);
            for (int i = 0; i < d.Length; i += 3)
            {
                map[d[i]] = (d[i + 1], d[i + 2]);
            }
            return map;
        }

        private static Dictionary<long, int> BuildCompose()
        {
            var c = Compositions;
            var map = new Dictionary<long, int>(c.Length / 3);
            for (int i = 0; i < c.Length; i += 3)
            {
                map[((long)c[i] << 21) | (uint)c[i + 1]] = c[i + 2];
            }
            return map;
        }
    }

    /// <summary>The canonical combining class of a code point.</summary>
    public static int CombiningClass(int cp)
    {
        if (cp < 0x300)
        {
            return 0;
        }
        var r = CombiningClassRanges;
        int lo = 0, hi = r.Length / 3 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (cp < r[3 * mid])
            {
                hi = mid - 1;
            }
            else if (cp > r[3 * mid + 1])
            {
                lo = mid + 1;
            }
            else
            {
                return r[3 * mid + 2];
            }
        }
        return 0;
    }

    /// <summary>Full decomposition of a code point (empty when it has none). Hangul syllables are not included.</summary>
    public static ReadOnlySpan<char> GetDecomposition(int cp, bool compatibility)
    {
        if (cp < 0xA0 || !Tables.Decomp.TryGetValue(cp, out var e))
        {
            return default;
        }
        int packed = compatibility ? e.Compat : e.Canonical;
        return packed == 0 ? default : DecompositionChars.AsSpan(packed >> 5, packed & 31);
    }

    /// <summary>The primary composite of two code points, or -1.</summary>
    public static int Compose(int first, int second)
    {
        // Hangul: L + V -> LV, LV + T -> LVT.
        int lIndex = first - LBase;
        if ((uint)lIndex < LCount)
        {
            int vIndex = second - VBase;
            return (uint)vIndex < VCount ? SBase + (lIndex * VCount + vIndex) * TCount : -1;
        }
        int sIndex = first - SBase;
        if ((uint)sIndex < SCount && sIndex % TCount == 0)
        {
            int tIndex = second - TBase;
            return tIndex > 0 && tIndex < TCount ? first + tIndex : -1;
        }
        return Tables.Compose.TryGetValue(((long)first << 21) | (uint)second, out int c) ? c : -1;
    }

    /// <summary>Whether a string may need work under the given normalization (false: it is certainly unchanged).</summary>
    public static bool MayChange(string s, bool compatibility)
    {
        // Below U+00A0 nothing decomposes; U+00A0 itself only has a compatibility decomposition; U+00C0 is the first
        // canonical one. Combining marks start at U+0300 and only combine with earlier chars that are >= 'A', but a
        // plain ASCII text followed by a combining mark has a char >= U+0300, so the threshold check suffices.
        char limit = compatibility ? '\u00A0' : '\u00C0';
        foreach (char c in s)
        {
            if (c >= limit)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Normalizes a piece of text, keeping the alignment to the original input.</summary>
    public static NormalizedText Normalize(NormalizedText input, bool compatibility, bool compose)
    {
        string s = input.Text;
        if (!MayChange(s, compatibility))
        {
            return input;
        }
        // 1. Full decomposition, each code point carrying the original range of the char it came from.
        var cps = new List<(int Cp, int Start, int End)>(s.Length + 8);
        for (int i = 0; i < s.Length;)
        {
            int cp = s.ConvertToUtf32OrSelf(i, out int len);
            var (os, oe) = input.MapRange(i, i + len);
            int sIndex = cp - SBase;
            if ((uint)sIndex < SCount)
            {
                cps.Add((LBase + sIndex / NCount, os, oe));
                cps.Add((VBase + sIndex % NCount / TCount, os, oe));
                if (sIndex % TCount != 0)
                {
                    cps.Add((TBase + sIndex % TCount, os, oe));
                }
            }
            else
            {
                var d = GetDecomposition(cp, compatibility);
                if (d.IsEmpty)
                {
                    cps.Add((cp, os, oe));
                }
                else
                {
                    for (int j = 0; j < d.Length;)
                    {
                        int dcp = CharExtensions.ConvertToUtf32OrSelf(d, j, out int dlen);
                        cps.Add((dcp, os, oe));
                        j += dlen;
                    }
                }
            }
            i += len;
        }

        // 2. Canonical ordering: stable sort of each run of non-starters by combining class.
        var classes = new int[cps.Count];
        for (int i = 0; i < cps.Count; i++)
        {
            classes[i] = CombiningClass(cps[i].Cp);
        }
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = classes[i];
            if (cc == 0)
            {
                continue;
            }
            int j = i;
            while (j > 0 && classes[j - 1] > cc)
            {
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
                (classes[j - 1], classes[j]) = (classes[j], classes[j - 1]);
                j--;
            }
        }

        // 3. Canonical composition.
        if (compose && cps.Count > 1)
        {
            var output = new List<(int Cp, int Start, int End)>(cps.Count);
            int starterPos = -1;
            int lastClass = -1;
            for (int i = 0; i < cps.Count; i++)
            {
                var item = cps[i];
                int cc = classes[i];
                if (starterPos >= 0 && (lastClass < cc || lastClass == 0))
                {
                    var starter = output[starterPos];
                    int composite = Compose(starter.Cp, item.Cp);
                    if (composite >= 0)
                    {
                        output[starterPos] = (composite, Math.Min(starter.Start, item.Start), Math.Max(starter.End, item.End));
                        continue;
                    }
                }
                if (cc == 0)
                {
                    starterPos = output.Count;
                    lastClass = 0;
                }
                else
                {
                    lastClass = cc;
                }
                output.Add(item);
            }
            cps = output;
        }

        var builder = new AlignedTextBuilder(cps.Count + 4);
        foreach (var (cp, os, oe) in cps)
        {
            builder.AppendCodePoint(cp, os, oe);
        }
        var result = builder.Build(input.OriginalStart, input.OriginalEnd);
        return result.Text == s ? input : result;
    }

    /// <summary>Normalizes a plain string.</summary>
    public static string Normalize(string s, NormalizationForm form)
    {
        bool compat = form is NormalizationForm.FormKC or NormalizationForm.FormKD;
        bool compose = form is NormalizationForm.FormC or NormalizationForm.FormKC;
        return Normalize(NormalizedText.FromOriginal(s, 0, s.Length), compat, compose).Text;
    }

    /// <summary>Unicode general category of the code point at <paramref name="index"/> (surrogate pairs read as one).</summary>
    public static UnicodeCategory Category(string s, int index) => CharUnicodeInfo.GetUnicodeCategory(s, index);

    /// <summary>Rust's <c>char::is_whitespace</c> (the Unicode White_Space property).</summary>
    public static bool IsWhiteSpace(int cp) => cp switch
    {
        >= 0x09 and <= 0x0D or 0x20 or 0x85 or 0xA0 or 0x1680 or (>= 0x2000 and <= 0x200A) or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    /// <summary>Python's <c>str.isspace</c> for one char (used by chat templates' <c>strip()</c>/<c>trim</c>).</summary>
    public static bool IsPythonSpace(char c) => c switch
    {
        >= '\t' and <= '\r' or (>= '\x1c' and <= '\x1f') or ' ' or '\x85' or '\xa0' or '\u1680' or (>= '\u2000' and <= '\u200a') or '\u2028' or '\u2029' or '\u202f' or '\u205f' or '\u3000' => true,
        _ => false,
    };

    /// <summary>Python's <c>str.strip()</c>.</summary>
    public static string PythonStrip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsPythonSpace(s[start]))
        {
            start++;
        }
        while (end > start && IsPythonSpace(s[end - 1]))
        {
            end--;
        }
        return s.Substring(start, end - start);
    }

    /// <summary>Whether a code point is punctuation in BERT's sense: ASCII punctuation or Unicode category P*.</summary>
    public static bool IsBertPunctuation(int cp)
    {
        if (cp < 0x80)
        {
            return cp is (>= 33 and <= 47) or (>= 58 and <= 64) or (>= 91 and <= 96) or (>= 123 and <= 126);
        }
        return CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    /// <summary>The CJK ideograph blocks BERT surrounds with spaces.</summary>
    public static bool IsCjk(int cp) =>
        cp is (>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF) or (>= 0x2A700 and <= 0x2B73F)
            or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B920 and <= 0x2CEAF) or (>= 0xF900 and <= 0xFAFF) or (>= 0x2F800 and <= 0x2FA1F);

    /// <summary>Whether a code point is in one of the "other" categories (Cc, Cf, Cs, Co, Cn).</summary>
    public static bool IsOther(int cp) =>
        CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
            or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;

    /// <summary>Lower-cases one code point the way Rust's <c>char::to_lowercase</c> does (İ becomes "i̇").</summary>
    public static void AppendLower(int cp, int originalStart, int originalEnd, AlignedTextBuilder builder)
    {
        if (cp == 0x130)
        {
            builder.Append('i', originalStart, originalEnd);
            builder.Append('\u0307', originalStart, originalEnd);
            return;
        }
        int lower = cp < 0x80 ? (cp is >= 'A' and <= 'Z' ? cp + 32 : cp) : Rune.ToLowerInvariant(new Rune(cp)).Value;
        builder.AppendCodePoint(lower, originalStart, originalEnd);
    }
}

/// <summary>Small helpers over UTF-16 text.</summary>
internal static class CharExtensions
{
    /// <summary>Reads the code point at <paramref name="index"/>; a lone surrogate is returned as itself.</summary>
    public static int ConvertToUtf32OrSelf(this string s, int index, out int length) =>
        ConvertToUtf32OrSelf(s.AsSpan(), index, out length);

    /// <summary>Reads the code point at <paramref name="index"/>; a lone surrogate is returned as itself.</summary>
    public static int ConvertToUtf32OrSelf(ReadOnlySpan<char> s, int index, out int length)
    {
        char c = s[index];
        if (char.IsHighSurrogate(c) && index + 1 < s.Length && char.IsLowSurrogate(s[index + 1]))
        {
            length = 2;
            return char.ConvertToUtf32(c, s[index + 1]);
        }
        length = 1;
        return c;
    }
}
