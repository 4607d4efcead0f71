// Our side of the LoRA training-step benchmark (bench/lora/run.sh): the same LLaMA-style model and adapter as
// bench/lora/lora_step.py — LoRA r on every block linear (all-linear), AdamW on adapter parameters, causal-LM loss.
// Usage: LoraBench STEPS [hidden layers heads seq batch rank]. Prints one JSON object (median tokens/s).
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using static Microsoft.ML.LowRank.Torch.torch;

var inv = CultureInfo.InvariantCulture;
int steps = args.Length > 0 ? int.Parse(args[0], inv) : 5;
var dims = args.Length >= 7 ? args[1..7].Select(a => int.Parse(a, inv)).ToArray() : new[] { 768, 12, 12, 256, 8, 16 };
int H = dims[0], L = dims[1], NH = dims[2], T = dims[3], B = dims[4], R = dims[5];
int V = 32000, I = (H * 8 / 3 + 255) / 256 * 256;
manual_seed(0);
var config = ModelConfig.Parse($$"""
{"model_type":"llama","vocab_size":{{V}},"hidden_size":{{H}},"intermediate_size":{{I}},"num_hidden_layers":{{L}},
 "num_attention_heads":{{NH}},"num_key_value_heads":{{NH}},"rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":false,
 "max_position_embeddings":{{Math.Max(T, 2048)}}}
""");
using var model = new PretrainedModel(config, ModelTask.CausalLM);
using var peft = LowRankModel.Create(model, new LoraOptions { R = R, LoraAlpha = 2 * R, TargetModules = ModuleSelector.AllLinear });
var trainable = peft.parameters().Where(p => p.requires_grad).ToList();
using var opt = optim.AdamW(trainable, lr: 1e-4, weight_decay: 0.0);
using var ids = randint(0, V, new long[] { B, T });
peft.train();

double Step()
{
    using var scope = NewDisposeScope();
    var loss = peft.forward(new ModelInputs { InputIds = ids, Labels = ids }).Loss!;
    loss.backward();
    opt.step();
    opt.zero_grad();
    return loss.ToDouble();
}

Step();
var times = new List<double>();
for (int s = 0; s < steps; s++)
{
    var sw = Stopwatch.StartNew();
    Step();
    times.Add(sw.Elapsed.TotalSeconds);
}
times.Sort();
var med = times[times.Count / 2];
Console.WriteLine(string.Create(inv, $"{{\"impl\":\"csharp\",\"torch\":\"{__version__}\",\"threads\":{get_num_threads()},\"tokens_per_s\":{B * T / med:F1},\"step_s\":{med:F4},\"trainable\":{trainable.Sum(p => p.numel())}}}"));
