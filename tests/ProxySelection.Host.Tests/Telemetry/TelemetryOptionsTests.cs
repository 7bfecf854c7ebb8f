using ProxySelection.Engine.Diagnostics;
using Microsoft.Extensions.Configuration.Memory;
using ProxySelection.Host.Hosting;
using ProxySelection.Host.Telemetry;

namespace ProxySelection.Host.Tests.Telemetry;

/// <summary>The <c>Telemetry</c> section of <c>proxysel run</c>'s configuration: read, defaults, and refusals naming key and reason.</summary>
public sealed class TelemetryOptionsTests
{
    private string _directory = "";

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("psel-telemetry-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    private static readonly object[] InvalidConfigurations =
    [
        new object[] { """{ "Telemetry": { "Otlp": { "Endpoint": "collector:4317" } } }""", "Telemetry:Otlp:Endpoint", "not an absolute http:// or https:// URL" },
        new object[] { """{ "Telemetry": { "Otlp": { "Endpoint": "ftp://127.0.0.1:4317" } } }""", "Telemetry:Otlp:Endpoint", "not an absolute http:// or https:// URL" },
        new object[] { """{ "Telemetry": { "Otlp": { "Endpoint": "" } } }""", "Telemetry:Otlp:Endpoint", "not an absolute" },
        new object[] { """{ "Telemetry": { "Otlp": { "Protocol": "http" } } }""", "Telemetry:Otlp:Protocol", "unknown value \"http\"; expected grpc, http/protobuf" },
        new object[] { """{ "Telemetry": { "Otlp": { "Protocol": "http/json" } } }""", "Telemetry:Otlp:Protocol", "expected grpc, http/protobuf" },
        new object[] { """{ "Telemetry": { "Otlp": { "Endpiont": "http://127.0.0.1:4317" } } }""", "Telemetry:Otlp:Endpiont", "known keys: Endpoint, Protocol" },
        new object[] { """{ "Telemetry": { "Otlp": "http://127.0.0.1:4317" } }""", "Telemetry:Otlp", "expected a section with Endpoint, Protocol, not a value" },
        new object[] { """{ "Telemetry": { "Prometheus": { "Endpoint": "https://127.0.0.1:9464/metrics" } } }""", "Telemetry:Prometheus:Endpoint", "not an absolute http:// URL" },
        new object[] { """{ "Telemetry": { "Prometheus": { "Endpoint": "http://127.0.0.1/metrics" } } }""", "Telemetry:Prometheus:Endpoint", "names no port" },
        new object[] { """{ "Telemetry": { "Prometheus": { "Endpoint": "http://127.0.0.1:9464" } } }""", "Telemetry:Prometheus:Endpoint", "needs a path" },
        new object[] { """{ "Telemetry": { "Prometheus": { "Endpoint": "http://127.0.0.1:9464/metrics?x=1" } } }""", "Telemetry:Prometheus:Endpoint", "no query" },
        new object[] { """{ "Telemetry": { "Prometheus": { "Port": 9464 } } }""", "Telemetry:Prometheus:Port", "unknown key; known keys: Endpoint" },
        new object[] { """{ "Telemetry": { "Console": "yes" } }""", "Telemetry:Console", "\"yes\" is not true or false" },
        new object[] { """{ "Telemetry": { "ExportInterval": "10" } }""", "Telemetry:ExportInterval", "with a unit" },
        new object[] { """{ "Telemetry": { "ExportInterval": "10ms" } }""", "Telemetry:ExportInterval", "outside 100ms..5m" },
        new object[] { """{ "Telemetry": { "ExportInterval": "1h" } }""", "Telemetry:ExportInterval", "outside 100ms..5m" },
        new object[] { """{ "Telemetry": { "ServiceName": " " } }""", "Telemetry:ServiceName", "must not be empty" },
        new object[] { """{ "Telemetry": { "Jaeger": { "Endpoint": "http://127.0.0.1:14268" } } }""", "Telemetry:Jaeger", "unknown key; known keys: ServiceName, Console, ExportInterval, Otlp, Prometheus" },
        new object[] { """{ "Telemetri": { "Console": true } }""", "Telemetri", "unknown section (did you mean Telemetry?)" },
        new object[] { """{ "Telemetry": true }""", "Telemetry", "expected a section with ServiceName, Console, ExportInterval, Otlp, Prometheus, not a value" },
    ];

    [TestCaseSource(nameof(InvalidConfigurations))]
    public void Load_InvalidTelemetrySetting_RefusedNamingKeyAndReason(string json, string key, string reason)
    {
        var result = Load(json);

        Assert.That(result.IsValid, Is.False);
        Assert.That(result.Errors, Has.Some.StartsWith(key + ": ").And.Contains(reason));
    }

    [Test]
    public void Load_NoTelemetrySection_EverythingOff()
    {
        var result = Load("""{ "Proxy": { "Role": "upgrade" } }""");

        Assert.That(result.Errors, Is.Empty);
        Assert.That(result.Telemetry.Enabled, Is.False);
        Assert.That(result.Telemetry.ExportsTraces, Is.False);
        Assert.That(result.Telemetry.ServiceName, Is.EqualTo("proxysel"));
        Assert.That(result.Telemetry.Otlp.Protocol, Is.EqualTo(OtlpProtocol.Grpc));
        Assert.That(result.Telemetry.ExportInterval, Is.EqualTo(TimeSpan.FromSeconds(10)));
    }

    [Test]
    public void Load_FullSection_EveryExporterRead()
    {
        var result = Load("""
            {
              "Telemetry": {
                "ServiceName": "proxysel-cpe",
                "Console": true,
                "ExportInterval": "2s",
                "Otlp": { "Endpoint": "http://198.18.0.10:4318", "Protocol": "http/protobuf" },
                "Prometheus": { "Endpoint": "http://127.0.0.1:9464/metrics" }
              }
            }
            """);

        Assert.That(result.Errors, Is.Empty);
        var telemetry = result.Telemetry;
        Assert.Multiple(() =>
        {
            Assert.That(telemetry.ServiceName, Is.EqualTo("proxysel-cpe"));
            Assert.That(telemetry.Console, Is.True);
            Assert.That(telemetry.ExportInterval, Is.EqualTo(TimeSpan.FromSeconds(2)));
            Assert.That(telemetry.Otlp.Endpoint, Is.EqualTo(new Uri("http://198.18.0.10:4318")));
            Assert.That(telemetry.Otlp.Protocol, Is.EqualTo(OtlpProtocol.HttpProtobuf));
            Assert.That(telemetry.Prometheus.Endpoint, Is.EqualTo(new Uri("http://127.0.0.1:9464/metrics")));
            Assert.That(telemetry.Enabled && telemetry.ExportsTraces, Is.True);
        });
    }

    [Test]
    public void Load_PrometheusOnly_MetricsWithoutSpans()
    {
        var result = ProxyConfiguration.Load(null, ["Telemetry:Prometheus:Endpoint=http://127.0.0.1:9464/metrics"], new MemoryConfigurationSource());

        Assert.That(result.Errors, Is.Empty);
        Assert.That(result.Telemetry.Enabled, Is.True);
        Assert.That(result.Telemetry.ExportsTraces, Is.False, "no span exporter: the source gets no listener, no span is created");
    }

    [Test]
    public void Load_OverrideOnCommandLine_WinsOverFile()
    {
        var path = Path.Combine(_directory, "config.json");
        File.WriteAllText(path, """{ "Telemetry": { "Otlp": { "Endpoint": "http://127.0.0.1:4317" } } }""");

        var result = ProxyConfiguration.Load(path, ["Telemetry:Otlp:Protocol=http/protobuf", "Telemetry:Otlp:Endpoint=http://127.0.0.1:4318"], new MemoryConfigurationSource());

        Assert.That(result.Errors, Is.Empty);
        Assert.That(result.Telemetry.Otlp.Endpoint, Is.EqualTo(new Uri("http://127.0.0.1:4318")));
        Assert.That(result.Telemetry.Otlp.Protocol, Is.EqualTo(OtlpProtocol.HttpProtobuf));
    }

    [Test]
    public void Describe_InstanceId_IsServiceInstanceIdOfTheResource()
    {
        var resource = ProxyTelemetryExporters.Describe(OpenTelemetry.Resources.ResourceBuilder.CreateEmpty(), new TelemetryOptions { ServiceName = "proxysel-tier" }, "proxy-3").Build();
        var attributes = resource.Attributes.ToDictionary(a => a.Key, a => a.Value);

        Assert.Multiple(() =>
        {
            Assert.That(attributes["service.instance.id"], Is.EqualTo("proxy-3"));
            Assert.That(attributes["service.name"], Is.EqualTo("proxysel-tier"));
        });
    }

    [Test]
    public void StartExporters_NothingConfigured_DisposableThatExportsNothing()
    {
        using var exporters = ProxyTelemetryExporters.StartExporters(new TelemetryOptions());

        Assert.That(ProxyTelemetry.IsObserved, Is.False);
    }

    [Test]
    public void StartExporters_PrometheusPortTaken_RefusedNamingKeyAndReason()
    {
        // Bound, never connected to: only the port is taken.
        var squatter = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        squatter.Start();
        try
        {
            int port = ((System.Net.IPEndPoint)squatter.LocalEndpoint).Port;
            var options = new TelemetryOptions { Prometheus = { Endpoint = new Uri($"http://127.0.0.1:{port}/metrics") } };

            var e = Assert.Throws<TelemetryException>(() => ProxyTelemetryExporters.StartExporters(options).Dispose());

            Assert.That(e!.Message, Does.StartWith("Telemetry:Prometheus:Endpoint: cannot serve http://127.0.0.1:" + port + "/metrics: ").And.Contains("in use"));
        }
        finally
        {
            squatter.Stop();
        }
    }

    private ProxyConfigurationResult Load(string json)
    {
        var path = Path.Combine(_directory, "config.json");
        File.WriteAllText(path, json);
        return ProxyConfiguration.Load(path, [], new MemoryConfigurationSource());
    }
}
