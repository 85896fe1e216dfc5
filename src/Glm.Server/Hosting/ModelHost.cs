using Glm.Engine;
using Glm.Kernels.Attention;
using Glm.Kernels.Cpu;
using Glm.Kernels.Cuda;
using Glm.Kernels.Cuda.Worker;
using Glm.Kernels.Device;
using Glm.Kernels.Device.Cpu;
using Glm.Models;
using Glm.Models.Architectures;
using Glm.Models.Quantization;
using Glm.Server.Cli;
using Glm.Text.Templates;
using Glm.Text.Tokenization;

namespace Glm.Server.Hosting;

/// <summary>
/// Loads the model once, in the background, so the HTTP host answers /health (503) while weights load; then
/// holds the engine. Also the switch for graceful shutdown: once draining, new work is refused with 503.
/// </summary>
public sealed class ModelHost : IDisposable
{
    private readonly ServerOptions _options;
    private readonly Serilog.ILogger _log;
    private volatile ServedModel? _model;
    private volatile bool _draining;
    private readonly CancellationTokenSource _graceEnded = new();

    public ModelHost(ServerOptions options, Serilog.ILogger log)
    {
        _options = options;
        _log = log;
    }

    public ServedModel? Model => _model;
    public bool Ready => _model is not null && !_draining;
    public bool Draining => _draining;
    public Exception? LoadError { get; private set; }
    public ServerOptions Options => _options;
    /// <summary>Rendering and tokenization of requests: small ones inline, large ones on a bounded set of threads.</summary>
    public PromptWork PromptWork { get; } = PromptWork.ForThisMachine();
    /// <summary>Fires when a graceful shutdown's grace period is over: whatever still runs is cut off.</summary>
    public CancellationToken GraceEnded => _graceEnded.Token;

    public Task LoadInBackground(Action<Exception> onFailure) => Task.Run(() =>
    {
        try { _model = Load(_options, _log); }
        catch (Exception e) { LoadError = e; onFailure(e); }
    });

