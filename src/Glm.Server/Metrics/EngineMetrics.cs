using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Glm.Server.Hosting;
using Prometheus;

namespace Glm.Server.Metrics;

/// <summary>
/// The engine's metrics under vLLM's names (vllm:…), so existing dashboards, autoscalers and the Gateway API
/// inference extension read them unchanged. prometheus-net refuses colons in names, so these families are written
/// in the text exposition format here and served after prometheus-net's own process and runtime metrics.
/// </summary>
public sealed class EngineMetrics
{
    private static readonly double[] Latency = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
    private static readonly double[] Lengths = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000];

    private readonly ModelHost _host;
    private readonly ExpositionHistogram _ttft = new("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", Latency);
    private readonly ExpositionHistogram _itl = new("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", Latency);
    private readonly ExpositionHistogram _e2e = new("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", Latency);
    private readonly ExpositionHistogram _promptLen = new("vllm:request_prompt_tokens", "Number of prefill tokens processed per request.", Lengths);
    private readonly ExpositionHistogram _genLen = new("vllm:request_generation_tokens", "Number of generation tokens processed per request.", Lengths);
    private readonly ConcurrentDictionary<string, long> _finished = new();

    public EngineMetrics(ModelHost host, CollectorRegistry? registry = null)
    {
        _host = host;
        Registry = registry ?? Prometheus.Metrics.NewCustomRegistry();
        DotNetStats.Register(Registry);
    }

    /// <summary>prometheus-net's registry (process and .NET runtime metrics).</summary>
    public CollectorRegistry Registry { get; }

    private string Labels => $"model_name=\"{_host.Options.ModelName.Replace("\\", "\\\\").Replace("\"", "\\\"")}\"";

    public async Task Serve(HttpContext ctx)
    {
        ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        using var buffer = new MemoryStream();
        await Registry.CollectAndExportAsTextAsync(buffer, ctx.RequestAborted);
        await ctx.Response.Body.WriteAsync(buffer.ToArray(), ctx.RequestAborted);
        await ctx.Response.WriteAsync(RenderEngineFamilies(), ctx.RequestAborted);
    }

    public string RenderEngineFamilies()
    {
        var sb = new StringBuilder();
        string labels = Labels;
        void Family(string name, string type, string help, double value)
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            sb.Append(name).Append('{').Append(labels).Append("} ").Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
        var s = _host.Model?.Engine.Stats;
        Family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", s?.Running ?? 0);
        Family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", s?.Waiting ?? 0);
        Family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", s?.KvUsage ?? 0);
        Family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", s?.PromptTokens ?? 0);
        Family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", s?.GenerationTokens ?? 0);
        Family("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.", s?.PrefixQueries ?? 0);
        Family("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.", s?.PrefixHits ?? 0);
        Family("vllm:num_preemptions_total", "counter", "Cumulative number of preemptions from the engine.", s?.Preemptions ?? 0);
        Family("vllm:spec_decode_num_drafts_total", "counter", "Number of spec decoding drafts.", s?.SpecDrafts ?? 0);
        Family("vllm:spec_decode_num_draft_tokens_total", "counter", "Number of draft tokens.", s?.SpecDraftTokens ?? 0);
        Family("vllm:spec_decode_num_accepted_tokens_total", "counter", "Number of accepted tokens.", s?.SpecAcceptedTokens ?? 0);
        sb.Append("# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter\n");
        foreach (var (reason, count) in _finished.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            sb.Append("vllm:request_success_total{").Append(labels).Append(",finished_reason=\"").Append(reason).Append("\"} ").Append(count).Append('\n');
        foreach (var h in new[] { _ttft, _itl, _e2e, _promptLen, _genLen }) h.Write(sb, labels);
        return sb.ToString();
    }

    /// <summary>Timing of one request.</summary>
    public sealed class RequestTimer(EngineMetrics metrics)
    {
        private readonly long _start = System.Diagnostics.Stopwatch.GetTimestamp();
        private long _last;

        public double? TimeToFirstToken { get; private set; }
        public double Elapsed => System.Diagnostics.Stopwatch.GetElapsedTime(_start).TotalSeconds;

        public void Token()
        {
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            long previous = Interlocked.Exchange(ref _last, now);
            if (previous == 0)
            {
                TimeToFirstToken = System.Diagnostics.Stopwatch.GetElapsedTime(_start, now).TotalSeconds;
                metrics._ttft.Observe(TimeToFirstToken.Value);
            }
            else metrics._itl.Observe(System.Diagnostics.Stopwatch.GetElapsedTime(previous, now).TotalSeconds);
        }

        public double Finish(string reason, int promptTokens, int generatedTokens)
        {
            double e2e = System.Diagnostics.Stopwatch.GetElapsedTime(_start).TotalSeconds;
            metrics._e2e.Observe(e2e);
            metrics._promptLen.Observe(promptTokens);
            metrics._genLen.Observe(generatedTokens);
            metrics._finished.AddOrUpdate(reason, 1, (_, c) => c + 1);
            return e2e;
        }
    }

    public RequestTimer StartRequest() => new(this);
}
