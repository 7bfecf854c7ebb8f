using System.Globalization;
using Microsoft.Extensions.Configuration;
using ProxySelection.Host.Hosting;

namespace ProxySelection.Host.Telemetry;

/// <summary>OTLP wire protocols (OTEL_EXPORTER_OTLP_PROTOCOL's values).</summary>
internal enum OtlpProtocol
{
    Grpc,
    HttpProtobuf,
}

/// <summary>
/// The <c>Telemetry</c> section: which exporters receive the engine's traces and metrics. Every exporter is off by
/// default, so a configuration without the section exports nothing and costs nothing per packet.
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

    private static readonly string[] KnownKeys = ["ServiceName", "Console", "ExportInterval", "Otlp", "Prometheus"];
    private static readonly string[] OtlpKeys = ["Endpoint", "Protocol"];
    private static readonly string[] PrometheusKeys = ["Endpoint"];

    /// <summary>service.name of the resource. Default <c>proxysel</c>.</summary>
    public string ServiceName { get; set; } = "proxysel";

    /// <summary>Spans and metrics written to standard output too. Default false.</summary>
    public bool Console { get; set; }

    /// <summary>
    /// OTLP collector: for <c>grpc</c> the endpoint as is (e.g. <c>http://127.0.0.1:4317</c>); for <c>http/protobuf</c>
    /// the base URL (e.g. <c>http://127.0.0.1:4318</c>) to which <c>/v1/traces</c> and <c>/v1/metrics</c> are added,
    /// as OTEL_EXPORTER_OTLP_ENDPOINT is read. Default none.
    /// </summary>
    public Uri? OtlpEndpoint { get; set; }

    /// <summary><c>grpc</c> (the default) or <c>http/protobuf</c>.</summary>
    public OtlpProtocol OtlpProtocol { get; set; } = OtlpProtocol.Grpc;

    /// <summary>Prometheus scrape endpoint served by the daemon, <c>http://ADDRESS:PORT/PATH</c>. Default none.</summary>
    public Uri? PrometheusEndpoint { get; set; }

    /// <summary>How often metrics are pushed (OTLP, console) and spans batched, 100 ms..5 min. Default 10 s.</summary>
    public TimeSpan ExportInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>True when any exporter is configured.</summary>
    public bool Enabled => Console || OtlpEndpoint is not null || PrometheusEndpoint is not null;

    /// <summary>True when spans go somewhere (console or OTLP); Prometheus takes metrics only.</summary>
    public bool ExportsTraces => Console || OtlpEndpoint is not null;

    public static string Key(string name) => SectionName + ":" + name;

    /// <summary>
    /// Reads the section; each error names its key and the reason (e.g. <c>Telemetry:Otlp:Protocol: unknown value
    /// "http"; expected grpc, http/protobuf</c>). Unknown keys are errors: a typo would silently export nothing.
    /// </summary>
    public static TelemetryOptions Read(IConfigurationSection section, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(section);
        ArgumentNullException.ThrowIfNull(errors);
        var options = new TelemetryOptions();
        if (section.Value is not null)
        {
            errors.Add($"{SectionName}: expected a section with {string.Join(", ", KnownKeys)}, not a value");
        }

        foreach (var setting in section.GetChildren())
        {
            var name = Known(setting.Key, KnownKeys, Key(setting.Key), errors);
            switch (name)
            {
                case "ServiceName":
                    if (string.IsNullOrWhiteSpace(setting.Value))
                    {
                        errors.Add($"{Key(name)}: must not be empty");
                    }
                    else
                    {
                        options.ServiceName = setting.Value;
                    }

                    break;
                case "Console":
                    if (bool.TryParse(setting.Value, out bool console))
                    {
                        options.Console = console;
                    }
                    else
                    {
                        errors.Add($"{Key(name)}: \"{setting.Value}\" is not true or false");
                    }

                    break;
                case "ExportInterval":
                    if (!ProxyConfiguration.TryParseDuration(setting.Value, out var interval))
                    {
                        errors.Add($"{Key(name)}: \"{setting.Value}\" is not a duration; write it with a unit: 500ms, 10s, 1m");
                    }
                    else if (interval < TimeSpan.FromMilliseconds(100) || interval > TimeSpan.FromMinutes(5))
                    {
                        errors.Add($"{Key(name)}: {setting.Value} is outside 100ms..5m");
                    }
                    else
                    {
                        options.ExportInterval = interval;
                    }

                    break;
                case "Otlp":
                    ReadOtlp(setting, options, errors);
                    break;
                case "Prometheus":
                    ReadPrometheus(setting, options, errors);
                    break;
            }
        }

        return options;
    }

    private static void ReadOtlp(IConfigurationSection otlp, TelemetryOptions options, List<string> errors)
    {
        if (otlp.Value is not null)
        {
            errors.Add($"{Key("Otlp")}: expected a section with Endpoint and Protocol, not a value");
            return;
        }

        foreach (var setting in otlp.GetChildren())
        {
            var key = Key("Otlp:" + setting.Key);
            switch (Known(setting.Key, OtlpKeys, key, errors))
            {
                case "Endpoint":
                    if (!Uri.TryCreate(setting.Value, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https"))
                    {
                        errors.Add($"{key}: \"{setting.Value}\" is not an absolute http:// or https:// URL, e.g. http://127.0.0.1:4317");
                    }
                    else
                    {
                        options.OtlpEndpoint = endpoint;
                    }

                    break;
                case "Protocol":
                    switch (setting.Value?.ToLowerInvariant())
                    {
                        case "grpc":
                            options.OtlpProtocol = OtlpProtocol.Grpc;
                            break;
                        case "http/protobuf":
                            options.OtlpProtocol = OtlpProtocol.HttpProtobuf;
                            break;
                        default:
                            errors.Add($"{key}: unknown value \"{setting.Value}\"; expected grpc, http/protobuf");
                            break;
                    }

                    break;
            }
        }
    }

    private static void ReadPrometheus(IConfigurationSection prometheus, TelemetryOptions options, List<string> errors)
    {
        if (prometheus.Value is not null)
        {
            errors.Add($"{Key("Prometheus")}: expected a section with Endpoint, not a value");
            return;
        }

        foreach (var setting in prometheus.GetChildren())
        {
            var key = Key("Prometheus:" + setting.Key);
            if (Known(setting.Key, PrometheusKeys, key, errors) is null)
            {
                continue;
            }

            // HttpListener serves a prefix of scheme, host, port and path; a query or fragment has no meaning there.
            if (!Uri.TryCreate(setting.Value, UriKind.Absolute, out var endpoint) || endpoint.Scheme != "http")
            {
                errors.Add($"{key}: \"{setting.Value}\" is not an absolute http:// URL, e.g. http://127.0.0.1:9464/metrics");
            }
            else if (endpoint.IsDefaultPort && !setting.Value!.Contains(":80", StringComparison.Ordinal))
            {
                errors.Add($"{key}: \"{setting.Value}\" names no port; the scrape endpoint needs one, e.g. :9464");
            }
            else if (endpoint.AbsolutePath.Length <= 1 || endpoint.Query.Length > 0 || endpoint.Fragment.Length > 0)
            {
                errors.Add($"{key}: \"{setting.Value}\" needs a path and no query, e.g. /metrics");
            }
            else
            {
                options.PrometheusEndpoint = endpoint;
            }
        }
    }

    private static string? Known(string key, string[] known, string fullKey, List<string> errors)
    {
        var name = known.FirstOrDefault(k => string.Equals(k, key, StringComparison.OrdinalIgnoreCase));
        if (name is null)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{fullKey}: unknown key; known keys: {string.Join(", ", known)}"));
        }

        return name;
    }
}
