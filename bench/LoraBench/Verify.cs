// --verify: the same adapter training step (loss and adapter gradients) on a device in float32 and bfloat16 against a
// float64 CPU reference with the same weights (the loss is taken in float64 from the logits of each run). Small model (the config's shape scaled down to 2 layers) so the float64
// reference stays cheap. Prints one JSON object with the worst relative errors and pass/fail per type.
using System.Globalization;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

internal static class Verify
{
    public static void Run(string? configFile, string deviceName, string method)
    {
        var inv = CultureInfo.InvariantCulture;
        var device = Device.Parse(deviceName);
        var config = configFile is not null ? ModelConfig.FromFile(configFile) : ModelConfig.Parse("""
            {"model_type":"llama","vocab_size":1000,"hidden_size":256,"intermediate_size":688,"num_hidden_layers":2,
             "num_attention_heads":8,"num_key_value_heads":2,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"max_position_embeddings":512}
            """);
        config.NumHiddenLayers = Math.Min(config.NumHiddenLayers, 2);
        manual_seed(1);
        var ids = randint(0, config.VocabSize, new long[] { 2, 64 });
        (double loss, Dictionary<string, Tensor> grads) Step(Device d, ScalarType dt, Dictionary<string, Tensor>? weights)
        {
            manual_seed(2);
            var model = new PretrainedModel(config, ModelTask.CausalLM, device: d, dtype: dt);
            var options = AdapterMethods.WithSettings(AdapterMethods.Create(method), new Dictionary<string, string>
            {
                ["r"] = "8", ["lora_alpha"] = "16", ["target_modules"] = "\"all-linear\"",
            });
            var peft = LowRankModel.Create(model, options);
            using (no_grad())
            {
                if (weights is null)
                {
                    foreach (var (n, p) in peft.named_parameters())
                        if (n.Contains("lora_B")) p.normal_(0, 0.05);
                }
                else
                {
                    // Parameters and buffers (QLoRA's NF4 block scales among them), so every run sees the same base.
                    foreach (var (n, p) in peft.named_parameters()) p.copy_(weights[n].to(p.device).to_type(p.dtype));
                    foreach (var (n, b) in peft.named_buffers()) b.copy_(weights["buffer:" + n].to(b.device).to_type(b.dtype));
                }
            }
            peft.train();
            // The loss in float64 from the logits (the model's own loss is a float32 cross-entropy, as HF's).
            var onDevice = ids.to(d);
            var logits = peft.forward(new ModelInputs { InputIds = onDevice }).Logits!;
            long t = logits.size(1);
            var loss = nn.functional.cross_entropy(logits.narrow(1, 0, t - 1).reshape(-1, logits.size(2)).to_type(ScalarType.Float64),
                onDevice.narrow(1, 1, t - 1).reshape(-1));
            loss.backward();
            var grads = new Dictionary<string, Tensor>();
            foreach (var (n, p) in peft.named_parameters())
                if (p.requires_grad && p.grad is { } g) grads[n] = g.to(Device.CPU).to_type(ScalarType.Float64).DetachFromDisposeScope();
            if (weights is null)
            {
                weights = new Dictionary<string, Tensor>();
                foreach (var (n, p) in peft.named_parameters()) weights[n] = p.detach().clone().DetachFromDisposeScope();
                foreach (var (n, b) in peft.named_buffers()) weights["buffer:" + n] = b.detach().clone().DetachFromDisposeScope();
                Reference = weights;
            }
            return (loss.ToDouble(), grads);
        }
        var reference = Step(Device.CPU, ScalarType.Float64, null);
        var results = new List<string>();
        foreach (var (dt, tol, gradTol) in new[] { (ScalarType.Float32, 1e-5, 1e-4), (ScalarType.BFloat16, 2e-2, 5e-2) })
        {
            var run = Step(device, dt, Reference);
            double lossErr = Math.Abs(run.loss - reference.loss) / Math.Abs(reference.loss);
            double worst = 0;
            foreach (var (n, g) in reference.grads)
            {
                var diff = (run.grads[n] - g).norm().ToDouble() / Math.Max(1e-30, g.norm().ToDouble());
                worst = Math.Max(worst, diff);
            }
            bool ok = lossErr <= tol && worst <= gradTol;
            results.Add(string.Create(inv, $"\"{dt}\":{{\"loss_rel_err\":{lossErr:G4},\"worst_grad_rel_err\":{worst:G4},\"loss_tolerance\":{tol},\"grad_tolerance\":{gradTol},\"pass\":{(ok ? "true" : "false")}}}"));
        }
        Console.WriteLine(string.Create(inv, $"{{\"verify\":\"{device}\",\"method\":\"{method}\",\"reference_loss\":{reference.loss:G10},{string.Join(",", results)}}}"));
    }

    private static Dictionary<string, Tensor>? Reference;
}
