using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tokenizers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Data;

/// <summary>A train/test split of labelled sentences.</summary>
/// <param name="Train">Training sentences (original order kept).</param>
/// <param name="Test">Held-out sentences (original order kept).</param>
public sealed record SentimentSplit(IReadOnlyList<SentimentSentence> Train, IReadOnlyList<SentimentSentence> Test);

/// <summary>An accuracy over all sentences and per source.</summary>
/// <param name="Overall">Fraction correct over all sentences.</param>
/// <param name="BySource">Fraction correct per source (amazon, imdb, yelp).</param>
/// <param name="Count">Number of sentences.</param>
public sealed record SentimentAccuracy(double Overall, IReadOnlyDictionary<string, double> BySource, int Count)
{
    /// <summary>Computes the accuracy of predictions.</summary>
    /// <param name="sentences">The sentences.</param>
    /// <param name="predictions">Predicted labels, one per sentence.</param>
    /// <returns>The accuracy.</returns>
    public static SentimentAccuracy From(IReadOnlyList<SentimentSentence> sentences, IReadOnlyList<bool> predictions)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        ArgumentNullException.ThrowIfNull(predictions);
        if (sentences.Count == 0) throw new ArgumentException("No sentences.", nameof(sentences));
        if (predictions.Count != sentences.Count) throw new ArgumentException($"{predictions.Count} predictions for {sentences.Count} sentences.", nameof(predictions));
        var correct = new Dictionary<string, (int Right, int Total)>(StringComparer.Ordinal);
        int right = 0;
        for (int i = 0; i < sentences.Count; i++)
        {
            bool ok = predictions[i] == sentences[i].Label;
            if (ok) right++;
            var (r, t) = correct.GetValueOrDefault(sentences[i].Source);
            correct[sentences[i].Source] = (r + (ok ? 1 : 0), t + 1);
        }
        return new SentimentAccuracy((double)right / sentences.Count,
            correct.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(kv => kv.Key, kv => (double)kv.Value.Right / kv.Value.Total), sentences.Count);
    }

    /// <summary>"0.842 (amazon 0.85, imdb 0.83, yelp 0.845)".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Overall:F3} ({string.Join(", ", BySource.Select(kv => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:F3}")))})");
}

/// <summary>Settings of the zero-shot evaluation (<see cref="SentimentTask.EvaluateZeroShot"/>).</summary>
public sealed class ZeroShotOptions
{
    /// <summary>The prompt; <c>{text}</c> is replaced by the sentence. Default <c>"{text} In short, it was"</c>.</summary>
    public string Template { get; set; } = "{text} In short, it was";

    /// <summary>The continuation whose likelihood votes positive. Default <c>" good"</c>.</summary>
    public string PositiveWord { get; set; } = " good";

    /// <summary>The continuation whose likelihood votes negative. Default <c>" poor"</c>: the antonym of " good" that is
    /// one token in the default model's vocabulary (" bad" is two: "Ġb" "ad"), chosen for that reason alone, before any
    /// accuracy was looked at.</summary>
    public string NegativeWord { get; set; } = " poor";

    /// <summary>
    /// Contextual calibration (Zhao et al., "Calibrate Before Use", ICML 2021): subtract the score the model gives the
    /// content-free input <see cref="ContentFreeText"/>, which removes the model's prior preference for one word.
    /// Default true.
    /// </summary>
    public bool Calibrate { get; set; } = true;

    /// <summary>The content-free input of the calibration. Default <c>"N/A"</c>.</summary>
    public string ContentFreeText { get; set; } = "N/A";

    /// <summary>Sentences per forward pass. Default 32.</summary>
    public int BatchSize { get; set; } = 32;
}

/// <summary>The outcome of a zero-shot evaluation.</summary>
/// <param name="Accuracy">Accuracy of the predictions.</param>
/// <param name="Scores">Per sentence: log p(positive word) − log p(negative word) after the prompt, minus the
/// content-free score when calibrating; positive predicts positive.</param>
/// <param name="ContentFreeScore">The content-free input's score (0 without calibration).</param>
public sealed record ZeroShotResult(SentimentAccuracy Accuracy, IReadOnlyList<double> Scores, double ContentFreeScore);

