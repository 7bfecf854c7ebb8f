using ProxySelection.Engine.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace ProxySelection.Host.Telemetry;

/// <summary>An exporter could not start; the message names the configuration key and the reason.</summary>
internal sealed class TelemetryException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// Wires the <see cref="ProxyTelemetry.Name"/> source and meter to the exporters of <see cref="TelemetryOptions"/>:
/// <see cref="StartExporters"/> starts them before the host and stops them after it, so the engine's first and last
/// spans and metrics have a listener.
/// </summary>
internal static class ProxyTelemetryExporters
{
    /// <summary>
    /// Starts the exporters now; disposing flushes and stops them (call after the engine stopped).
    /// <see cref="TelemetryException"/> when the Prometheus endpoint cannot be served. <paramref name="instanceId"/> is
    /// <c>service.instance.id</c> on every span and metric (Proxy:Instance:Id or its default); null: the SDK's random one.
    /// </summary>
    public static IDisposable StartExporters(TelemetryOptions options, string? instanceId = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.Enabled)
        {
            return new Providers(null, null);
        }

        TracerProvider? tracer = null;
        if (options.ExportsTraces)
        {
            // Only with a span exporter: otherwise no span is created at all (the source has no listener).
            var tracing = Sdk.CreateTracerProviderBuilder().ConfigureResource(resource => Describe(resource, options, instanceId));
            ConfigureTracing(tracing, options);
            tracer = tracing.Build();
        }

        try
        {
            var metrics = Sdk.CreateMeterProviderBuilder().ConfigureResource(resource => Describe(resource, options, instanceId));
            ConfigureMetrics(metrics, options);
            return new Providers(tracer, metrics.Build());
        }
        catch (InvalidOperationException e) when (options.Prometheus.Endpoint is not null && e.InnerException is System.Net.HttpListenerException listener)
        {
            tracer?.Dispose();
            // The scrape endpoint's port is taken (EADDRINUSE) or the address is not on this host.
            throw new TelemetryException($"{TelemetryOptions.Key("Prometheus:Endpoint")}: cannot serve {options.Prometheus.Endpoint}: {listener.Message}", e);
        }
        catch
        {
            tracer?.Dispose();
            throw;
        }
    }

    /// <summary>The resource both providers describe themselves with: service.name, service.version, service.instance.id.</summary>
    public static ResourceBuilder Describe(ResourceBuilder resource, TelemetryOptions options, string? instanceId)
    {
        ArgumentNullException.ThrowIfNull(resource);
        ArgumentNullException.ThrowIfNull(options);
        // N instances export under one service.name; the collector and Prometheus tell them apart by this id.
        return resource.AddService(options.ServiceName, serviceVersion: typeof(ProxyTelemetry).Assembly.GetName().Version?.ToString(3),
            autoGenerateServiceInstanceId: instanceId is null, serviceInstanceId: instanceId);
    }

    private static void ConfigureTracing(TracerProviderBuilder tracing, TelemetryOptions options)
    {
        tracing.AddSource(ProxyTelemetry.Name);
        if (options.Console)
        {
            tracing.AddConsoleExporter();
        }

        if (options.Otlp.Endpoint is { } endpoint)
        {
            tracing.AddOtlpExporter(otlp =>
            {
                Configure(otlp, endpoint, "v1/traces", options);
                otlp.BatchExportProcessorOptions.ScheduledDelayMilliseconds = (int)options.ExportInterval.TotalMilliseconds;
            });
        }
    }

    private static void ConfigureMetrics(MeterProviderBuilder metrics, TelemetryOptions options)
    {
        metrics.AddMeter(ProxyTelemetry.Name);
        int interval = (int)options.ExportInterval.TotalMilliseconds;
        if (options.Console)
        {
            metrics.AddConsoleExporter((_, reader) => reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = interval);
        }

        if (options.Otlp.Endpoint is { } endpoint)
        {
            metrics.AddOtlpExporter((otlp, reader) =>
            {
                Configure(otlp, endpoint, "v1/metrics", options);
                reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = interval;
            });
        }

        if (options.Prometheus.Endpoint is { } scrape)
        {
            metrics.AddPrometheusHttpListener(prometheus =>
            {
                prometheus.Host = scrape.Host;
                prometheus.Port = scrape.Port;
                prometheus.ScrapeEndpointPath = scrape.AbsolutePath;
            });
        }
    }

    private static void Configure(OtlpExporterOptions otlp, Uri endpoint, string signalPath, TelemetryOptions options)
    {
        otlp.Protocol = options.Otlp.Protocol == OtlpProtocol.Grpc ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;
        // Set in code, the HTTP exporter posts to the endpoint as given: the signal's path is added here, as the SDK
        // does for OTEL_EXPORTER_OTLP_ENDPOINT.
        otlp.Endpoint = options.Otlp.Protocol == OtlpProtocol.Grpc
            ? endpoint
            : new Uri(endpoint.AbsoluteUri.TrimEnd('/') + "/" + signalPath);
    }

    private sealed class Providers(TracerProvider? tracer, MeterProvider? meter) : IDisposable
    {
        public void Dispose()
        {
            // Spans end as the engine stops; the tracer flushes them before the meter's last export.
            tracer?.Dispose();
            meter?.Dispose();
        }
    }
}
