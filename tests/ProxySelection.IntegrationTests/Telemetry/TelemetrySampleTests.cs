using ProxySelection.Interception.Rules;
using YamlDotNet.RepresentationModel;

namespace ProxySelection.IntegrationTests.Telemetry;

/// <summary>
/// samples/prometheus.yml (with its rules) passes promtool, the Debian package's checker, and samples/otel-collector.yaml
/// parses with the keys a collector needs. The Prometheus and OTLP tests also run against these files' settings.
/// </summary>
[TestFixture]
public sealed class TelemetrySampleTests
{
    [Test]
    public async Task PrometheusSample_PromtoolCheckConfig_ValidWithItsRules()
    {
        var result = await ProcessCommandRunner.ExecuteAsync("promtool", ["check", "config", Path.Combine(RepositoryPaths.Samples, "prometheus.yml")], null,
            TimeSpan.FromSeconds(30), CancellationToken.None);

        Assert.That(result.ExitCode, Is.Zero, result.StdOut + result.StdErr);
        Assert.That(result.StdOut + result.StdErr, Does.Contain("SUCCESS: 1 rule files found").And.Contain("SUCCESS: 4 rules found"));
    }

    [Test]
    public void CollectorSample_Parsed_OtlpReceiverOnBothProtocolsFeedsTracesAndMetrics()
    {
        var root = Load("otel-collector.yaml");

        var protocols = Map(Map(Map(root, "receivers"), "otlp"), "protocols");
        Assert.That(Scalar(Map(protocols, "grpc"), "endpoint"), Is.EqualTo("127.0.0.1:4317"));
        Assert.That(Scalar(Map(protocols, "http"), "endpoint"), Is.EqualTo("127.0.0.1:4318"));
        var pipelines = Map(Map(root, "service"), "pipelines");
        foreach (var signal in new[] { "traces", "metrics" })
        {
            var pipeline = Map(pipelines, signal);
            Assert.That(List(pipeline, "receivers"), Does.Contain("otlp"), signal);
            // A collector refuses a pipeline that names a component it does not define.
            foreach (var kind in new[] { "receivers", "processors", "exporters" })
            {
                var defined = Map(root, kind).Children.Keys.Select(k => ((YamlScalarNode)k).Value).ToList();
                Assert.That(defined, Is.SupersetOf(List(pipeline, kind)), $"{signal} {kind}");
            }
        }
    }

    /// <summary>The collector sample's OTLP endpoint for <paramref name="protocol"/> (grpc, http), which the OTLP test's receiver takes.</summary>
    internal static string OtlpEndpoint(string protocol)
    {
        var root = Load("otel-collector.yaml");
        return Scalar(Map(Map(Map(Map(root, "receivers"), "otlp"), "protocols"), protocol), "endpoint");
    }

    private static YamlMappingNode Load(string name)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(Path.Combine(RepositoryPaths.Samples, name));
        stream.Load(reader);
        return (YamlMappingNode)stream.Documents.Single().RootNode;
    }

    private static YamlMappingNode Map(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlMappingNode map
            ? map
            : throw new AssertionException($"no mapping '{key}' in {node}");

    private static string Scalar(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlScalarNode { Value: { } value }
            ? value
            : throw new AssertionException($"no scalar '{key}' in {node}");

    private static List<string> List(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) && child is YamlSequenceNode sequence
            ? [.. sequence.Children.Select(c => ((YamlScalarNode)c).Value ?? "")]
            : [];
}
