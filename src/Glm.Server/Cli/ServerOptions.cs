using Glm.Kernels.Attention;

namespace Glm.Server.Cli;

/// <summary>Command-line options, named as vLLM names them. Environment variables GLM_* fill what flags leave unset.</summary>
public sealed class ServerOptions
{
    public string? Model { get; set; }
    public string? Tokenizer { get; set; }
    public string Revision { get; set; } = "main";
    public string? ServedModelName { get; set; }
    public string Host { get; set; } = "127.0.0.1";
    public int Port { get; set; } = 8000;
    public string? ApiKey { get; set; }
    public int? MaxModelLen { get; set; }
    public int MaxNumSeqs { get; set; } = 64;
    public int MaxNumBatchedTokens { get; set; } = 2048;
    public int BlockSize { get; set; } = 16;
    public long? KvCacheMemory { get; set; }
    public string KvCacheDType { get; set; } = "auto";
    /// <summary>--indexer-kv-cache-dtype: glm_moe_dsa's indexer keys; auto: as --kv-cache-dtype.</summary>
    public string IndexerKvCacheDType { get; set; } = "auto";
    public string Quantization { get; set; } = "none";
    /// <summary>How Int4 weights meet activations: int8 (integer dot products, the default) or float.</summary>
    public string Int4Activations { get; set; } = "int8";
    public bool EnablePrefixCaching { get; set; } = true;
    public string? ToolCallParser { get; set; } = "glm45";
    public string? ReasoningParser { get; set; } = "glm45";
    /// <summary>
    /// --speculative-config (vLLM's JSON): {"method": "ngram", "num_speculative_tokens": K, "prompt_lookup_max": N,
    /// "prompt_lookup_min": M}, or {"method": "mtp", "num_speculative_tokens": 1} (the checkpoint's MTP layer).
    /// </summary>
    public string? SpeculativeConfig { get; set; }

