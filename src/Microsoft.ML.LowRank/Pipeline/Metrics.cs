using System.Globalization;
using System.Text;

namespace Microsoft.ML.LowRank.Data;

/// <summary>Counts of (true class, predicted class) pairs, with per-class precision and recall (ML.NET's <c>ConfusionMatrix</c>).</summary>
public sealed class ConfusionMatrix
{
    private readonly double[][] _counts;

    internal ConfusionMatrix(double[][] counts, IReadOnlyList<string> classNames)
    {
        _counts = counts;
        ClassNames = classNames;
        int k = counts.Length;
        var precision = new double[k];
        var recall = new double[k];
        for (int c = 0; c < k; c++)
        {
            double tp = counts[c][c], predicted = 0, actual = 0;
            for (int j = 0; j < k; j++)
            {
                predicted += counts[j][c];
                actual += counts[c][j];
            }
            precision[c] = predicted > 0 ? tp / predicted : 0;
            recall[c] = actual > 0 ? tp / actual : 0;
        }
        PerClassPrecision = precision;
        PerClassRecall = recall;
    }

    /// <summary>The number of classes.</summary>
    public int NumberOfClasses => _counts.Length;

    /// <summary>Counts[t][p]: the number of rows of true class t predicted as class p (0-based class indices: key - 1).</summary>
    public IReadOnlyList<IReadOnlyList<double>> Counts => _counts;

    /// <summary>Per class: correct predictions of the class over all predictions of it (0 when never predicted).</summary>
    public IReadOnlyList<double> PerClassPrecision { get; }

    /// <summary>Per class: correct predictions of the class over its rows (0 when it has none).</summary>
    public IReadOnlyList<double> PerClassRecall { get; }

    /// <summary>The class names (the label's key values as text, or the key numbers).</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>The count of rows of class <paramref name="actualClassIndex"/> predicted as <paramref name="predictedClassIndex"/>.</summary>
    /// <param name="predictedClassIndex">The predicted class (0-based).</param>
    /// <param name="actualClassIndex">The true class (0-based).</param>
    /// <returns>The count.</returns>
    public double GetCountForClassPair(int predictedClassIndex, int actualClassIndex) => _counts[actualClassIndex][predictedClassIndex];

    /// <summary>The matrix as a text table (rows: truth, columns: prediction), with recall per row and precision per column.</summary>
    /// <returns>The table.</returns>
    public string GetFormattedConfusionTable()
    {
        var inv = CultureInfo.InvariantCulture;
        int width = Math.Max(8, ClassNames.Max(n => n.Length) + 1);
        var sb = new StringBuilder();
        sb.Append("Confusion table (rows: truth, columns: predicted)\n");
        sb.Append("".PadRight(width)).Append('|');
        foreach (var n in ClassNames) sb.Append(n.PadLeft(width));
        sb.Append(" | Recall\n");
        for (int t = 0; t < NumberOfClasses; t++)
        {
            sb.Append(ClassNames[t].PadRight(width)).Append('|');
            for (int p = 0; p < NumberOfClasses; p++) sb.Append(_counts[t][p].ToString("0", inv).PadLeft(width));
            sb.Append(" | ").Append(PerClassRecall[t].ToString("0.0000", inv)).Append('\n');
        }
        sb.Append("Precision".PadRight(width)).Append('|');
        foreach (var p in PerClassPrecision) sb.Append(p.ToString("0.0000", inv).PadLeft(width));
        sb.Append('\n');
        return sb.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => GetFormattedConfusionTable();
}

/// <summary>The results of <see cref="MulticlassClassificationCatalog.Evaluate"/> (ML.NET's <c>MulticlassClassificationMetrics</c>).</summary>
public sealed class MulticlassClassificationMetrics
{
    /// <summary>The fraction of rows predicted correctly.</summary>
    public required double MicroAccuracy { get; init; }

    /// <summary>The mean over classes present in the data of each class's accuracy (recall).</summary>
    public required double MacroAccuracy { get; init; }

    /// <summary>The mean of −ln(max(p, 1e-15)) where p is the score of the true class.</summary>
    public required double LogLoss { get; init; }

    /// <summary>(L₀ − LogLoss) / L₀ where L₀ is the log-loss of predicting the class frequencies of the data (its entropy);
    /// 1 is perfect, 0 is no better than the prior, negative is worse. NaN when the data has a single class.</summary>
    public required double LogLossReduction { get; init; }

    /// <summary>The mean log-loss of the rows of each class (NaN for a class without rows).</summary>
    public required IReadOnlyList<double> PerClassLogLoss { get; init; }

    /// <summary>The number of top predictions <see cref="TopKAccuracy"/> counts (0: not computed).</summary>
    public required int TopKPredictionCount { get; init; }

    /// <summary>The fraction of rows whose true class is among the <see cref="TopKPredictionCount"/> highest scores
    /// (ties count against the row); NaN when not computed.</summary>
    public required double TopKAccuracy { get; init; }

    /// <summary>The confusion matrix.</summary>
    public required ConfusionMatrix ConfusionMatrix { get; init; }

