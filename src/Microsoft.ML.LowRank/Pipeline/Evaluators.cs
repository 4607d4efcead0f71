using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>The metric computations behind the catalogs' <c>Evaluate</c> methods (plain loops in float64).</summary>
internal static class Evaluators
{
    private const double LogLossEpsilon = 1e-15;

    public static MulticlassClassificationMetrics Multiclass(IDataView data, string label, string score, string predicted, int topK)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (topK < 0) throw new ArgumentOutOfRangeException(nameof(topK), topK, "topKPredictionCount must be >= 0");
        var labelCol = Columns.Find(data.Schema, "label", label);
        if (labelCol.Type is not KeyDataViewType labelType) throw Columns.Mismatch("label", label, "Key<UInt32>", labelCol.Type.ToString()!);
        var scoreCol = Columns.Find(data.Schema, "score", score);
        int k = (int)labelType.Count;
        if (scoreCol.Type is not VectorDataViewType { ItemType: NumberDataViewType s, Size: var size } || s != NumberDataViewType.Single || size != k)
            throw Columns.Mismatch("score", score, $"Vector<Single, {k}> (one score per class)", scoreCol.Type.ToString()!);
        var predCol = Columns.Find(data.Schema, "predicted label", predicted);
        if (predCol.Type is not KeyDataViewType) throw Columns.Mismatch("predicted label", predicted, "Key<UInt32>", predCol.Type.ToString()!);

