using Microsoft.ML.LowRank.Tokenizers;

namespace Microsoft.ML.LowRank.Tests.Tokenizers;

/// <summary>
/// Chat templates against the output of each family's published Jinja template, worked out by hand for the chat
/// below (the assistant's second reply has surrounding spaces to show which templates trim).
/// </summary>
public class ChatTemplateTests
{
    private static readonly ChatMessage[] WithSystem =
    [
        ChatMessage.System("You are a helpful assistant"),
        ChatMessage.User("Hello"),
        ChatMessage.Assistant("Hi there"),
        ChatMessage.User("Who are you"),
        ChatMessage.Assistant("   I am an assistant   "),
        ChatMessage.User("Another question"),
    ];

    private static readonly ChatMessage[] WithoutSystem = WithSystem[1..];

    [Fact]
    public void Llama2()
    {
        var t = ChatTemplate.ForModelType("llama");
        Assert.Equal(
            "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
            + "<s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]",
            t.Apply(WithSystem, addGenerationPrompt: true));
        Assert.Equal("<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]",
            t.Apply(WithoutSystem));
        Assert.Equal("<s>[INST] Hi [/INST]", t.Apply([ChatMessage.User("  Hi\n")]));
        Assert.Throws<ArgumentException>(() => t.Apply([ChatMessage.Assistant("Hi")]));
    }

    [Fact]
    public void Llama3()
    {
        var t = ChatTemplate.ForModelType("llama3");
        const string expected =
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>";
        Assert.Equal(expected + "<|start_header_id|>assistant<|end_header_id|>\n\n", t.Apply(WithSystem, addGenerationPrompt: true));
        Assert.Equal(expected, t.Apply(WithSystem));
        Assert.Equal("<|start_header_id|>assistant<|end_header_id|>\n\n", t.Apply([], addGenerationPrompt: true));
    }

    [Fact]
    public void Mistral()
    {
        var t = ChatTemplate.ForModelType("mistral");
        Assert.Equal("<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]",
            t.Apply(WithoutSystem, addGenerationPrompt: true));
        var e = Assert.Throws<ArgumentException>(() => t.Apply(WithSystem));
        Assert.Contains("Conversation roles must alternate", e.Message);
        Assert.Equal("<s>", t.Apply([]));
    }

    [Fact]
    public void Qwen2ChatML()
    {
        var t = ChatTemplate.ForModelType("qwen2");
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
            + "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
            + "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n",
            t.Apply(WithSystem, addGenerationPrompt: true));
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n",
            t.Apply([ChatMessage.User("Hello")]));
        Assert.Equal("<|im_start|>user\nHello<|im_end|>\n", ChatTemplate.ForModelType("chatml").Apply([ChatMessage.User("Hello")]));
    }

    [Fact]
    public void Gemma()
    {
        var t = ChatTemplate.ForModelType("gemma");
        Assert.Equal(
            "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
            + "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n"
            + "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n",
            t.Apply(WithoutSystem, addGenerationPrompt: true));
        var e = Assert.Throws<ArgumentException>(() => t.Apply(WithSystem));
        Assert.Equal("System role not supported", e.Message);
    }

    [Fact]
    public void Gpt2Plain()
    {
        var t = ChatTemplate.ForModelType("gpt2");
        Assert.Equal("Hello<|endoftext|>Hi there<|endoftext|>", t.Apply([ChatMessage.User("Hello"), ChatMessage.Assistant("Hi there")], addGenerationPrompt: true));
    }

    [Fact]
    public void SelectsByModelType()
    {
        foreach (string type in ChatTemplate.KnownModelTypes)
        {
            Assert.NotNull(ChatTemplate.ForModelType(type));
        }
        Assert.IsType<Llama2ChatTemplate>(ChatTemplate.ForModelType("LLAMA"));
        Assert.IsType<MistralChatTemplate>(ChatTemplate.ForModelType("mixtral"));
        Assert.IsType<GemmaChatTemplate>(ChatTemplate.ForModelType("gemma2"));
        Assert.Throws<ArgumentException>(() => ChatTemplate.ForModelType("bert"));
    }

    [Fact]
    public void PromptTokenizesWithSpecialTokens()
    {
        // The ChatML markers are added tokens of the tokenizer, so they come out as single ids.
        var cl100k = OpenAiTokenizers.Get("cl100k_base");
        var tok = new Tokenizer(cl100k.Model, cl100k.Normalizer, cl100k.PreTokenizer, cl100k.PostProcessor, cl100k.Decoder,
            cl100k.AddedTokens.Append(new AddedToken("<|im_start|>", 100264)).Append(new AddedToken("<|im_end|>", 100265)));
        string prompt = new ChatMLChatTemplate().Apply([ChatMessage.User("hello")], addGenerationPrompt: true);
        var ids = tok.EncodeToIds(prompt);
        Assert.Equal(100264, ids[0]);
        Assert.Equal(2, ids.Count(i => i == 100264));
        Assert.Equal(1, ids.Count(i => i == 100265));
        Assert.Equal(prompt, tok.Decode(ids, skipSpecialTokens: false));
        Assert.Equal("user\nhello\nassistant\n", tok.Decode(ids));
    }
}
