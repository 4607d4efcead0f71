using System.Text;

namespace Microsoft.ML.LowRank.Tokenizers;

/// <summary>One message of a chat.</summary>
/// <param name="Role">"system", "user" or "assistant".</param>
/// <param name="Content">The text of the message.</param>
public readonly record struct ChatMessage(string Role, string Content)
{
    /// <summary>A system message.</summary>
    public static ChatMessage System(string content) => new("system", content);

    /// <summary>A user message.</summary>
    public static ChatMessage User(string content) => new("user", content);

    /// <summary>An assistant message.</summary>
    public static ChatMessage Assistant(string content) => new("assistant", content);
}

/// <summary>
/// Formats a chat as the prompt string a model family was trained on. Each implementation reproduces the output of
/// the Jinja <c>chat_template</c> published with that family's instruct models (no Jinja engine involved), including
/// its errors for unsupported role orders.
/// </summary>
public abstract class ChatTemplate
{
    /// <summary>The model types <see cref="ForModelType"/> knows.</summary>
    public static IReadOnlyList<string> KnownModelTypes { get; } = ["llama", "llama2", "llama3", "mistral", "mixtral", "qwen2", "chatml", "gemma", "gemma2", "gpt2"];

    /// <summary>A short name of the template.</summary>
    public abstract string Name { get; }

    /// <summary>Formats the messages.</summary>
    /// <param name="messages">The chat so far.</param>
    /// <param name="addGenerationPrompt">Append the header that starts the assistant's reply (where the template has one).</param>
    /// <exception cref="ArgumentException">The roles are in an order the template rejects.</exception>
    public abstract string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false);

    /// <summary>
    /// The template of a model type (config.json's <c>model_type</c>, or a family name): "llama"/"llama2" (LLaMA-2 chat
    /// [INST] form), "llama3" (header form), "mistral"/"mixtral", "qwen2"/"chatml", "gemma"/"gemma2", "gpt2" (plain).
    /// </summary>
    public static ChatTemplate ForModelType(string modelType)
    {
        ArgumentNullException.ThrowIfNull(modelType);
        return modelType.ToLowerInvariant() switch
        {
            "llama" or "llama2" or "llama-2" => new Llama2ChatTemplate(),
            "llama3" or "llama-3" => new Llama3ChatTemplate(),
            "mistral" or "mixtral" => new MistralChatTemplate(),
            "qwen2" or "qwen" or "qwen2.5" => new ChatMLChatTemplate(ChatMLChatTemplate.QwenDefaultSystemMessage),
            "chatml" => new ChatMLChatTemplate(),
            "gemma" or "gemma2" => new GemmaChatTemplate(),
            "gpt2" => new PlainChatTemplate(),
            _ => throw new ArgumentException($"No chat template for model type '{modelType}'; known: {string.Join(", ", KnownModelTypes)}.", nameof(modelType)),
        };
    }

    /// <summary>Python's <c>str.strip()</c> (Jinja's <c>trim</c> filter).</summary>
    private protected static string Strip(string s) => UnicodeData.PythonStrip(s);

    /// <summary>The templates' "roles must alternate user/assistant" check.</summary>
    private protected static void CheckAlternation(ChatMessage message, int index, string error)
    {
        if ((message.Role == "user") != (index % 2 == 0))
        {
            throw new ArgumentException(error);
        }
    }

    private protected static void CheckMessages(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        foreach (var m in messages)
        {
            if (m.Role is null || m.Content is null)
            {
                throw new ArgumentException("Chat messages need a role and a content.", nameof(messages));
            }
        }
    }

    private protected const string AlternateError = "Conversation roles must alternate user/assistant/user/assistant/...";
}

/// <summary>
/// LLaMA-2 chat (meta-llama/Llama-2-*-chat-hf): <c>&lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;\n{system}\n&lt;&lt;/SYS&gt;&gt;\n\n{user} [/INST] {assistant} &lt;/s&gt;</c>.
/// The template has no generation prompt.
/// </summary>
public sealed class Llama2ChatTemplate(string bosToken = "<s>", string eosToken = "</s>") : ChatTemplate
{
    /// <inheritdoc/>
    public override string Name => "llama2";

    /// <inheritdoc/>
    public override string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        CheckMessages(messages);
        int first = 0;
        string? system = null;
        if (messages.Count > 0 && messages[0].Role == "system")
        {
            system = messages[0].Content;
            first = 1;
        }
        var sb = new StringBuilder();
        for (int i = 0; first + i < messages.Count; i++)
        {
            var m = messages[first + i];
            CheckAlternation(m, i, AlternateError);
            string content = i == 0 && system is not null ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + m.Content : m.Content;
            if (m.Role == "user")
            {
                sb.Append(bosToken).Append("[INST] ").Append(Strip(content)).Append(" [/INST]");
            }
            else if (m.Role == "assistant")
            {
                sb.Append(' ').Append(Strip(content)).Append(' ').Append(eosToken);
            }
        }
        return sb.ToString();
    }
}

