using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Models;

public class ModelConfigTests
{
    // Published config.json of meta-llama/Llama-2-7b-hf.
    internal const string Llama2_7B = """
    {"architectures":["LlamaForCausalLM"],"bos_token_id":1,"eos_token_id":2,"hidden_act":"silu","hidden_size":4096,
     "initializer_range":0.02,"intermediate_size":11008,"max_position_embeddings":4096,"model_type":"llama",
     "num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":32,"pretraining_tp":1,"rms_norm_eps":1e-05,
     "rope_scaling":null,"tie_word_embeddings":false,"torch_dtype":"float16","transformers_version":"4.31.0.dev0",
     "use_cache":true,"vocab_size":32000}
    """;

    // Published config.json of google/gemma-2b.
    internal const string Gemma_2B = """
    {"architectures":["GemmaForCausalLM"],"attention_bias":false,"attention_dropout":0.0,"bos_token_id":2,"eos_token_id":1,
     "head_dim":256,"hidden_act":"gelu","hidden_size":2048,"initializer_range":0.02,"intermediate_size":16384,
     "max_position_embeddings":8192,"model_type":"gemma","num_attention_heads":8,"num_hidden_layers":18,
     "num_key_value_heads":1,"pad_token_id":0,"rms_norm_eps":1e-06,"rope_scaling":null,"rope_theta":10000.0,
     "torch_dtype":"bfloat16","transformers_version":"4.38.0.dev0","use_cache":true,"vocab_size":256000}
    """;

    [Fact]
    public void Llama2_7B_OnMetaDeviceHasThePublishedParameterCount()
    {
        var c = ModelConfig.Parse(Llama2_7B);
        using var m = new PretrainedModel(c, ModelTask.CausalLM, Device.META);
        Assert.Equal(6_738_415_616L, m.num_parameters());
        Assert.Equal(DeviceType.META, m.parameters().First().device.type);
    }

    [Fact]
    public void Gemma_2B_OnMetaDeviceHasThePublishedParameterCount()
    {
        var c = ModelConfig.Parse(Gemma_2B);
        Assert.Equal(256, c.HeadDim);
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal("gelu_pytorch_tanh", c.HiddenAct);
        using var m = new PretrainedModel(c, ModelTask.CausalLM, Device.META);
        Assert.Equal(2_506_172_416L, m.num_parameters());
    }

    [Fact]
    public void ParameterCountsMatchTheArchitectureFormula()
    {
        // A small GQA LLaMA: embed V*H, per layer q H*H + k,v 2*H*(kv*D) + o H*H + 3*H*I + 2H, norm H, untied head V*H.
        long V = 100, H = 64, I = 96, L = 3, heads = 4, kv = 2, D = H / heads;
        var c = ModelConfig.Parse($$"""{"model_type":"llama","vocab_size":{{V}},"hidden_size":{{H}},"intermediate_size":{{I}},"num_hidden_layers":{{L}},"num_attention_heads":{{heads}},"num_key_value_heads":{{kv}},"tie_word_embeddings":false}""");
        using var m = new PretrainedModel(c, ModelTask.CausalLM, Device.META);
        long perLayer = H * H + 2 * H * kv * D + H * H + 3 * H * I + 2 * H;
        Assert.Equal(V * H + L * perLayer + H + V * H, m.num_parameters());
        // GPT-2 small's published count (124,439,808) from its config.
        var g = ModelConfig.Parse("""{"model_type":"gpt2","vocab_size":50257,"n_embd":768,"n_layer":12,"n_head":12,"n_positions":1024}""");
        using var gm = new PretrainedModel(g, ModelTask.CausalLM, Device.META);
        Assert.Equal(124_439_808L, gm.num_parameters());
        // BERT-base uncased: 109,482,240 parameters (with pooler).
        var b = ModelConfig.Parse("""{"model_type":"bert","vocab_size":30522,"hidden_size":768,"num_hidden_layers":12,"num_attention_heads":12,"intermediate_size":3072,"max_position_embeddings":512,"type_vocab_size":2}""");
        using var bm = new PretrainedModel(b, ModelTask.SequenceClassification, Device.META);
        Assert.Equal(109_482_240L + 768 * 2 + 2, bm.num_parameters());
    }

    [Theory]
    [InlineData("{", "invalid JSON")]
    [InlineData("[]", "not a JSON object")]
    [InlineData("""{"vocab_size":3}""", "missing 'model_type'")]
    [InlineData("""{"model_type":"t5"}""", "unsupported model_type 't5'")]
    [InlineData("""{"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2}""", "missing required field 'intermediate_size'")]
    [InlineData("""{"model_type":"llama","vocab_size":10,"hidden_size":"8","num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":4}""", "'hidden_size' must be an integer")]
    [InlineData("""{"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,"intermediate_size":4}""", "must be a multiple of num_key_value_heads")]
    [InlineData("""{"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":4,"rope_scaling":{"rope_type":"yarn","factor":2}}""", "unsupported rope_scaling type 'yarn'")]
    public void MalformedConfigsFailWithTheFileAndField(string json, string expected)
    {
        var ex = Assert.Throws<InvalidDataException>(() => ModelConfig.Parse(json, "/models/x/config.json"));
        Assert.Contains("/models/x/config.json", ex.Message);
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void MissingConfigFileIsReported()
    {
        var dir = Directory.CreateTempSubdirectory().FullName;
        var ex = Assert.Throws<FileNotFoundException>(() => ModelConfig.FromFile(dir));
        Assert.Contains("config.json", ex.Message);
    }
}
