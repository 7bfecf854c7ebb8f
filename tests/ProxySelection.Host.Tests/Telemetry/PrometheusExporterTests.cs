using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using ProxySelection.Engine;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Host.Telemetry;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Host.Tests.Telemetry;

/// <summary>The daemon's Prometheus exporter, scraped over HTTP on the loopback, as a Prometheus server would.</summary>
[NonParallelizable]
public sealed class PrometheusExporterTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Test]
    public async Task KernelDecidedConnections_ReadBackTwice_ScrapedInTheConnectionsCounterBesideTheQueuesOnes()
    {
        var endpoint = new Uri($"http://127.0.0.1:{FreePort()}/metrics");
        using var exporters = ProxyTelemetryExporters.StartExporters(new TelemetryOptions { Prometheus = { Endpoint = endpoint } });
        using var telemetry = new ProxyTelemetry(new ProxyEngineOptions { KeyRing = new MpProxyKeyRing(1, new byte[32]) }, TimeProvider.System,
            NullLogger.Instance, () => 0, () => 0);
        var counters = new ProxyCounters(telemetry);

        counters.AddIntercepted();
        // The fast chain's rule counters as KernelCacheMirror reads them: running totals, every few seconds.
        counters.SetKernelDecided(passed: 3, intercepted: 5);
        counters.SetKernelDecided(passed: 7, intercepted: 5);

        using var http = new HttpClient { Timeout = Timeout };
        var text = await http.GetStringAsync(endpoint).WaitAsync(Timeout);
        var series = text.Split('\n').Where(l => l.StartsWith("proxysel_connections_total{", StringComparison.Ordinal)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(series, Has.One.Matches<string>(l => l.Contains("proxysel_decided_by=\"kernel\"") && l.Contains("proxysel_decision=\"pass\"") && Value(l) == 7),
                text);
            Assert.That(series, Has.One.Matches<string>(l => l.Contains("proxysel_decided_by=\"kernel\"") && l.Contains("proxysel_decision=\"intercept\"") && Value(l) == 5),
                text);
            Assert.That(series, Has.One.Matches<string>(l => !l.Contains("proxysel_decided_by") && l.Contains("proxysel_decision=\"intercept\"") && Value(l) == 1),
                "the queue's own intercept, untagged");
            Assert.That(counters.KernelPassed, Is.EqualTo(7));
            Assert.That(counters.KernelIntercepted, Is.EqualTo(5));
        });
    }

    /// <summary>A series line's value: <c>name{labels} value [timestamp]</c>.</summary>
    private static double Value(string line) =>
        double.Parse(line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
