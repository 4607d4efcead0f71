// Instruction tuning of a causal language model (GPT-2 or LLaMA family) with a low-rank adapter: only the responses are
// learned; the transformer generates a completion for each prompt and scores the reference response (loss, perplexity).
//
//   dotnet run --project samples/InstructionTuning -- <model-folder> [epochs]
using System.Globalization;
using Microsoft.ML.LowRank;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Pipeline;

string modelFolder = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("LOWRANK_MODEL")
    ?? throw new ArgumentException("usage: InstructionTuning <model-folder> [epochs] (or set LOWRANK_MODEL)");
int epochs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20;

var ctx = new LowRankContext(seed: 4);
ctx.Log += (_, e) => { if (e.Progress is { } p && (p.Step % 20 == 0 || p.Step == p.TotalSteps)) Console.WriteLine(e.RawMessage); };

Instruction[] examples =
[
    new("Opposite of hot:", "cold"),
    new("Opposite of big:", "small"),
    new("Opposite of up:", "down"),
    new("Opposite of day:", "night"),
    new("Opposite of fast:", "slow"),
    new("Opposite of open:", "closed"),
    new("Opposite of left:", "right"),
    new("Opposite of yes:", "no"),
];
var data = ctx.Data.LoadFromEnumerable(examples);

var trainer = ctx.TextGeneration.Trainers.CausalLM(new CausalLMTrainer.Options
{
    ModelFolder = modelFolder,
    Method = new LoraOptions { R = 8, LoraAlpha = 16, TargetModules = ModuleSelector.AllLinear },
    MaxEpochs = epochs,
    BatchSize = 4,
    LearningRate = 5e-3,
    Generation = new GenerationOptions { MaxNewTokens = 4 },
});

string zipPath = Path.Combine(Path.GetTempPath(), "instructions-lora.zip");
using (var model = trainer.Fit(data))
{
    var scored = model.Transform(data);
    var metrics = ctx.TextGeneration.Evaluate(scored, completionColumnName: "Completion");
    Console.WriteLine($"response log-loss {metrics.LogLoss:F3}, perplexity {metrics.Perplexity:F2}, exact match {metrics.ExactMatch:F2}");
    foreach (var (prompt, completion) in scored.GetColumn<string>("Prompt").Zip(scored.GetColumn<string>("Completion")))
        Console.WriteLine($"  {prompt} {completion}");
    ctx.Model.Save(model, data.Schema, zipPath);
}

// A single transformer was saved, so a single transformer comes back.
using var generator = (CausalLMTransformer)ctx.Model.Load(zipPath, out _);
Console.WriteLine($"Opposite of hot: {generator.Generate("Opposite of hot:")}");

/// <summary>A prompt and the wanted response.</summary>
public sealed record Instruction(string Prompt, string Response);
