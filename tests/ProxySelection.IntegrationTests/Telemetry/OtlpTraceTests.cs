using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Telemetry;

/// <summary>
/// Issue 6 acceptance: the daemon exports its traces over OTLP (HTTP/protobuf and gRPC) to a test receiver in its namespace;
/// the decoded spans of two MPTCP transfers over both client paths carry the flow, the decision, the parent/child
/// links of probe and upstream connect, and one subflow-established event per path from the kernel's mptcp_pm events.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class OtlpTraceTests
{
    // Large enough that the second subflow always joins before the transfer ends, even on a loaded machine.
    private const int Size = 32 * 1024 * 1024;
    private const int SpanKindServer = 2;
    private const int SpanKindClient = 3;

    [TestCase("http/protobuf")]
    [TestCase("grpc")]
    public async Task TwoPathTransfers_OtlpExport_ConnectionSpansWithProbeUpstreamConnectAndSubflowEvents(string protocol)
    {
        await using var lab = await ProxyLab.StartAsync();
        lab.WriteFile("first.bin", Size);
        lab.WriteFile("second.bin", Size);
        await lab.StartNginxAsync();
        // Where samples/otel-collector.yaml has the collector take OTLP over each protocol.
        var endpoint = TelemetrySampleTests.OtlpEndpoint(protocol == "grpc" ? "grpc" : "http");
        int port = int.Parse(endpoint.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture);
        await using OtlpReceiver receiver = protocol == "grpc"
            ? await OtlpGrpcReceiver.StartAsync(lab.Topology.Proxy, port)
            : await OtlpHttpReceiver.StartAsync(lab.Topology.Proxy, port);
        var proxy = await lab.StartProxyAsync(
            "--set", "Telemetry:Otlp:Endpoint=http://" + endpoint,
            "--set", "Telemetry:Otlp:Protocol=" + protocol,
            "--set", "Telemetry:ExportInterval=500ms",
            "--set", "Telemetry:ServiceName=proxysel-otlp-test");

        // The first connection misses the cache (probe, adopted as upstream leg); the second is decided from the cache.
        foreach (var name in new[] { "first", "second" })
        {
            var curl = await lab.CurlAsync(ProxyLab.Url(false, name + ".bin"), mptcp: true, Path.Combine(lab.Directory, name + ".out"));
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        }

        await WaitForRelaysAsync(proxy, 2);
        // SIGTERM: the engine ends its spans, then the exporter flushes them.
        await proxy.StopAsync(ProxyLab.Timeout);
        var spans = await receiver.WaitForSpansAsync(s => s.Count(x => x.Name == "proxysel.connection") >= 2, ProxyLab.Timeout);
        TestContext.Progress.WriteLine(string.Join("\n", spans.Select(Describe)));

        var roots = spans.Where(s => s.Name == "proxysel.connection").ToList();
        Assert.That(roots, Has.Count.EqualTo(2), proxy.Output);
        Assert.That(receiver.Errors, Is.Empty);
        var probed = roots.Single(r => spans.Any(s => s.Name == "proxysel.probe" && s.ParentSpanId == r.SpanId));
        var cached = roots.Single(r => r != probed);
        Assert.Multiple(() =>
        {
            foreach (var root in roots)
            {
                Assert.That(root.ParentSpanId, Is.Empty, "a root span");
                Assert.That(root.Kind, Is.EqualTo(SpanKindServer));
                Assert.That(root.Scope, Is.EqualTo("ProxySelection"));
                Assert.That(root.Resource["service.name"], Is.EqualTo("proxysel-otlp-test"));
                Assert.That(root.Attributes["client.address"], Is.EqualTo(TwoPathTopology.ClientPath1V4));
                Assert.That(root.Attributes["server.address"], Is.EqualTo(TwoPathTopology.ServerV4));
                Assert.That(root.Attributes["server.port"], Is.EqualTo(80L));
                Assert.That(root.Attributes["network.transport"], Is.EqualTo("tcp"));
                Assert.That(root.Attributes["proxysel.role"], Is.EqualTo("downgrade"));
                Assert.That(root.Attributes["proxysel.mode"], Is.EqualTo("explicit"));
                Assert.That(root.Attributes["proxysel.policy"], Is.EqualTo("first"));
                Assert.That(root.Attributes["proxysel.proxy_id"], Is.EqualTo(1L));
                Assert.That(root.Attributes["proxysel.decision"], Is.EqualTo("intercept"));
                Assert.That(root.Attributes["proxysel.close_reason"], Is.EqualTo("Completed"));
                Assert.That((long)root.Attributes["proxysel.bytes.downstream"]!, Is.GreaterThanOrEqualTo(Size));
                Assert.That((long)root.Attributes["proxysel.bytes.upstream"]!, Is.GreaterThan(0));
                Assert.That(root.Attributes["proxysel.subflows"], Is.EqualTo(2L));
                Assert.That(root.Attributes, Does.ContainKey("proxysel.mptcp.token"));

                // One subflow per client path: the initial one (ESTABLISHED) and the MP_JOIN (SUB_ESTABLISHED).
                var established = root.Events.Where(e => e.Name == "proxysel.subflow.established").ToList();
                Assert.That(established, Has.Count.EqualTo(2), $"subflow events of {root.SpanId}");
                Assert.That(established.Select(e => e.Attributes["network.peer.address"]),
                    Is.EquivalentTo(new[] { TwoPathTopology.ClientPath1V4, TwoPathTopology.ClientPath2V4 }));
                Assert.That(established.Select(e => e.Attributes["mptcp.token"]), Has.All.EqualTo(root.Attributes["proxysel.mptcp.token"]));
            }

            Assert.That(roots[0].TraceId, Is.Not.EqualTo(roots[1].TraceId), "one trace per connection");
            Assert.That(probed.Attributes["proxysel.reason"], Is.EqualTo("ProbeAnswered"), "intercepted once its probe was answered");
            Assert.That(cached.Attributes["proxysel.reason"], Is.EqualTo("ServerTcpOnly"));

            var probe = spans.Single(s => s.Name == "proxysel.probe");
            Assert.That(probe.TraceId, Is.EqualTo(probed.TraceId));
            Assert.That(probe.Kind, Is.EqualTo(SpanKindClient));
            Assert.That(probe.Attributes["proxysel.probe.outcome"], Is.EqualTo("answered"));
            Assert.That(probe.Attributes["proxysel.probe.mp_capable"], Is.EqualTo(false));

            var connect = spans.Single(s => s.Name == "proxysel.upstream_connect");
            Assert.That(connect.TraceId, Is.EqualTo(cached.TraceId));
            Assert.That(connect.ParentSpanId, Is.EqualTo(cached.SpanId));
            Assert.That(connect.Attributes["proxysel.upstream.connect_status"], Is.EqualTo("Connected"));
            Assert.That(connect.Attributes["proxysel.upstream.protocol"], Is.EqualTo("tcp"));
        });
    }

    /// <summary>
    /// Upgrade role: the MPTCP leg is the proxy's own upstream connection, so its token (MPTCP_INFO of the upstream
    /// socket) names the subflow events: the adopted probe's for the first connection, the relay's connect for the second.
    /// </summary>
    [Test]
    public async Task UpgradeRole_OtlpExport_SubflowEventsOfTheUpstreamMptcpLeg()
    {
        await using var lab = await ProxyLab.StartAsync();
        lab.WriteFile("file.bin", 4 * 1024 * 1024);
        await lab.StartNginxAsync(mptcp: true);
        var endpoint = TelemetrySampleTests.OtlpEndpoint("http");
        await using OtlpReceiver receiver = await OtlpHttpReceiver.StartAsync(lab.Topology.Proxy,
            int.Parse(endpoint.Split(':')[1], System.Globalization.CultureInfo.InvariantCulture));
        var proxy = await lab.StartProxyAsync("--role", "upgrade",
            "--set", "Telemetry:Otlp:Endpoint=http://" + endpoint, "--set", "Telemetry:Otlp:Protocol=http/protobuf", "--set", "Telemetry:ExportInterval=500ms");

        for (int i = 0; i < 2; i++)
        {
            var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: false, Path.Combine(lab.Directory, $"file{i}.out"));
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        }

        await WaitForRelaysAsync(proxy, 2);
        await proxy.StopAsync(ProxyLab.Timeout);
        var spans = await receiver.WaitForSpansAsync(s => s.Count(x => x.Name == "proxysel.connection") >= 2, ProxyLab.Timeout);
        TestContext.Progress.WriteLine(string.Join("\n", spans.Select(Describe)));

        var roots = spans.Where(s => s.Name == "proxysel.connection").ToList();
        Assert.That(roots, Has.Count.EqualTo(2), proxy.Output);
        Assert.Multiple(() =>
        {
            foreach (var root in roots)
            {
                Assert.That(root.Attributes["proxysel.role"], Is.EqualTo("upgrade"));
                Assert.That(root.Attributes["proxysel.upstream.mptcp"], Is.EqualTo("Active"));
                Assert.That(root.Attributes["proxysel.client.mptcp"], Is.EqualTo("NotMptcp"));
                var established = root.Events.Where(e => e.Name == "proxysel.subflow.established").ToList();
                Assert.That(established, Is.Not.Empty, $"subflow events of {root.SpanId}");
                Assert.That(established.Select(e => e.Attributes["network.peer.address"]), Has.All.EqualTo(TwoPathTopology.ServerV4));
                Assert.That(established.Select(e => e.Attributes["network.local.address"]), Has.All.EqualTo(TwoPathTopology.ProxyUpV4));
                Assert.That(established.Select(e => e.Attributes["mptcp.token"]), Has.All.EqualTo(root.Attributes["proxysel.mptcp.token"]));
            }

            var connect = spans.Single(s => s.Name == "proxysel.upstream_connect");
            Assert.That(connect.Attributes["proxysel.upstream.protocol"], Is.EqualTo("mptcp"));
        });
    }

    private static async Task WaitForRelaysAsync(LabProcess proxy, int count)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (ProxyLab.Lines(proxy, "relay ").Count < count && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.That(ProxyLab.Lines(proxy, "relay "), Has.Count.EqualTo(count), proxy.Output);
    }

    private static string Describe(OtlpSpan s) =>
        $"{s.Name} trace={s.TraceId} span={s.SpanId} parent={s.ParentSpanId} kind={s.Kind} status={s.StatusCode} " +
        $"[{string.Join(", ", s.Attributes.Select(a => $"{a.Key}={a.Value}"))}] events: " +
        string.Join("; ", s.Events.Select(e => $"{e.Name}({string.Join(", ", e.Attributes.Select(a => $"{a.Key}={a.Value}"))})"));
}