/// <summary>
/// The sentiment task of the main job on the UCI Sentiment Labelled Sentences: a seeded stratified train/test split, the
/// lexicon baseline on the test split, and two baselines of a base model without adaptation: zero-shot prompting
/// (no training at all: the number the README reports as "base model without adaptation") and a linear probe (a
/// logistic-regression head trained on the frozen model's mean-pooled features; only the head learns).
/// </summary>
public static class SentimentTask
{
    /// <summary>Default share of each (source, label) group held out for testing: 0.2 (100 of 500).</summary>
    public const double DefaultTestFraction = 0.2;

    /// <summary>Default seed of the split.</summary>
    public const int DefaultSeed = 42;

    /// <summary>
    /// Splits sentences into train and test, stratified: within each (source, label) group (600 sentences → 6 groups of
    /// 500 for the UCI data), round(fraction × group size) sentences chosen by a seeded Fisher-Yates shuffle (SplitMix64
    /// generator, so the split does not depend on .NET's <see cref="Random"/>) go to test. With the defaults: 2400 train
    /// (800 per source, 400 per label and source) and 600 test (200 per source, balanced).
    /// </summary>
    /// <param name="sentences">The sentences.</param>
    /// <param name="testFraction">Share of each group held out, in (0, 1).</param>
    /// <param name="seed">Seed.</param>
    /// <returns>The split, each part in the original order.</returns>
    public static SentimentSplit Split(IReadOnlyList<SentimentSentence> sentences, double testFraction = DefaultTestFraction, int seed = DefaultSeed)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        if (!(testFraction > 0 && testFraction < 1)) throw new ArgumentOutOfRangeException(nameof(testFraction), testFraction, "must be in (0, 1)");
        var groups = new List<(string Source, bool Label, List<int> Indices)>();
        for (int i = 0; i < sentences.Count; i++)
        {
            var s = sentences[i];
            int g = groups.FindIndex(x => x.Source == s.Source && x.Label == s.Label);
            if (g < 0)
            {
                groups.Add((s.Source, s.Label, new List<int>()));
                g = groups.Count - 1;
            }
            groups[g].Indices.Add(i);
        }
        ulong state = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + 0x2545F4914F6CDD1DUL);
        var isTest = new bool[sentences.Count];
        foreach (var (_, _, indices) in groups.OrderBy(g => g.Source, StringComparer.Ordinal).ThenBy(g => g.Label))
        {
            var order = indices.ToArray();
            for (int i = order.Length - 1; i > 0; i--)
            {
                int j = (int)(NextRandom(ref state) % (ulong)(i + 1));
                (order[i], order[j]) = (order[j], order[i]);
            }
            int take = (int)Math.Round(testFraction * order.Length, MidpointRounding.AwayFromZero);
            for (int k = 0; k < take; k++) isTest[order[k]] = true;
        }
        var train = new List<SentimentSentence>();
        var test = new List<SentimentSentence>();
        for (int i = 0; i < sentences.Count; i++) (isTest[i] ? test : train).Add(sentences[i]);
        return new SentimentSplit(train, test);
    }

    private static ulong NextRandom(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Loads the UCI data (<see cref="UciSentiment.Load"/>) and splits it (<see cref="Split"/>).</summary>
    /// <param name="testFraction">Share held out.</param>
    /// <param name="seed">Seed.</param>
    /// <returns>The split.</returns>
    public static SentimentSplit Load(double testFraction = DefaultTestFraction, int seed = DefaultSeed) =>
        Split(UciSentiment.Load(), testFraction, seed);

    /// <summary>The lexicon baseline's accuracy on some sentences (the package's rule: a score of 0 is positive).</summary>
    /// <param name="sentences">The sentences.</param>
    /// <param name="scorer">The scorer (default: <see cref="LexiconSentimentScorer.LoadAfinn"/>).</param>
    /// <param name="zeroIsPositive">Whether a score of 0 counts as positive.</param>
    /// <returns>The accuracy.</returns>
    public static SentimentAccuracy EvaluateLexicon(IReadOnlyList<SentimentSentence> sentences, LexiconSentimentScorer? scorer = null, bool zeroIsPositive = true)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        scorer ??= LexiconSentimentScorer.LoadAfinn();
        return SentimentAccuracy.From(sentences, sentences.Select(s => scorer.PredictPositive(s.Text, zeroIsPositive)).ToList());
    }

    /// <summary>
    /// Zero-shot sentiment with a causal language model and no training: each sentence is put into
    /// <see cref="ZeroShotOptions.Template"/>, and the log-likelihoods of the two continuations (summed over their
    /// tokens) are compared; with calibration the same difference for a content-free input is subtracted first.
    /// </summary>
    /// <param name="model">A causal LM (its mode is restored afterwards).</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="sentences">The sentences to classify.</param>
    /// <param name="options">Settings (default: <see cref="ZeroShotOptions"/>' defaults).</param>
    /// <returns>Accuracy and scores.</returns>
    public static ZeroShotResult EvaluateZeroShot(PretrainedModel model, Tokenizer tokenizer, IReadOnlyList<SentimentSentence> sentences, ZeroShotOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(sentences);
        var o = options ?? new ZeroShotOptions();
        if (model.Task != ModelTask.CausalLM) throw new ArgumentException($"zero-shot scoring needs a causal LM, got a {model.Task} model", nameof(model));
        if (!o.Template.Contains("{text}", StringComparison.Ordinal)) throw new ArgumentException("ZeroShotOptions.Template must contain {text}.", nameof(options));
        if (o.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), o.BatchSize, "ZeroShotOptions.BatchSize must be >= 1");
        var texts = sentences.Select(s => s.Text).ToList();
        var raw = ContinuationScores(model, tokenizer, o.Calibrate ? [.. texts, o.ContentFreeText] : texts, o);
        double contentFree = o.Calibrate ? raw[^1] : 0;
        var scores = raw.Take(texts.Count).Select(s => s - contentFree).ToList();
        return new ZeroShotResult(SentimentAccuracy.From(sentences, scores.Select(s => s > 0).ToList()), scores, contentFree);
    }

    /// <summary>log p(positive word | prompt) − log p(negative word | prompt) for each text.</summary>
    private static double[] ContinuationScores(PretrainedModel model, Tokenizer tokenizer, IReadOnlyList<string> texts, ZeroShotOptions o)
    {
        var positive = tokenizer.EncodeToIds(o.PositiveWord, addSpecialTokens: false).Select(i => (long)i).ToArray();
        var negative = tokenizer.EncodeToIds(o.NegativeWord, addSpecialTokens: false).Select(i => (long)i).ToArray();
        if (positive.Length == 0 || negative.Length == 0) throw new ArgumentException("The label words must not be empty.", nameof(o));
        var prompts = texts.Select(t => tokenizer.EncodeToIds(o.Template.Replace("{text}", t, StringComparison.Ordinal), addSpecialTokens: false).Select(i => (long)i).ToArray()).ToList();
        var pos = SequenceLogLikelihoods(model, prompts, positive, o.BatchSize);
        var neg = SequenceLogLikelihoods(model, prompts, negative, o.BatchSize);
        return pos.Zip(neg, (a, b) => a - b).ToArray();
    }

    /// <summary>
    /// Sum over the continuation's tokens of log p(token | everything before it), for each prompt (right-padded batches
    /// with an attention mask; float32, or float64 for a float64 model; <c>no_grad</c>; eval mode).
    /// </summary>
    /// <param name="model">A causal LM.</param>
    /// <param name="prompts">Prompt token ids (at least one token each).</param>
    /// <param name="continuation">Continuation token ids.</param>
    /// <param name="batchSize">Prompts per forward pass.</param>
    /// <returns>One log-likelihood per prompt.</returns>
    public static double[] SequenceLogLikelihoods(PretrainedModel model, IReadOnlyList<long[]> prompts, long[] continuation, int batchSize = 32)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(continuation);
        if (continuation.Length == 0) throw new ArgumentException("empty continuation", nameof(continuation));
        var result = new double[prompts.Count];
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            long pad = model.Config.PadTokenId ?? 0;
            for (int start = 0; start < prompts.Count; start += batchSize)
            {
                using var scope = NewDisposeScope();
                int n = Math.Min(batchSize, prompts.Count - start);
                int width = 0;
                for (int r = 0; r < n; r++)
                {
                    if (prompts[start + r].Length == 0) throw new ArgumentException($"prompt {start + r} is empty", nameof(prompts));
                    width = Math.Max(width, prompts[start + r].Length + continuation.Length);
                }
                var ids = new long[n * width];
                var mask = new long[n * width];
                var targetPositions = new long[n * continuation.Length];
                for (int r = 0; r < n; r++)
                {
                    var p = prompts[start + r];
                    int len = p.Length + continuation.Length;
                    for (int c = 0; c < width; c++)
                    {
                        ids[r * width + c] = c < p.Length ? p[c] : c < len ? continuation[c - p.Length] : pad;
                        mask[r * width + c] = c < len ? 1 : 0;
                    }
                    // Token k of the continuation sits at p.Length + k and is predicted by the logits at p.Length + k - 1.
                    for (int k = 0; k < continuation.Length; k++) targetPositions[r * continuation.Length + k] = p.Length + k - 1;
                }
                var x = tensor(ids, new long[] { n, width });
                var m = tensor(mask, new long[] { n, width });
                var logits = model.forward(new ModelInputs { InputIds = x, AttentionMask = m }).Logits!;
                var logp = nn.functional.log_softmax(logits.dtype == ScalarType.Float64 ? logits : logits.to_type(ScalarType.Float32), -1);
                var positions = tensor(targetPositions, new long[] { n, continuation.Length, 1 }).expand(n, continuation.Length, logp.size(2));
                var tokens = tensor(continuation, new long[] { 1, continuation.Length, 1 }).expand(n, continuation.Length, 1);
                // Rows of logp at the predicting positions [n, |c|, V], then the continuation tokens' entries [n, |c|, 1].
                var all = logp.gather(1, positions).gather(2, tokens).squeeze(-1).sum(1).to_type(ScalarType.Float64).ToArray<double>();
                Array.Copy(all, 0, result, start, n);
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return result;
    }

    /// <summary>
    /// The linear-probe baseline: the frozen model's features (<see cref="MeanPooledFeatures"/>) standardised with the
    /// training set's mean and deviation, and an L2-regularised logistic regression fitted on the training sentences by
    /// Newton's method in float64 (<see cref="FitLogistic"/>); accuracy on the test sentences. Only the linear head
    /// learns, so this bounds what the frozen features hold; it is not "without adaptation" in the zero-shot sense.
    /// </summary>
    /// <param name="model">The base model (any task: its backbone's last hidden state is used).</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="train">Sentences the head is fitted on.</param>
    /// <param name="test">Sentences it is scored on.</param>
    /// <param name="l2">Penalty λ on the weights (not the bias) added to the summed log loss as λ/2 ‖w‖². Default 1.</param>
    /// <returns>Test and training accuracy.</returns>
    public static (SentimentAccuracy Test, SentimentAccuracy Train) EvaluateLinearProbe(PretrainedModel model, Tokenizer tokenizer,
        IReadOnlyList<SentimentSentence> train, IReadOnlyList<SentimentSentence> test, double l2 = 1.0)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        using var scope = NewDisposeScope();
        var xTrain = MeanPooledFeatures(model, tokenizer, train.Select(s => s.Text).ToList());
        var xTest = MeanPooledFeatures(model, tokenizer, test.Select(s => s.Text).ToList());
        var mean = xTrain.mean(new long[] { 0 }, keepdim: true);
        var std = xTrain.std(new long[] { 0 }, keepdim: true).clamp_min(1e-6);
        xTrain = (xTrain - mean) / std;
        xTest = (xTest - mean) / std;
        var (w, b) = FitLogistic(xTrain, train.Select(s => s.Label).ToArray(), l2);
        bool[] Predict(Tensor x) => (x.matmul(tensor(w)) + b).ToArray<double>().Select(z => z > 0).ToArray();
        return (SentimentAccuracy.From(test, Predict(xTest)), SentimentAccuracy.From(train, Predict(xTrain)));
    }

    /// <summary>
    /// The mean over each text's tokens of the backbone's last hidden state (after the final norm), float64 [texts, hidden],
    /// computed under <c>no_grad</c> in eval mode with right-padded batches (padding excluded from the mean).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="texts">The texts (an empty text is encoded as the end-of-text token).</param>
    /// <param name="batchSize">Texts per forward pass.</param>
    /// <returns>The features (in the caller's dispose scope).</returns>
    public static Tensor MeanPooledFeatures(PretrainedModel model, Tokenizer tokenizer, IReadOnlyList<string> texts, int batchSize = 32)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new ArgumentException("no texts", nameof(texts));
        long pad = model.Config.PadTokenId ?? 0;
        long fallback = model.Config.EosTokenIds.Count > 0 ? model.Config.EosTokenIds[0] : pad;
        var parts = new List<Tensor>();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            for (int start = 0; start < texts.Count; start += batchSize)
            {
                int n = Math.Min(batchSize, texts.Count - start);
                var encoded = Enumerable.Range(start, n).Select(i =>
                {
                    var ids = tokenizer.EncodeToIds(texts[i], addSpecialTokens: false).Select(x => (long)x).ToArray();
                    return ids.Length == 0 ? [fallback] : ids;
                }).ToList();
                int width = encoded.Max(e => e.Length);
                var ids = new long[n * width];
                var mask = new long[n * width];
                for (int r = 0; r < n; r++)
                    for (int c = 0; c < width; c++)
                    {
                        ids[r * width + c] = c < encoded[r].Length ? encoded[r][c] : pad;
                        mask[r * width + c] = c < encoded[r].Length ? 1 : 0;
                    }
                using var scope = NewDisposeScope();
                var m = tensor(mask, new long[] { n, width });
                var h = model.forward(new ModelInputs { InputIds = tensor(ids, new long[] { n, width }), AttentionMask = m }).LastHiddenState.to_type(ScalarType.Float64);
                var mf = m.to_type(ScalarType.Float64).unsqueeze(-1);
                parts.Add(((h * mf).sum(1) / mf.sum(1)).MoveToOuterDisposeScope());
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        var all = cat(parts, 0);
        foreach (var p in parts) p.Dispose();
        return all;
    }

    /// <summary>
    /// L2-regularised logistic regression by Newton's method (float64): minimises Σ log(1 + exp(−s·(x·w + b))) + λ/2 ‖w‖²
    /// (s = ±1), starting from zero, until the Newton step is below 1e-10 or 50 iterations.
    /// </summary>
    /// <param name="x">Features [n, d].</param>
    /// <param name="y">Labels.</param>
    /// <param name="l2">λ (the bias is not penalised).</param>
    /// <returns>Weights and bias.</returns>
    public static (double[] Weights, double Bias) FitLogistic(Tensor x, IReadOnlyList<bool> y, double l2)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.dim() != 2 || x.size(0) != y.Count) throw new ArgumentException($"features must be [n, d] with n = {y.Count} labels", nameof(x));
        if (!(l2 >= 0)) throw new ArgumentOutOfRangeException(nameof(l2), l2, "must be >= 0");
        using var scope = NewDisposeScope();
        long n = x.size(0), d = x.size(1);
        var x1 = cat(new[] { x.to_type(ScalarType.Float64), ones(new[] { n, 1L }, ScalarType.Float64) }, 1);
        var t = tensor(y.Select(v => v ? 1.0 : 0.0).ToArray()).unsqueeze(1);
        var diagonal = new double[(d + 1) * (d + 1)];
        for (long i = 0; i < d; i++) diagonal[i * (d + 2)] = l2;
        var reg = tensor(diagonal, new[] { d + 1, d + 1 });
        var w = zeros(new[] { d + 1, 1L }, ScalarType.Float64);
        for (int it = 0; it < 50; it++)
        {
            using var step = NewDisposeScope();
            var p = x1.matmul(w).sigmoid();
            var g = x1.t().matmul(p - t) + reg.matmul(w);
            var hess = x1.t().matmul(x1 * (p * (1 - p))) + reg;
            var delta = linalg.solve(hess, g);
            w = (w - delta).MoveToOuterDisposeScope();
            if (delta.abs().max().item<double>() < 1e-10) break;
        }
        var values = w.squeeze(1).ToArray<double>();
        return (values[..(int)d], values[(int)d]);
    }
}
