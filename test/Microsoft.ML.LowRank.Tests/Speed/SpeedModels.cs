using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Speed;

/// <summary>Small random LLaMA-style models built from a config (no checkpoint), for speed-feature tests.</summary>
internal static class SpeedModels
{
    public static ModelConfig LlamaConfig(int hidden = 64, int layers = 3, int heads = 4, int inter = 128, int vocab = 211, bool tie = false) => ModelConfig.Parse($$"""
        {"model_type":"llama","vocab_size":{{vocab}},"hidden_size":{{hidden}},"intermediate_size":{{inter}},"num_hidden_layers":{{layers}},
         "num_attention_heads":{{heads}},"num_key_value_heads":{{heads}},"rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":{{(tie ? "true" : "false")}},
         "max_position_embeddings":512}
        """);

    /// <summary>A random LLaMA with LoRA on every block linear; B drawn non-zero so adapters matter.</summary>
    public static (PretrainedModel model, LowRankModel peft) LoraLlama(ModelConfig config, int seed = 0, double dropout = 0, ScalarType? dtype = null, int r = 4)
    {
        manual_seed(seed);
        var model = new PretrainedModel(config, ModelTask.CausalLM, dtype: dtype);
        var peft = LowRankModel.Create(model, new LoraOptions { R = r, LoraAlpha = 2 * r, LoraDropout = dropout, TargetModules = ModuleSelector.AllLinear });
        using (no_grad())
            foreach (var (n, p) in peft.named_parameters())
                if (n.Contains("lora_B")) p.normal_(0, 0.05);
        return (model, peft);
    }

    /// <summary>Loss and a copy of every trainable gradient after one forward/backward.</summary>
    public static (double loss, Dictionary<string, Tensor> grads) LossAndGrads(LowRankModel peft, Tensor ids, Tensor? labels = null, long seed = 123)
    {
        peft.zero_grad();
        manual_seed(seed);
        var loss = peft.forward(new ModelInputs { InputIds = ids, Labels = labels ?? ids }).Loss!;
        loss.backward();
        var grads = new Dictionary<string, Tensor>();
        foreach (var (name, p) in peft.named_parameters())
            if (p.requires_grad && p.grad is { } g) grads[name] = g.clone();
        return (loss.ToDouble(), grads);
    }
}
