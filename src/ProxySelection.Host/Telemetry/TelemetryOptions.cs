using Microsoft.Extensions.Options;
using ProxySelection.Host.Hosting;

namespace ProxySelection.Host.Telemetry;

/// <summary>OTLP wire protocols (OTEL_EXPORTER_OTLP_PROTOCOL's values).</summary>
internal enum OtlpProtocol
{
    Grpc,

    [ConfigurationChoice("http/protobuf")]
    HttpProtobuf,
}

/// <summary>
/// The <c>Telemetry</c> section: which exporters receive the engine's traces and metrics. Every exporter is off by
/// default, so a configuration without the section exports nothing and costs nothing per packet. Bound like the
/// <c>Proxy</c> section (<see cref="ProxyConfiguration"/>), checked by <see cref="TelemetryOptionsValidator"/>.
/// </summary>
/// <example>
/// <code>
/// "Telemetry": {
///   "ServiceName": "proxysel-cpe",
///   "Otlp": { "Endpoint": "http://127.0.0.1:4318", "Protocol": "http/protobuf" },
///   "Prometheus": { "Endpoint": "http://127.0.0.1:9464/metrics" },
///   "Console": false,
///   "ExportInterval": "10s"
/// }
/// </code>
/// </example>
internal sealed class TelemetryOptions
{
    public const string SectionName = "Telemetry";

    /// <summary>service.name of the resource. Default <c>proxysel</c>.</summary>
    public string ServiceName { get; set; } = "proxysel";

    /// <summary>Spans and metrics written to standard output too. Default false.</summary>
    public bool Console { get; set; }

    /// <summary>How often metrics are pushed (OTLP, console) and spans batched, 100 ms..5 min. Default 10 s.</summary>
    public TimeSpan ExportInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The OTLP collector (<c>Telemetry:Otlp</c>).</summary>
    public OtlpSettings Otlp { get; set; } = new();

    /// <summary>The Prometheus scrape endpoint (<c>Telemetry:Prometheus</c>).</summary>
    public PrometheusSettings Prometheus { get; set; } = new();

    /// <summary>True when any exporter is configured.</summary>
    public bool Enabled => Console || Otlp.Endpoint is not null || Prometheus.Endpoint is not null;

    /// <summary>True when spans go somewhere (console or OTLP); Prometheus takes metrics only.</summary>
    public bool ExportsTraces => Console || Otlp.Endpoint is not null;

    public static string Key(string name) => SectionName + ":" + name;
}

/// <summary><c>Telemetry:Otlp</c>.</summary>
internal sealed class OtlpSettings
{
    /// <summary>
    /// For <c>grpc</c> the endpoint as is (e.g. <c>http://127.0.0.1:4317</c>); for <c>http/protobuf</c> the base URL
    /// (e.g. <c>http://127.0.0.1:4318</c>) to which <c>/v1/traces</c> and <c>/v1/metrics</c> are added, as
    /// OTEL_EXPORTER_OTLP_ENDPOINT is read. Default none.
    /// </summary>
    public Uri? Endpoint { get; set; }

    /// <summary><c>grpc</c> (the default) or <c>http/protobuf</c>.</summary>
    public OtlpProtocol Protocol { get; set; } = OtlpProtocol.Grpc;
}

/// <summary><c>Telemetry:Prometheus</c>.</summary>
internal sealed class PrometheusSettings
{
    /// <summary>Scrape endpoint served by the daemon, <c>http://ADDRESS:PORT/PATH</c>. Default none.</summary>
    public Uri? Endpoint { get; set; }
}

/// <summary>Range and shape checks on <see cref="TelemetryOptions"/>; each failure names its key.</summary>
internal sealed class TelemetryOptionsValidator : IValidateOptions<TelemetryOptions>
{
    public static readonly TimeSpan MinExportInterval = TimeSpan.FromMilliseconds(100);
    public static readonly TimeSpan MaxExportInterval = TimeSpan.FromMinutes(5);

    public ValidateOptionsResult Validate(string? name, TelemetryOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();
        void Fail(string key, string reason) => errors.Add(TelemetryOptions.Key(key) + ": " + reason);

        if (string.IsNullOrWhiteSpace(options.ServiceName))
        {
            Fail(nameof(options.ServiceName), "must not be empty");
        }

        if (options.ExportInterval < MinExportInterval || options.ExportInterval > MaxExportInterval)
        {
            Fail(nameof(options.ExportInterval), $"{options.ExportInterval} is outside 100ms..5m");
        }

        if (options.Otlp.Endpoint is { } otlp && (!otlp.IsAbsoluteUri || otlp.Scheme is not ("http" or "https")))
        {
            Fail("Otlp:Endpoint", $"\"{otlp.OriginalString}\" is not an absolute http:// or https:// URL, e.g. http://127.0.0.1:4317");
        }

        if (options.Prometheus.Endpoint is { } scrape)
        {
            // HttpListener serves a prefix of scheme, host, port and path; a query or fragment has no meaning there.
            if (!scrape.IsAbsoluteUri || scrape.Scheme != "http")
            {
                Fail("Prometheus:Endpoint", $"\"{scrape.OriginalString}\" is not an absolute http:// URL, e.g. http://127.0.0.1:9464/metrics");
            }
            else if (scrape.IsDefaultPort && !scrape.OriginalString.Contains(":80", StringComparison.Ordinal))
            {
                Fail("Prometheus:Endpoint", $"\"{scrape.OriginalString}\" names no port; the scrape endpoint needs one, e.g. :9464");
            }
            else if (scrape.AbsolutePath.Length <= 1 || scrape.Query.Length > 0 || scrape.Fragment.Length > 0)
            {
                Fail("Prometheus:Endpoint", $"\"{scrape.OriginalString}\" needs a path and no query, e.g. /metrics");
            }
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
