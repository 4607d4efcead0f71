using System.Globalization;
using System.Net;
using System.Text;

namespace Microsoft.ML.LowRank.Training.Comparison;

/// <summary>Renders comparison rows as a text table, CSV, and an HTML page with bar charts (self-contained SVG).</summary>
public static class ComparisonReport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The column headers, in order.</summary>
    public static IReadOnlyList<string> Columns { get; } = new[]
    {
        "method", "size", "trainable params", "% of base", "accuracy", "train time (s)", "peak memory (MiB)", "tokens/s", "final loss", "error",
    };

    private static string[] Cells(ComparisonRow r) => new[]
    {
        r.Method,
        r.SizeSetting,
        r.TrainableParameters.ToString("N0", Inv),
        r.PercentOfBase.ToString("F3", Inv),
        double.IsNaN(r.Accuracy) ? "-" : r.Accuracy.ToString("F4", Inv),
        r.TrainTime.TotalSeconds.ToString("F1", Inv),
        r.PeakMemoryBytes < 0 ? "-" : (r.PeakMemoryBytes / 1048576.0).ToString("F0", Inv),
        r.TokensPerSecond.ToString("F0", Inv),
        double.IsNaN(r.FinalLoss) ? "-" : r.FinalLoss.ToString("F4", Inv),
        r.Error ?? "",
    };

    /// <summary>A Markdown table (readable as plain text).</summary>
    /// <param name="rows">The rows.</param>
    /// <returns>The table.</returns>
    public static string ToTable(IReadOnlyList<ComparisonRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var cells = rows.Select(Cells).ToList();
        var showError = rows.Any(r => r.Error is not null);
        var n = showError ? Columns.Count : Columns.Count - 1;
        var widths = Enumerable.Range(0, n).Select(c => Math.Max(Columns[c].Length, cells.Count == 0 ? 0 : cells.Max(x => x[c].Length))).ToArray();
        var sb = new StringBuilder();
        void Line(IReadOnlyList<string> v) => sb.Append("| ").Append(string.Join(" | ", Enumerable.Range(0, n).Select(c => v[c].PadRight(widths[c])))).AppendLine(" |");
        Line(Columns);
        sb.Append('|').Append(string.Join("|", widths.Select(w => new string('-', w + 2)))).AppendLine("|");
        foreach (var c in cells) Line(c);
        return sb.ToString();
    }

    /// <summary>CSV (RFC 4180 quoting), raw numbers (parameters, seconds, bytes).</summary>
    /// <param name="rows">The rows.</param>
    /// <returns>The CSV text.</returns>
    public static string ToCsv(IReadOnlyList<ComparisonRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var sb = new StringBuilder("method,size,trainable_params,head_params,base_params,percent_of_base,accuracy,train_seconds,peak_memory_bytes,tokens_per_second,final_loss,error\n");
        foreach (var r in rows)
        {
            sb.Append(string.Join(",", new[]
            {
                Quote(r.Method), Quote(r.SizeSetting), r.TrainableParameters.ToString(Inv), r.HeadParameters.ToString(Inv),
                r.BaseParameters.ToString(Inv), r.PercentOfBase.ToString("R", Inv), r.Accuracy.ToString("R", Inv),
                r.TrainTime.TotalSeconds.ToString("R", Inv), r.PeakMemoryBytes.ToString(Inv), r.TokensPerSecond.ToString("R", Inv),
                r.FinalLoss.ToString("R", Inv), Quote(r.Error ?? ""),
            })).Append('\n');
        }
        return sb.ToString();
    }

    private static string Quote(string s) => s.IndexOfAny(new[] { ',', '"', '\n', '\r' }) < 0 ? s : "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    /// <summary>A self-contained HTML page: the table and one horizontal bar chart per measure.</summary>
    /// <param name="rows">The rows.</param>
    /// <param name="title">The page title.</param>
    /// <param name="notes">Lines shown under the title (settings, data set, machine).</param>
    /// <returns>The HTML text.</returns>
    public static string ToHtml(IReadOnlyList<ComparisonRow> rows, string title, IEnumerable<string>? notes = null)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>").Append(WebUtility.HtmlEncode(title)).Append("</title><style>")
          .Append("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}")
          .Append("td:first-child,th:first-child{text-align:left}.chart{margin:1.5em 0}</style></head><body><h1>")
          .Append(WebUtility.HtmlEncode(title)).Append("</h1>");
        foreach (var n in notes ?? Array.Empty<string>()) sb.Append("<p>").Append(WebUtility.HtmlEncode(n)).Append("</p>");
        sb.Append("<table><tr>");
        foreach (var c in Columns) sb.Append("<th>").Append(WebUtility.HtmlEncode(c)).Append("</th>");
        sb.Append("</tr>");
        foreach (var r in rows)
        {
            sb.Append("<tr>");
            foreach (var c in Cells(r)) sb.Append("<td>").Append(WebUtility.HtmlEncode(c)).Append("</td>");
            sb.Append("</tr>");
        }
        sb.Append("</table>");
        Chart(sb, "Accuracy (held-out)", rows, r => double.IsNaN(r.Accuracy) ? 0 : r.Accuracy, "F4");
        Chart(sb, "Trainable parameters", rows, r => r.TrainableParameters, "N0");
        Chart(sb, "Tokens per second", rows, r => r.TokensPerSecond, "F0");
        Chart(sb, "Peak memory (MiB)", rows, r => Math.Max(0, r.PeakMemoryBytes) / 1048576.0, "F0");
        Chart(sb, "Train time (s)", rows, r => r.TrainTime.TotalSeconds, "F1");
        sb.Append("</body></html>\n");
        return sb.ToString();
    }

    private static void Chart(StringBuilder sb, string title, IReadOnlyList<ComparisonRow> rows, Func<ComparisonRow, double> value, string format)
    {
        const int labelWidth = 140, barWidth = 420, rowHeight = 22;
        var max = rows.Count == 0 ? 1 : Math.Max(1e-12, rows.Max(value));
        var height = rowHeight * rows.Count + 10;
        sb.Append("<div class=\"chart\"><h3>").Append(WebUtility.HtmlEncode(title)).Append("</h3>")
          .Append(Inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{labelWidth + barWidth + 110}\" height=\"{height}\">");
        for (int i = 0; i < rows.Count; i++)
        {
            var v = value(rows[i]);
            var w = barWidth * v / max;
            var y = i * rowHeight + 4;
            sb.Append(Inv, $"<text x=\"0\" y=\"{y + 14}\" font-size=\"12\">{WebUtility.HtmlEncode(rows[i].Method)}</text>")
              .Append(Inv, $"<rect x=\"{labelWidth}\" y=\"{y}\" width=\"{w:F1}\" height=\"{rowHeight - 6}\" fill=\"#4e79a7\"/>")
              .Append(Inv, $"<text x=\"{labelWidth + w + 6:F1}\" y=\"{y + 14}\" font-size=\"12\">{v.ToString(format, Inv)}</text>");
        }
        sb.Append("</svg></div>");
    }
}