    public static ServedModel Load(ServerOptions o, Serilog.ILogger log)
    {
        if (o.Threads is int threads) MatMul.Threads = Math.Max(1, threads);
        var started = System.Diagnostics.Stopwatch.StartNew();
        string dir = ResolveModelDirectory(o, log);
        log.Information("Loading {Model} from {Directory}", o.ModelName, dir);
        var policy = QuantizationPolicy.Resolve(o.Quantization);
        QuantizingWeightBuilder? builder = null;
        var worker = OpenWorker(o, log);
        var speculation = o.Speculation();
        var model = ModelLoader.Load(dir, ckpt => builder = new QuantizingWeightBuilder(ckpt, policy) { Int4Activations = o.ResolveInt4Activations() },
            m => log.Information("{Message}", m), LoadProgress(log), worker, withMtp: speculation?.Mtp == true);
        log.Information("Quantization policy {Policy}; Int4 weights meet {Activations} activations", policy.Describe(), o.Int4Activations);
        foreach (var line in builder!.Summary()) log.Information("  {Line}", line);
        var config = model.Config;

        string tokenizerDir = o.Tokenizer ?? dir;
        string tokenizerPath = Path.Combine(tokenizerDir, "tokenizer.json");
        BpeTokenizer? tokenizer = File.Exists(tokenizerPath) ? BpeTokenizer.Load(tokenizerPath) : null;
        if (tokenizer is null) log.Warning("No tokenizer.json in {Directory}: only token-id prompts will work", tokenizerDir);
        var settings = ChatTemplateLoader.Load(tokenizerDir);

        var kvDType = o.ResolveKvDType();
        var indexerKvDType = o.ResolveIndexerKvDType();
        int maxModelLen = o.MaxModelLen ?? config.MaxPositionEmbeddings;
        if (maxModelLen > config.MaxPositionEmbeddings)
        {
            // As vLLM: past the trained positions RoPE extrapolates and quality drops, so it takes an explicit opt-in.
            if (!o.AllowLongMaxModelLen)
                throw new Cli.CliException($"--max-model-len {maxModelLen} exceeds the model's max_position_embeddings {config.MaxPositionEmbeddings}; " +
                    "set GLM_ALLOW_LONG_MAX_MODEL_LEN=1 to serve it anyway (positions past the trained length may degrade the output)");
            log.Warning("max-model-len {MaxLen} exceeds max_position_embeddings {Trained} (GLM_ALLOW_LONG_MAX_MODEL_LEN=1): positions past {Trained} may degrade the output",
                maxModelLen, config.MaxPositionEmbeddings, config.MaxPositionEmbeddings);
        }
        log.Information("max-model-len {MaxLen} ({Source})", maxModelLen, o.MaxModelLen is null ? "the model's max_position_embeddings" : "--max-model-len");
        long bytesPerBlock = model.KvBytesPerBlock(kvDType, o.BlockSize, indexerKvDType);
        long budget = o.KvCacheMemory ?? (worker is CudaWorker gpu ? GpuKvBudget(gpu, bytesPerBlock, o, log) : DefaultKvBudget(bytesPerBlock, o, maxModelLen));
        int blocks = ModelRunner.BlocksForBudget(model, kvDType, o.BlockSize, budget, indexerKvDType);
        if ((long)blocks * o.BlockSize < maxModelLen)
        {
            log.Warning("The KV pool holds {Tokens} tokens, fewer than max-model-len {MaxLen}; lowering max-model-len", (long)blocks * o.BlockSize, maxModelLen);
            maxModelLen = blocks * o.BlockSize;
        }
        var runner = new ModelRunner(model, kvDType, blocks, o.BlockSize, indexerKvDType: indexerKvDType);
        var engine = new LlmEngine(runner, new EngineOptions
        {
            MaxNumSeqs = o.MaxNumSeqs,
            MaxNumBatchedTokens = Math.Max(o.MaxNumBatchedTokens, 1),
            MaxModelLen = maxModelLen,
            EnablePrefixCaching = o.EnablePrefixCaching,
            MaxWaiting = o.MaxQueueLength,
            Speculation = speculation?.Ngram,
            MtpDrafting = speculation?.Mtp == true,
        }, e => log.Error(e, "Engine step failed; the affected requests were aborted"));
        if (speculation is not null)
            log.Information("Speculative decoding: {Config} ({Method}; drafts verified in the next step, outputs unchanged)", o.SpeculativeConfig,
                speculation.Mtp ? $"the MTP layer {ModelLoader.MtpPrefix(config)} drafts one token a step, its KV in one more cache layer" : "prompt lookup");

        var bytes = model.WeightBytesByFormat();
        log.Information("Model {Architecture} on the {Worker} worker: {Params:N0} parameters, {Layers} layers, hidden {Hidden}, vocab {Vocab}; weights {Weights} in {Seconds:F1}s",
            config.ArchitectureName, worker.Name, model.ParameterCount(), config.NumLayers, config.HiddenSize, config.VocabSize,
            string.Join(", ", bytes.Select(kv => $"{kv.Key} {kv.Value / 1048576.0:F1} MiB")), started.Elapsed.TotalSeconds);
        log.Information("KV cache: {Blocks} blocks x {BlockSize} tokens = {Tokens:N0} tokens, {DType}, {PerToken} bytes/token/layer, {MiB:F1} MiB; max-model-len {MaxLen}",
            blocks, o.BlockSize, (long)blocks * o.BlockSize, kvDType.Name(), runner.KvBytesPerToken / Math.Max(1, model.CacheLayout.Layers),
            (double)blocks * bytesPerBlock / 1048576, maxModelLen);
        if (model.IndexerCacheLayout is { } indexer)
            log.Information("DSA indexer keys: {Layers} full layers x {Dim} values a token, {DType}, counted in the pool above", indexer.Layers, indexer.KeyDim,
                (indexerKvDType ?? kvDType).Name());

        string description = o.Model is null
            ? "glm-demo: the embedded 8.3M-parameter GLM-4.5-architecture demo model (a smoke-test model: it reasons and calls tools, but its answers are often wrong)"
            : $"{config.ArchitectureName} from {dir}";
        if (!o.LiteralThirdPartyContent) log.Warning("--user-content-special-tokens parse: user and tool messages can contain control tokens (and so forge turns)");
        return new ServedModel(o.ModelName, dir, config, tokenizer, settings, engine, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), description)
        {
            LiteralThirdPartyContent = o.LiteralThirdPartyContent,
            Names = o.ModelNames,
            Root = o.ModelSource,
        };
    }

    /// <summary>A bar on an interactive terminal; otherwise a log line at every tenth of the layers.</summary>
    private static Action<int, int> LoadProgress(Serilog.ILogger log)
    {
        bool interactive = !Console.IsErrorRedirected;
        int lastDecile = 0;
        return (done, total) =>
        {
            if (interactive)
            {
                int width = 30, filled = done * width / total;
                Console.Error.Write($"\rloading weights [{new string('#', filled)}{new string('.', width - filled)}] {done}/{total} layers");
                if (done == total) Console.Error.WriteLine();
            }
            else if (done * 10 / total > lastDecile || done == total)
            {
                lastDecile = done * 10 / total;
                log.Information("Loaded {Done}/{Total} layers", done, total);
            }
        };
    }

    /// <summary>A local directory as given, or a Hugging Face repository id fetched into the shared cache.</summary>
    public static string ResolveModelDirectory(ServerOptions o, Serilog.ILogger log)
    {
        if (o.Model is null || !Hub.HubDownloader.LooksLikeRepoId(o.Model)) return o.ModelDirectory;
        var cache = Hub.HubCache.Default();
        log.Information("Fetching {Repo} (revision {Revision}) into {Cache}", o.Model, o.Revision, cache.Root);
        var downloader = new Hub.HubDownloader(cache, log: m => log.Information("{Message}", m));
        return downloader.Fetch(o.Model, o.Revision).GetAwaiter().GetResult();
    }

    /// <summary>The worker of --device: the CPU's, or a CUDA device (startup says which GPU and how much memory is free).</summary>
    internal static IWorker OpenWorker(ServerOptions o, Serilog.ILogger log)
    {
        if (o.CudaDevice is not int device) return CpuWorker.Instance;
        try
        {
            var gpu = CudaWorker.Open(device);
            var (free, total) = CudaRuntime.MemoryInfo();
            if (gpu.IsHostBuild)
                log.Warning("--device {Device} runs on libglm_cuda_host, the CUDA ABI built as plain C++ over host memory: correct, slow, no GPU", o.Device);
            log.Information("GPU {Device}: {Name}, {Free:F1} GiB free of {Total:F1} GiB; --gpu-memory-utilization {Utilization}",
                gpu.Name, gpu.DeviceName, free / 1073741824.0, total / 1073741824.0, o.GpuMemoryUtilization);
            return gpu;
        }
        catch (CudaException e)
        {
            throw new Cli.CliException($"--device {o.Device}: {e.Message}");
        }
    }

    /// <summary>
    /// As vLLM: the pool takes what is left of <c>gpu-memory-utilization x total</c> after the weights, less a
    /// reserve for a full batch's activations (the largest tensors of a step, a few at a time).
    /// </summary>
    private static long GpuKvBudget(CudaWorker gpu, long bytesPerBlock, ServerOptions o, Serilog.ILogger log)
    {
        var (free, total) = CudaRuntime.MemoryInfo();
        long used = total - free;
        long reserve = 256L << 20;
        long budget = (long)(o.GpuMemoryUtilization * total) - used - reserve;
        log.Information("GPU memory: weights {Weights:F1} GiB, in use {Used:F1} GiB of {Total:F1} GiB; KV pool budget {Budget:F1} GiB",
            gpu.PermanentBytes / 1073741824.0, used / 1073741824.0, total / 1073741824.0, Math.Max(0, budget) / 1073741824.0);
        if (budget < bytesPerBlock * 4)
            throw new Cli.CliException($"--device {o.Device}: out of memory for the KV cache: {free / 1048576} MiB free after the weights, " +
                $"--gpu-memory-utilization {o.GpuMemoryUtilization} allows {Math.Max(0, budget) / 1048576} MiB (raise it, quantize the weights, or use --kv-cache-memory)");
        return budget;
    }

    /// <summary>Enough for every sequence at full length, capped at a quarter of the memory this process may use.</summary>
    private static long DefaultKvBudget(long bytesPerBlock, ServerOptions o, int maxModelLen)
    {
        long wanted = (long)Math.Ceiling(maxModelLen / (double)o.BlockSize) * bytesPerBlock * Math.Max(1, o.MaxNumSeqs);
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return Math.Max(bytesPerBlock * 4, Math.Min(wanted, available / 4));
    }

    public void StartDraining()
    {
        _draining = true;
        _model?.Engine.StopAdmitting();
    }

    /// <summary>Ends the grace period: requests still running are cut off (their sequences aborted, their streams ended with an error).</summary>
    public void EndGrace()
    {
        _graceEnded.Cancel();
        if (_model is { } m) m.Engine.AbortAll();
    }

    public void Dispose()
    {
        _model?.Engine.Dispose();
        _graceEnded.Dispose();
    }
}