    /// <summary>The number of rows evaluated (rows with a missing label are skipped).</summary>
    public required long RowCount { get; init; }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"MicroAccuracy {MicroAccuracy:F4}, MacroAccuracy {MacroAccuracy:F4}, LogLoss {LogLoss:F4}, LogLossReduction {LogLossReduction:F4} ({RowCount} rows)");
}

/// <summary>The results of <see cref="RegressionCatalog.Evaluate"/> (ML.NET's <c>RegressionMetrics</c>, plus correlations).</summary>
public sealed class RegressionMetrics
{
    /// <summary>The mean of |label − score|.</summary>
    public required double MeanAbsoluteError { get; init; }

    /// <summary>The mean of (label − score)².</summary>
    public required double MeanSquaredError { get; init; }

    /// <summary>√<see cref="MeanSquaredError"/>.</summary>
    public required double RootMeanSquaredError { get; init; }

    /// <summary>The mean of the loss function (squared error, so equal to <see cref="MeanSquaredError"/>).</summary>
    public required double LossFunction { get; init; }

    /// <summary>The coefficient of determination 1 − Σ(label − score)² / Σ(label − mean label)²; NaN for constant labels.</summary>
    public required double RSquared { get; init; }

    /// <summary>Pearson's correlation of scores and labels; NaN when either is constant.</summary>
    public required double PearsonCorrelation { get; init; }

    /// <summary>Spearman's rank correlation (Pearson's correlation of the ranks, ties given their average rank).</summary>
    public required double SpearmanCorrelation { get; init; }

    /// <summary>The number of rows evaluated (rows with a non-finite label are skipped).</summary>
    public required long RowCount { get; init; }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"RSquared {RSquared:F4}, RMSE {RootMeanSquaredError:F4}, MAE {MeanAbsoluteError:F4}, Pearson {PearsonCorrelation:F4}, Spearman {SpearmanCorrelation:F4} ({RowCount} rows)");
}

/// <summary>Precision, recall and F1 of one entity type.</summary>
/// <param name="Precision">Correct entities of the type over predicted entities of the type.</param>
/// <param name="Recall">Correct entities of the type over true entities of the type.</param>
/// <param name="F1Score">The harmonic mean of precision and recall.</param>
/// <param name="Support">The number of true entities of the type.</param>
public sealed record EntityTypeMetrics(double Precision, double Recall, double F1Score, int Support);

/// <summary>
/// The results of <see cref="MulticlassClassificationCatalog.EvaluateNamedEntityRecognition"/>: entity-level scores as
/// conlleval and seqeval compute them. An entity is a maximal span of words tagged B-X I-X ... I-X (an I-X after O or
/// after a tag of another type also starts an entity); it counts as correct only when a predicted entity has exactly the
/// same type and boundaries. Tags without a B-/I- prefix count as O.
/// </summary>
public sealed class NamedEntityRecognitionMetrics
{
    /// <summary>Correct entities over predicted entities (micro average; 0 when nothing is predicted).</summary>
    public required double Precision { get; init; }

    /// <summary>Correct entities over true entities (micro average; 0 when there are none).</summary>
    public required double Recall { get; init; }

    /// <summary>2PR / (P + R) (0 when both are 0).</summary>
    public required double F1Score { get; init; }

    /// <summary>The scores of each entity type (in order of first appearance).</summary>
    public required IReadOnlyDictionary<string, EntityTypeMetrics> PerEntityType { get; init; }

    /// <summary>The fraction of words whose tag is predicted exactly.</summary>
    public required double TokenAccuracy { get; init; }

    /// <summary>The number of true entities.</summary>
    public required int TrueEntityCount { get; init; }

    /// <summary>The number of predicted entities.</summary>
    public required int PredictedEntityCount { get; init; }

    /// <summary>The number of correctly predicted entities.</summary>
    public required int CorrectEntityCount { get; init; }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"F1 {F1Score:F4}, Precision {Precision:F4}, Recall {Recall:F4}, TokenAccuracy {TokenAccuracy:F4} ({TrueEntityCount} entities)");
}

/// <summary>The results of <see cref="TextGenerationCatalog.Evaluate"/>.</summary>
public sealed class CausalLMMetrics
{
    /// <summary>The mean negative log-likelihood (nats per token) over all scored response tokens of all rows.</summary>
    public required double LogLoss { get; init; }

    /// <summary>exp(<see cref="LogLoss"/>).</summary>
    public required double Perplexity { get; init; }

    /// <summary>The number of response tokens scored.</summary>
    public required long TokenCount { get; init; }

    /// <summary>The fraction of rows whose completion equals the response (both trimmed); NaN when no completion column was given.</summary>
    public required double ExactMatch { get; init; }

    /// <summary>The number of rows evaluated.</summary>
    public required long RowCount { get; init; }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"LogLoss {LogLoss:F4}, Perplexity {Perplexity:F3}, ExactMatch {ExactMatch:F4} ({TokenCount} tokens, {RowCount} rows)");
}