/// <summary>
/// LLaMA-3 instruct (meta-llama/Meta-Llama-3-8B-Instruct): <c>&lt;|begin_of_text|&gt;&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{content}&lt;|eot_id|&gt;</c>...
/// </summary>
public sealed class Llama3ChatTemplate(string bosToken = "<|begin_of_text|>") : ChatTemplate
{
    /// <inheritdoc/>
    public override string Name => "llama3";

    /// <inheritdoc/>
    public override string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        CheckMessages(messages);
        var sb = new StringBuilder();
        for (int i = 0; i < messages.Count; i++)
        {
            if (i == 0)
            {
                sb.Append(bosToken);
            }
            sb.Append("<|start_header_id|>").Append(messages[i].Role).Append("<|end_header_id|>\n\n").Append(Strip(messages[i].Content)).Append("<|eot_id|>");
        }
        if (addGenerationPrompt)
        {
            sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
        }
        return sb.ToString();
    }
}

/// <summary>
/// Mistral instruct (mistralai/Mistral-7B-Instruct-v0.2, Mixtral-8x7B-Instruct-v0.1):
/// <c>&lt;s&gt;[INST] {user} [/INST]{assistant}&lt;/s&gt;</c>. Only user and assistant roles; no generation prompt.
/// </summary>
public sealed class MistralChatTemplate(string bosToken = "<s>", string eosToken = "</s>") : ChatTemplate
{
    /// <inheritdoc/>
    public override string Name => "mistral";

    /// <inheritdoc/>
    public override string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        CheckMessages(messages);
        var sb = new StringBuilder(bosToken);
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            CheckAlternation(m, i, AlternateError);
            if (m.Role == "user")
            {
                sb.Append("[INST] ").Append(m.Content).Append(" [/INST]");
            }
            else if (m.Role == "assistant")
            {
                sb.Append(m.Content).Append(eosToken);
            }
            else
            {
                throw new ArgumentException("Only user and assistant roles are supported!");
            }
        }
        return sb.ToString();
    }
}

/// <summary>
/// ChatML (<c>&lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n</c>), as used by Qwen2 (Qwen/Qwen2-*-Instruct, which
/// inserts a default system message when the chat has none) and OpenHermes-style models.
/// </summary>
public sealed class ChatMLChatTemplate(string? defaultSystemMessage = null) : ChatTemplate
{
    /// <summary>The system message Qwen2's template inserts when the chat does not start with one.</summary>
    public const string QwenDefaultSystemMessage = "You are a helpful assistant.";

    /// <summary>The system message inserted when the chat does not start with one, or <see langword="null"/>.</summary>
    public string? DefaultSystemMessage { get; } = defaultSystemMessage;

    /// <inheritdoc/>
    public override string Name => DefaultSystemMessage is null ? "chatml" : "qwen2";

    /// <inheritdoc/>
    public override string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        CheckMessages(messages);
        var sb = new StringBuilder();
        for (int i = 0; i < messages.Count; i++)
        {
            if (i == 0 && DefaultSystemMessage is not null && messages[0].Role != "system")
            {
                sb.Append("<|im_start|>system\n").Append(DefaultSystemMessage).Append("<|im_end|>\n");
            }
            sb.Append("<|im_start|>").Append(messages[i].Role).Append('\n').Append(messages[i].Content).Append("<|im_end|>\n");
        }
        if (addGenerationPrompt)
        {
            sb.Append("<|im_start|>assistant\n");
        }
        return sb.ToString();
    }
}

/// <summary>
/// Gemma instruct (google/gemma-7b-it, gemma-2-*-it): <c>&lt;bos&gt;&lt;start_of_turn&gt;user\n{content}&lt;end_of_turn&gt;\n&lt;start_of_turn&gt;model\n</c>...
/// The system role is rejected.
/// </summary>
public sealed class GemmaChatTemplate(string bosToken = "<bos>") : ChatTemplate
{
    /// <inheritdoc/>
    public override string Name => "gemma";

    /// <inheritdoc/>
    public override string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        CheckMessages(messages);
        var sb = new StringBuilder(bosToken);
        if (messages.Count > 0 && messages[0].Role == "system")
        {
            throw new ArgumentException("System role not supported");
        }
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            CheckAlternation(m, i, AlternateError);
            string role = m.Role == "assistant" ? "model" : m.Role;
            sb.Append("<start_of_turn>").Append(role).Append('\n').Append(Strip(m.Content)).Append("<end_of_turn>\n");
        }
        if (addGenerationPrompt)
        {
            sb.Append("<start_of_turn>model\n");
        }
        return sb.ToString();
    }
}

/// <summary>
/// GPT-2's plain template: the contents, each followed by the end-of-text token; roles are ignored and there is no
/// generation prompt.
/// </summary>
public sealed class PlainChatTemplate(string eosToken = "<|endoftext|>") : ChatTemplate
{
    /// <inheritdoc/>
    public override string Name => "plain";

    /// <inheritdoc/>
    public override string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        CheckMessages(messages);
        var sb = new StringBuilder();
        foreach (var m in messages)
        {
            sb.Append(m.Content).Append(eosToken);
        }
        return sb.ToString();
    }
}