        var counts = new double[k][];
        for (int i = 0; i < k; i++) counts[i] = new double[k];
        var classRows = new double[k];
        var classLogLoss = new double[k];
        double logLoss = 0;
        long rows = 0, correct = 0, topKHits = 0;
        using (var cursor = data.GetRowCursor([labelCol, scoreCol, predCol]))
        {
            var lg = cursor.GetGetter<uint>(labelCol);
            var sg = cursor.GetGetter<VBuffer<float>>(scoreCol);
            var pg = cursor.GetGetter<uint>(predCol);
            uint y = 0, p = 0;
            VBuffer<float> buffer = default;
            var scores = new float[k];
            while (cursor.MoveNext())
            {
                lg(ref y);
                if (y == 0 || y > k) continue;
                sg(ref buffer);
                buffer.CopyTo(scores);
                pg(ref p);
                int t = (int)y - 1;
                rows++;
                classRows[t]++;
                if (p >= 1 && p <= k)
                {
                    counts[t][p - 1]++;
                    if (p == y) correct++;
                }
                double ll = -Math.Log(Math.Max(scores[t], LogLossEpsilon));
                logLoss += ll;
                classLogLoss[t] += ll;
                if (topK > 0)
                {
                    int better = 0;
                    for (int c = 0; c < k; c++)
                        if (c != t && scores[c] >= scores[t]) better++;
                    if (better < topK) topKHits++;
                }
            }
        }
        if (rows == 0) throw new InvalidOperationException($"cannot evaluate: the data has no row with a label in column '{label}'");
        double macro = 0;
        int present = 0;
        double prior = 0;
        for (int c = 0; c < k; c++)
        {
            if (classRows[c] == 0) continue;
            present++;
            macro += counts[c][c] / classRows[c];
            double f = classRows[c] / rows;
            prior -= f * Math.Log(f);
        }
        double meanLogLoss = logLoss / rows;
        var names = Columns.KeyValuesAsText(labelCol) ?? Enumerable.Range(1, k).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        return new MulticlassClassificationMetrics
        {
            MicroAccuracy = (double)correct / rows,
            MacroAccuracy = macro / present,
            LogLoss = meanLogLoss,
            LogLossReduction = prior > 0 ? (prior - meanLogLoss) / prior : double.NaN,
            PerClassLogLoss = classLogLoss.Select((v, c) => classRows[c] > 0 ? v / classRows[c] : double.NaN).ToArray(),
            TopKPredictionCount = topK,
            TopKAccuracy = topK > 0 ? (double)topKHits / rows : double.NaN,
            ConfusionMatrix = new ConfusionMatrix(counts, names),
            RowCount = rows,
        };
    }

    public static RegressionMetrics Regression(IDataView data, string label, string score)
    {
        ArgumentNullException.ThrowIfNull(data);
        var labelCol = Columns.Find(data.Schema, "label", label);
        var scoreCol = Columns.Find(data.Schema, "score", score);
        var ys = ReadNumbers(data, labelCol, "label");
        var ss = ReadNumbers(data, scoreCol, "score");
        var pairs = ys.Zip(ss).Where(p => double.IsFinite(p.First)).ToArray();
        if (pairs.Length == 0) throw new InvalidOperationException($"cannot evaluate: the data has no row with a finite label in column '{label}'");
        double[] y = [.. pairs.Select(p => p.First)], s = [.. pairs.Select(p => p.Second)];
        int n = y.Length;
        double mae = 0, mse = 0, mean = y.Average(), tot = 0;
        for (int i = 0; i < n; i++)
        {
            double d = y[i] - s[i];
            mae += Math.Abs(d);
            mse += d * d;
            tot += (y[i] - mean) * (y[i] - mean);
        }
        return new RegressionMetrics
        {
            MeanAbsoluteError = mae / n,
            MeanSquaredError = mse / n,
            RootMeanSquaredError = Math.Sqrt(mse / n),
            LossFunction = mse / n,
            RSquared = tot > 0 ? 1 - mse / tot : double.NaN,
            PearsonCorrelation = Pearson(y, s),
            SpearmanCorrelation = Pearson(Ranks(y), Ranks(s)),
            RowCount = n,
        };
    }

    private static double[] ReadNumbers(IDataView data, DataViewSchema.Column column, string role)
    {
        var list = new List<double>();
        using var cursor = data.GetRowCursor([column]);
        if (column.Type == NumberDataViewType.Single)
        {
            var g = cursor.GetGetter<float>(column);
            float v = 0;
            while (cursor.MoveNext()) { g(ref v); list.Add(v); }
        }
        else if (column.Type == NumberDataViewType.Double)
        {
            var g = cursor.GetGetter<double>(column);
            double v = 0;
            while (cursor.MoveNext()) { g(ref v); list.Add(v); }
        }
        else
        {
            throw Columns.Mismatch(role, column.Name, "Single or Double", column.Type.ToString()!);
        }
        return [.. list];
    }

    /// <summary>Pearson's correlation; NaN when either series is constant.</summary>
    internal static double Pearson(double[] a, double[] b)
    {
        double ma = a.Average(), mb = b.Average(), sab = 0, saa = 0, sbb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sab += (a[i] - ma) * (b[i] - mb);
            saa += (a[i] - ma) * (a[i] - ma);
            sbb += (b[i] - mb) * (b[i] - mb);
        }
        return saa > 0 && sbb > 0 ? sab / Math.Sqrt(saa * sbb) : double.NaN;
    }

    /// <summary>1-based ranks, ties given their average rank.</summary>
    internal static double[] Ranks(double[] values)
    {
        var order = Enumerable.Range(0, values.Length).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Length];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && values[order[j + 1]] == values[order[i]]) j++;
            double rank = (i + j) / 2.0 + 1;
            for (int m = i; m <= j; m++) ranks[order[m]] = rank;
            i = j + 1;
        }
        return ranks;
    }

    public static NamedEntityRecognitionMetrics NamedEntities(IDataView data, string label, string predicted)
    {
        ArgumentNullException.ThrowIfNull(data);
        var labelCol = Columns.Find(data.Schema, "label", label);
        var predCol = Columns.Find(data.Schema, "predicted label", predicted);
        var truths = ReadTags(data, labelCol, "label");
        var preds = ReadTags(data, predCol, "predicted label");
        return NamedEntities(truths, preds);
    }

    /// <summary>Entity-level scores of tag sequences (one sequence per sentence).</summary>
    internal static NamedEntityRecognitionMetrics NamedEntities(IReadOnlyList<string[]> truths, IReadOnlyList<string[]> preds)
    {
        long words = 0, wordHits = 0;
        var order = new List<string>();
        var support = new Dictionary<string, int>();
        var predictedByType = new Dictionary<string, int>();
        var correctByType = new Dictionary<string, int>();
        int trueCount = 0, predCount = 0, correct = 0;
        for (int r = 0; r < truths.Count; r++)
        {
            var t = truths[r];
            var p = preds[r];
            if (t.Length != p.Length)
                throw new InvalidOperationException($"row {r} has {t.Length} true tags but {p.Length} predicted tags");
            for (int i = 0; i < t.Length; i++)
            {
                words++;
                if (t[i] == p[i]) wordHits++;
            }
            var gold = Entities(t);
            var guess = Entities(p);
            var goldSet = new HashSet<(string, int, int)>(gold);
            foreach (var e in gold)
            {
                if (!support.ContainsKey(e.Type)) { order.Add(e.Type); support[e.Type] = 0; }
                support[e.Type]++;
                trueCount++;
            }
            foreach (var e in guess)
            {
                if (!support.ContainsKey(e.Type)) { order.Add(e.Type); support[e.Type] = 0; }
                predictedByType[e.Type] = predictedByType.GetValueOrDefault(e.Type) + 1;
                predCount++;
                if (goldSet.Contains(e))
                {
                    correctByType[e.Type] = correctByType.GetValueOrDefault(e.Type) + 1;
                    correct++;
                }
            }
        }
        var per = new Dictionary<string, EntityTypeMetrics>();
        foreach (var type in order)
        {
            int c = correctByType.GetValueOrDefault(type), pr = predictedByType.GetValueOrDefault(type), su = support[type];
            per[type] = Score(c, pr, su);
        }
        var all = Score(correct, predCount, trueCount);
        return new NamedEntityRecognitionMetrics
        {
            Precision = all.Precision,
            Recall = all.Recall,
            F1Score = all.F1Score,
            PerEntityType = per,
            TokenAccuracy = words > 0 ? (double)wordHits / words : double.NaN,
            TrueEntityCount = trueCount,
            PredictedEntityCount = predCount,
            CorrectEntityCount = correct,
        };
    }

    private static EntityTypeMetrics Score(int correct, int predicted, int support)
    {
        double p = predicted > 0 ? (double)correct / predicted : 0;
        double r = support > 0 ? (double)correct / support : 0;
        return new EntityTypeMetrics(p, r, p + r > 0 ? 2 * p * r / (p + r) : 0, support);
    }

    /// <summary>The entities (type, first word, last word) of a BIO tag sequence (conlleval's chunk rules).</summary>
    internal static List<(string Type, int Start, int End)> Entities(IReadOnlyList<string> tags)
    {
        var result = new List<(string, int, int)>();
        string? type = null;
        int start = -1;
        for (int i = 0; i <= tags.Count; i++)
        {
            var (prefix, t) = i < tags.Count ? Split(tags[i]) : ('O', null);
            bool continues = prefix == 'I' && type is not null && t == type;
            if (type is not null && !continues)
            {
                result.Add((type, start, i - 1));
                type = null;
            }
            if (prefix is 'B' or 'I' && !continues)
            {
                type = t;
                start = i;
            }
        }
        return result;
    }

    private static (char Prefix, string? Type) Split(string tag)
    {
        if (tag.Length > 2 && (tag[0] == 'B' || tag[0] == 'I') && (tag[1] == '-' || tag[1] == '_')) return (tag[0], tag[2..]);
        return ('O', null);
    }

    private static List<string[]> ReadTags(IDataView data, DataViewSchema.Column column, string role)
    {
        if (column.Type is not VectorDataViewType { ItemType: KeyDataViewType } || Columns.KeyValuesAsText(column) is not { } names)
            throw Columns.Mismatch(role, column.Name, "a vector of Key<UInt32> with key values (the tags)", column.Type.ToString()!);
        var list = new List<string[]>();
        using var cursor = data.GetRowCursor([column]);
        var g = cursor.GetGetter<VBuffer<uint>>(column);
        VBuffer<uint> buffer = default;
        while (cursor.MoveNext())
        {
            g(ref buffer);
            var keys = new uint[buffer.Length];
            buffer.CopyTo(keys);
            list.Add([.. keys.Select(k => k >= 1 && k <= names.Length ? names[k - 1] : "O")]);
        }
        return list;
    }

    public static CausalLMMetrics CausalLM(IDataView data, string response, string? completion, string logLoss, string tokenCount)
    {
        ArgumentNullException.ThrowIfNull(data);
        var lossCol = Columns.Find(data.Schema, "log-loss", logLoss);
        var countCol = Columns.Find(data.Schema, "token count", tokenCount);
        if (lossCol.Type != NumberDataViewType.Single) throw Columns.Mismatch("log-loss", logLoss, "Single", lossCol.Type.ToString()!);
        if (countCol.Type != NumberDataViewType.Int32) throw Columns.Mismatch("token count", tokenCount, "Int32", countCol.Type.ToString()!);
        DataViewSchema.Column? responseCol = null, completionCol = null;
        if (completion is not null)
        {
            responseCol = Columns.Text(data.Schema, "response", response);
            completionCol = Columns.Text(data.Schema, "completion", completion);
        }
        double sum = 0;
        long tokens = 0, rows = 0, exact = 0;
        var needed = new List<DataViewSchema.Column> { lossCol, countCol };
        if (completionCol is { } cc) needed.AddRange([responseCol!.Value, cc]);
        using (var cursor = data.GetRowCursor(needed))
        {
            var lg = cursor.GetGetter<float>(lossCol);
            var cg = cursor.GetGetter<int>(countCol);
            var rg = responseCol is { } rc ? Columns.TextGetter(cursor, rc) : null;
            var og = completionCol is { } oc ? Columns.TextGetter(cursor, oc) : null;
            float l = 0;
            int n = 0;
            while (cursor.MoveNext())
            {
                lg(ref l);
                cg(ref n);
                rows++;
                if (n > 0 && float.IsFinite(l))
                {
                    sum += (double)l * n;
                    tokens += n;
                }
                if (rg is not null && og is not null && string.Equals(rg().Trim(), og().Trim(), StringComparison.Ordinal)) exact++;
            }
        }
        if (tokens == 0) throw new InvalidOperationException($"cannot evaluate: no response tokens were scored (column '{tokenCount}')");
        double mean = sum / tokens;
        return new CausalLMMetrics
        {
            LogLoss = mean,
            Perplexity = Math.Exp(mean),
            TokenCount = tokens,
            ExactMatch = completion is null ? double.NaN : (double)exact / rows,
            RowCount = rows,
        };
    }
}