    /// <summary>What --speculative-config asks for: a prompt-lookup proposer, or MTP drafting; null when off.</summary>
    public SpeculativeSettings? Speculation()
    {
        if (SpeculativeConfig is null) return null;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(SpeculativeConfig);
            var root = doc.RootElement;
            if (root.ValueKind != System.Text.Json.JsonValueKind.Object) throw new CliException("--speculative-config must be a JSON object");
            string method = root.TryGetProperty("method", out var m) && m.ValueKind == System.Text.Json.JsonValueKind.String ? m.GetString()! : "";
            int Int(string name, int fallback, int min, int max)
            {
                if (!root.TryGetProperty(name, out var v)) return fallback;
                if (v.ValueKind != System.Text.Json.JsonValueKind.Number || !v.TryGetInt32(out int x) || x < min || x > max)
                    throw new CliException($"--speculative-config: {name} must be an integer in [{min}, {max}]");
                return x;
            }
            void Only(params string[] names)
            {
                foreach (var p in root.EnumerateObject())
                    if (!names.Contains(p.Name))
                        throw new CliException($"--speculative-config: '{p.Name}' is not supported with method '{method}' ({string.Join(", ", names)})");
            }
            // vLLM's older names for the MTP method, which its GLM and DeepSeek recipes still use.
            if (method is "mtp" or "glm4_moe_mtp" or "deepseek_mtp")
            {
                Only("method", "num_speculative_tokens");
                Int("num_speculative_tokens", 1, 1, 1); // one MTP layer, one draft a step
                return new SpeculativeSettings(null, Mtp: true);
            }
            if (method != "ngram")
                throw new CliException($"--speculative-config: method '{method}' is not supported; 'ngram' (prompt lookup) and 'mtp' (the checkpoint's MTP layer) are");
            Only("method", "num_speculative_tokens", "prompt_lookup_max", "prompt_lookup_min");
            int k = Int("num_speculative_tokens", 4, 1, 16), max = Int("prompt_lookup_max", 4, 1, 16), min = Int("prompt_lookup_min", 1, 1, 16);
            if (min > max) throw new CliException("--speculative-config: prompt_lookup_min exceeds prompt_lookup_max");
            return new SpeculativeSettings(new Glm.Engine.NgramProposer(k, min, max), Mtp: false);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CliException($"--speculative-config is not valid JSON: {e.Message}");
        }
    }

    /// <summary>cpu, cuda or cuda:N.</summary>
    public string Device { get; set; } = "cpu";
    /// <summary>--gpu-memory-utilization (vLLM's name): the fraction of the GPU's memory the server may fill, KV pool included.</summary>
    public double GpuMemoryUtilization { get; set; } = 0.9;
    /// <summary>The CUDA device index of --device cuda[:N], or null for the CPU.</summary>
    public int? CudaDevice => Device == "cpu" ? null : Device == "cuda" ? 0 : int.Parse(Device.AsSpan(5), System.Globalization.CultureInfo.InvariantCulture);
    public int? Threads { get; set; }
    public int MaxQueueLength { get; set; } = 256;
    public int ShutdownGraceSeconds { get; set; } = 30;
    /// <summary>GLM_ALLOW_LONG_MAX_MODEL_LEN=1: a --max-model-len above the model's max_position_embeddings is served (vLLM's VLLM_ALLOW_LONG_MAX_MODEL_LEN).</summary>
    public bool AllowLongMaxModelLen { get; set; }
    /// <summary>--user-content-special-tokens: "text" (default) tokenizes user and tool contents as plain text; "parse" matches control tokens in them too.</summary>
    public string UserContentSpecialTokens { get; set; } = "text";
    public bool LiteralThirdPartyContent => UserContentSpecialTokens == "text";
    /// <summary>Host header values served (names, without port); null = the default for the bound address (see <see cref="EffectiveAllowedHosts"/>).</summary>
    public List<string>? AllowedHosts { get; set; }
    /// <summary>CORS: origins allowed to read responses from a browser. Empty keeps CORS off.</summary>
    public List<string> AllowedOrigins { get; set; } = [];
    public List<string> AllowedMethods { get; set; } = ["*"];
    public List<string> AllowedHeaders { get; set; } = ["*"];

    // quantize verb
    /// <summary>--output DIR: where quantize writes the quantized model directory.</summary>
    public string? Output { get; set; }

    // complete verb
    public List<int> PromptIds { get; } = [];
    public string? Prompt { get; set; }
    public int? MaxTokens { get; set; }
    public float? Temperature { get; set; }
    public bool IgnoreEos { get; set; }
    public ulong? Seed { get; set; }

    // eval verb
    public string? PromptsFile { get; set; }

    // chat verb
    public string? Url { get; set; }
    /// <summary>Offer the demo model's tools (get_weather, get_time, calculator) in chat.</summary>
    public bool DemoTools { get; set; }
    public string ReferenceKvCacheDType { get; set; } = "f32";

    /// <summary>The embedded demo model shipped next to the binary.</summary>
    public static string EmbeddedModelDirectory => Path.Combine(AppContext.BaseDirectory, "models", "glm-demo");

    public string ModelDirectory => Model ?? EmbeddedModelDirectory;
    /// <summary>
    /// Every name the model answers to: --served-model-name takes a comma-separated list (vLLM takes several names
    /// too), so an agent that insists on its own model name (Claude Code's, say) can be served under it.
    /// The first is the primary name, reported in responses.
    /// </summary>
    public IReadOnlyList<string> ModelNames =>
        ServedModelName?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is { Length: > 0 } list ? list : [ServedModelName ?? ModelSource];

    public string ModelName => ModelNames[0];

    /// <summary>What is served, without the server's file-system path: "glm-demo", a Hub repository id, or the model directory's name.</summary>
    public string ModelSource => Model is null ? "glm-demo"
        : Hub.HubDownloader.LooksLikeRepoId(Model) ? Model : Path.GetFileName(Path.TrimEndingDirectorySeparator(Model));

    /// <summary>
    /// The Host names the server answers to, against DNS rebinding (a web page whose own name resolves to
    /// 127.0.0.1 could otherwise read a local server's answers). On a loopback address: the loopback names and
    /// the bound address. On a wildcard or other address: any (null), unless --allowed-hosts says otherwise.
    /// "*" in the list allows any.
    /// </summary>
    public IReadOnlySet<string>? EffectiveAllowedHosts()
    {
        if (AllowedHosts is { } given) return given.Contains("*") ? null : new HashSet<string>(given.Select(NormalizeHost), StringComparer.OrdinalIgnoreCase);
        bool loopback = Host is "localhost" || (System.Net.IPAddress.TryParse(Host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip));
        if (!loopback) return null;
        return new HashSet<string>(["localhost", "127.0.0.1", "::1", NormalizeHost(Host)], StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>A Host header value or list entry without port and IPv6 brackets, lower case.</summary>
    public static string NormalizeHost(string host)
    {
        string h = host.Trim();
        if (h.StartsWith('['))
        {
            int close = h.IndexOf(']');
            return (close > 0 ? h[1..close] : h.Trim('[')).ToLowerInvariant();
        }
        int colon = h.IndexOf(':');
        if (colon >= 0 && h.IndexOf(':', colon + 1) < 0) h = h[..colon]; // name:port (a bare IPv6 address has several colons)
        return h.TrimEnd('.').ToLowerInvariant();
    }

    /// <summary>A list flag: comma-separated, or a JSON array as vLLM takes it ('["*"]').</summary>
    private static List<string> ListValue(string value)
    {
        string v = value.Trim();
        if (v.StartsWith('['))
        {
            try
            {
                return System.Text.Json.JsonSerializer.Deserialize<List<string>>(v) ?? [];
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new CliException($"'{value}' is not a JSON list of strings: {e.Message}");
            }
        }
        return v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
    }

    public Kernels.Cpu.Int4Activations ResolveInt4Activations() =>
        Int4Activations == "float" ? Kernels.Cpu.Int4Activations.Float : Kernels.Cpu.Int4Activations.Int8;

    public KvCacheDType? ResolveIndexerKvDType() => IndexerKvCacheDType == "auto" ? null : KvCacheDTypes.Parse(IndexerKvCacheDType);

    public KvCacheDType ResolveKvDType() =>
        KvCacheDType == "auto" ? (Quantization == "none" ? Kernels.Attention.KvCacheDType.F32 : Kernels.Attention.KvCacheDType.Int4) : KvCacheDTypes.Parse(KvCacheDType);

    /// <summary>Validates choices that would otherwise fail only once loading starts.</summary>
    public void Validate()
    {
        if (KvCacheDType != "auto") KvCacheDTypes.Parse(KvCacheDType);
        if (IndexerKvCacheDType != "auto") KvCacheDTypes.Parse(IndexerKvCacheDType);
        if (!Quantization.EndsWith(".json", StringComparison.OrdinalIgnoreCase) && Quantization is not ("none" or "fp8" or "int4" or "fp8-int4"))
            throw new CliException($"--quantization must be none, fp8, int4, fp8-int4 or a JSON policy file, got '{Quantization}'");
        if (Int4Activations is not ("int8" or "float")) throw new CliException($"--int4-activations must be int8 or float, got '{Int4Activations}'");
        if (BlockSize is < 1 or > 1024) throw new CliException("--block-size must be between 1 and 1024");
        if (MaxNumSeqs < 1) throw new CliException("--max-num-seqs must be at least 1");
        if (MaxQueueLength < 0) throw new CliException("--max-queue-len must be 0 or more");
        if (ShutdownGraceSeconds < 0) throw new CliException("--shutdown-grace-seconds must be 0 or more");
        // One parser reads GLM-4.5/4.6's and GLM-4.7's call forms alike; the names are vLLM's.
        if (ToolCallParser is not (null or "glm45" or "glm47" or "glm4_moe" or "glm47_moe"))
            throw new CliException($"--tool-call-parser must be glm45 or glm47 (one parser reads both forms), got '{ToolCallParser}'");
        if (ReasoningParser is not (null or "glm45" or "glm4_moe"))
            throw new CliException($"--reasoning-parser must be glm45, got '{ReasoningParser}'");
        if (UserContentSpecialTokens is not ("text" or "parse"))
            throw new CliException($"--user-content-special-tokens must be text or parse, got '{UserContentSpecialTokens}'");
    }

    /// <summary>
    /// Settings in increasing precedence: appsettings.json's "Glm" section (keys named like the flags, e.g.
    /// "max-model-len"), then GLM_* environment variables, then command-line flags.
    /// </summary>
    public static ServerOptions Parse(IReadOnlyList<string> args, string? appSettingsPath = null)
    {
        var o = new ServerOptions();
        o.ApplyArgs(AppSettingsArgs(appSettingsPath ?? FindAppSettings()));
        o.ApplyEnvironment();
        o.ApplyArgs(args);
        if (o.Device != "cpu" && !System.Text.RegularExpressions.Regex.IsMatch(o.Device, "^cuda(:[0-9]{1,3})?$"))
            throw new CliException($"--device must be cpu, cuda or cuda:N, got '{o.Device}'");
        if (o.Device != "cpu" && !Kernels.Cuda.CudaRuntime.IsAvailable(out string why))
            throw new CliException($"--device {o.Device}: {why}");
        if (!(o.GpuMemoryUtilization > 0 && o.GpuMemoryUtilization <= 1))
            throw new CliException($"--gpu-memory-utilization must be in (0, 1], got {o.GpuMemoryUtilization}");
        o.Speculation(); // refuses a bad --speculative-config before anything loads
        try { o.Validate(); }
        catch (ArgumentException e) { throw new CliException(e.Message); }
        return o;
    }

    private static string? FindAppSettings() =>
        new[] { Path.Combine(Environment.CurrentDirectory, "appsettings.json"), Path.Combine(AppContext.BaseDirectory, "appsettings.json") }.FirstOrDefault(File.Exists);

    private static List<string> AppSettingsArgs(string? path)
    {
        var list = new List<string>();
        if (path is null || !File.Exists(path)) return list;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path), new System.Text.Json.JsonDocumentOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true });
            if (!doc.RootElement.TryGetProperty("Glm", out var glm) || glm.ValueKind != System.Text.Json.JsonValueKind.Object) return list;
            foreach (var p in glm.EnumerateObject())
            {
                string flag = "--" + p.Name;
                switch (p.Value.ValueKind)
                {
                    case System.Text.Json.JsonValueKind.True: list.Add(flag); break;
                    case System.Text.Json.JsonValueKind.False: if (p.Name == "enable-prefix-caching") list.Add("--no-enable-prefix-caching"); break;
                    case System.Text.Json.JsonValueKind.Null: break;
                    default: list.Add(flag); list.Add(p.Value.ValueKind == System.Text.Json.JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText()); break;
                }
            }
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CliException($"{path} is not valid JSON: {e.Message}");
        }
        return list;
    }

    private void ApplyArgs(IReadOnlyList<string> args)
    {
        var o = this;
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            string? inline = null;
            int eq = arg.IndexOf('=');
            if (arg.StartsWith("--") && eq > 0) { inline = arg[(eq + 1)..]; arg = arg[..eq]; }
            string Value()
            {
                if (inline is not null) return inline;
                if (i + 1 >= args.Count) throw new CliException($"{arg} needs a value");
                return args[++i];
            }
            int IntValue() => int.TryParse(Value(), out int v) ? v : throw new CliException($"{arg} needs an integer");
            switch (arg)
            {
                case "--model": o.Model = Value(); break;
                case "--tokenizer": o.Tokenizer = Value(); break;
                case "--revision": o.Revision = Value(); break;
                case "--served-model-name": o.ServedModelName = Value(); break;
                case "--host": o.Host = Value(); break;
                case "--port": o.Port = IntValue(); break;
                case "--api-key": o.ApiKey = Value(); break;
                case "--max-model-len": o.MaxModelLen = IntValue(); break;
                case "--max-num-seqs": o.MaxNumSeqs = IntValue(); break;
                case "--max-num-batched-tokens": o.MaxNumBatchedTokens = IntValue(); break;
                case "--block-size": o.BlockSize = IntValue(); break;
                case "--kv-cache-memory": o.KvCacheMemory = long.TryParse(Value(), out long b) ? b : throw new CliException("--kv-cache-memory needs a byte count"); break;
                case "--kv-cache-dtype": o.KvCacheDType = Value(); break;
                case "--indexer-kv-cache-dtype": o.IndexerKvCacheDType = Value(); break;
                case "--quantization": o.Quantization = Value(); break;
                case "--int4-activations": o.Int4Activations = Value(); break;
                case "--enable-prefix-caching": o.EnablePrefixCaching = true; break;
                case "--no-enable-prefix-caching": o.EnablePrefixCaching = false; break;
                case "--tool-call-parser": o.ToolCallParser = Value() is var tp && tp is "none" or "" ? null : tp; break;
                case "--reasoning-parser": o.ReasoningParser = Value() is var rp && rp is "none" or "" ? null : rp; break;
                case "--device": o.Device = Value(); break;
                case "--speculative-config": o.SpeculativeConfig = Value(); break;
                case "--gpu-memory-utilization":
                    o.GpuMemoryUtilization = double.TryParse(Value(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double u)
                        ? u : throw new CliException("--gpu-memory-utilization needs a number");
                    break;
                case "--threads": o.Threads = IntValue(); break;
                case "--max-queue-len": o.MaxQueueLength = IntValue(); break;
                case "--shutdown-grace-seconds": o.ShutdownGraceSeconds = IntValue(); break;
                case "--user-content-special-tokens": o.UserContentSpecialTokens = Value(); break;
                case "--allowed-hosts": o.AllowedHosts = ListValue(Value()); break;
                case "--allowed-origins": o.AllowedOrigins = ListValue(Value()); break;
                case "--allowed-methods": o.AllowedMethods = ListValue(Value()); break;
                case "--allowed-headers": o.AllowedHeaders = ListValue(Value()); break;
                case "--prompt-ids":
                    foreach (var part in Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                        o.PromptIds.Add(int.TryParse(part, out int id) ? id : throw new CliException($"--prompt-ids: '{part}' is not a token id"));
                    break;
                case "--prompt": o.Prompt = Value(); break;
                case "--prompts": o.PromptsFile = Value(); break;
                case "--output": o.Output = Value(); break;
                case "--url": o.Url = Value(); break;
                case "--demo-tools": o.DemoTools = true; break;
                case "--reference-kv-cache-dtype": o.ReferenceKvCacheDType = Value(); break;
                case "--max-tokens": o.MaxTokens = IntValue(); break;
                case "--temperature": o.Temperature = float.TryParse(Value(), System.Globalization.CultureInfo.InvariantCulture, out float t) ? t : throw new CliException("--temperature needs a number"); break;
                case "--seed": o.Seed = ulong.TryParse(Value(), out ulong s) ? s : throw new CliException("--seed needs an integer"); break;
                case "--ignore-eos": o.IgnoreEos = true; break;
                default: throw new CliException($"unknown option '{arg}'");
            }
        }
    }

    private void ApplyEnvironment()
    {
        string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
        Model = Env("GLM_MODEL");
        ApiKey = Env("GLM_API_KEY");
        ServedModelName = Env("GLM_SERVED_MODEL_NAME");
        if (Env("GLM_HOST") is { } host) Host = host;
        if (int.TryParse(Env("GLM_PORT"), out int port)) Port = port;
        if (int.TryParse(Env("GLM_MAX_MODEL_LEN"), out int len)) MaxModelLen = len;
        if (Env("GLM_QUANTIZATION") is { } q) Quantization = q;
        if (Env("GLM_INT4_ACTIVATIONS") is { } int4Act) Int4Activations = int4Act;
        if (Env("GLM_KV_CACHE_DTYPE") is { } kv) KvCacheDType = kv;
        if (int.TryParse(Env("GLM_SHUTDOWN_GRACE_SECONDS"), out int grace)) ShutdownGraceSeconds = grace;
        if (int.TryParse(Env("GLM_MAX_NUM_SEQS"), out int seqs)) MaxNumSeqs = seqs;
        if (long.TryParse(Env("GLM_KV_CACHE_MEMORY"), out long kvBytes)) KvCacheMemory = kvBytes;
        if (int.TryParse(Env("GLM_THREADS"), out int threads)) Threads = threads;
        if (Env("GLM_DEVICE") is { } device) Device = device;
        if (double.TryParse(Env("GLM_GPU_MEMORY_UTILIZATION"), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double util))
            GpuMemoryUtilization = util;
        AllowLongMaxModelLen = Env("GLM_ALLOW_LONG_MAX_MODEL_LEN") is "1" or "true" or "TRUE" or "yes";
        if (Env("GLM_USER_CONTENT_SPECIAL_TOKENS") is { } special) UserContentSpecialTokens = special;
        if (Env("GLM_ALLOWED_HOSTS") is { } hosts) AllowedHosts = ListValue(hosts);
        if (Env("GLM_ALLOWED_ORIGINS") is { } origins) AllowedOrigins = ListValue(origins);
    }
}

/// <summary>A usage error: printed as one line, exit code 2.</summary>
public sealed class CliException(string message) : Exception(message);

/// <summary>--speculative-config, parsed: prompt lookup (<see cref="Ngram"/>) or the model's MTP layer.</summary>
public sealed record SpeculativeSettings(Glm.Engine.NgramProposer? Ngram, bool Mtp);
