using System.Globalization;
using System.Text.Json;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Telemetry;

/// <summary>
/// Issue 6 acceptance: a real Prometheus server (the Debian package) scrapes the daemon's endpoint in the proxy
/// namespace while MPTCP traffic runs through it, and its HTTP API returns the expected series with values above zero.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class PrometheusScrapeTests
{
    private const string ScrapeEndpoint = "http://127.0.0.1:9464/metrics";
    private const string PrometheusAddress = "127.0.0.1:9090";

    [Test]
    public async Task DaemonWithPrometheusEndpoint_RealPrometheusScrapesIt_SeriesOfTheTransferAboveZero()
    {
        await using var lab = await ProxyLab.StartAsync();
        lab.WriteFile("file.bin", 4 * 1024 * 1024);
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync("--set", "Telemetry:Prometheus:Endpoint=" + ScrapeEndpoint);
        var prometheus = await StartPrometheusAsync(lab);

        for (int i = 0; i < 2; i++)
        {
            var curl = await lab.CurlAsync(ProxyLab.Url(false, "file.bin"), mptcp: true, Path.Combine(lab.Directory, $"file{i}.out"));
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        }

        await ProxyLab.WaitForLineAsync(proxy, "relay ", "Completed");
        string[] queries =
        [
            """proxysel_connections_total{proxysel_decision="intercept"}""",
            """proxysel_bytes_total{proxysel_direction="downstream"}""",
            """proxysel_bytes_total{proxysel_direction="upstream"}""",
            "proxysel_subflows_total",
            "proxysel_probe_duration_seconds_count",
            "proxysel_verdict_duration_seconds_count",
            "proxysel_cache_hits_total",
            "proxysel_cache_misses_total",
        ];
        var values = new Dictionary<string, double>();
        foreach (var query in queries)
        {
            values[query] = await WaitForPositiveAsync(lab, query, prometheus);
        }

        // The sample's recording rule: one of the two MPTCP SYNs was decided from the cache.
        values["proxysel:cache_hit_ratio"] = await WaitForPositiveAsync(lab, "proxysel:cache_hit_ratio", prometheus);

        // Present even at zero: the gauges a dashboard needs from the first scrape.
        var active = await QueryAsync(lab, "proxysel_connections_active");
        var drops = await QueryAsync(lab, "proxysel_queue_drops_total");
        TestContext.Progress.WriteLine(string.Join("; ", values.Select(v => $"{v.Key} = {v.Value}")) + $"; active {active}; drops {drops}");
        Assert.Multiple(() =>
        {
            Assert.That(values["""proxysel_connections_total{proxysel_decision="intercept"}"""], Is.EqualTo(2));
            Assert.That(values["""proxysel_bytes_total{proxysel_direction="downstream"}"""], Is.GreaterThanOrEqualTo(2 * 4 * 1024 * 1024));
            Assert.That(values["proxysel_cache_misses_total"], Is.EqualTo(1), "the first connection probed");
            Assert.That(values["proxysel_cache_hits_total"], Is.EqualTo(1), "the second was decided from the cache");
            Assert.That(values["proxysel:cache_hit_ratio"], Is.EqualTo(0.5));
            Assert.That(active, Is.Not.Null);
            Assert.That(drops, Is.Not.Null);
        });
    }

    /// <summary>
    /// Prometheus in the proxy namespace with samples/prometheus.yml and its rules (intervals shortened to 1 s), scraping
    /// the daemon, its API on the namespace's loopback.
    /// </summary>
    private static async Task<LabProcess> StartPrometheusAsync(ProxyLab lab)
    {
        var directory = Directory.CreateDirectory(Path.Combine(lab.Directory, "prometheus")).FullName;
        var config = Path.Combine(directory, "prometheus.yml");
        var sample = await File.ReadAllTextAsync(Path.Combine(RepositoryPaths.Samples, "prometheus.yml"));
        Assert.That(sample, Does.Contain("scrape_interval: 15s").And.Contain("evaluation_interval: 15s").And.Contain("'127.0.0.1:9464'"));
        await File.WriteAllTextAsync(config, sample.Replace("15s", "1s", StringComparison.Ordinal));
        File.Copy(Path.Combine(RepositoryPaths.Samples, "proxysel-rules.yml"), Path.Combine(directory, "proxysel-rules.yml"));
        var process = lab.Topology.Proxy.StartProcess("prometheus",
        [
            "--config.file=" + config, "--storage.tsdb.path=" + Path.Combine(directory, "data"), "--web.listen-address=" + PrometheusAddress,
            "--log.level=warn",
        ]);
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (DateTime.UtcNow < deadline && !process.HasExited)
        {
            var ready = await lab.Topology.Proxy.RunAsync("curl", ["-sf", $"http://{PrometheusAddress}/-/ready"], ProxyLab.Timeout);
            if (ready.ExitCode == 0)
            {
                return process;
            }

            await Task.Delay(200);
        }

        throw new InvalidOperationException($"prometheus did not become ready: {process.Output}");
    }

    private static async Task<double> WaitForPositiveAsync(ProxyLab lab, string query, LabProcess prometheus)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        double? last = null;
        while (DateTime.UtcNow < deadline)
        {
            last = await QueryAsync(lab, query);
            if (last > 0)
            {
                return last.Value;
            }

            await Task.Delay(500);
        }

        var names = await lab.Topology.Proxy.RunAsync("curl", ["-s", $"http://{PrometheusAddress}/api/v1/label/__name__/values"], ProxyLab.Timeout);
        var targets = await lab.Topology.Proxy.RunAsync("curl", ["-s", $"http://{PrometheusAddress}/api/v1/targets"], ProxyLab.Timeout);
        Assert.Fail($"{query}: {last?.ToString(CultureInfo.InvariantCulture) ?? "no series"} after {ProxyLab.Timeout}; names {names.StdOut}; targets {targets.StdOut}; {prometheus.Output}");
        return 0;
    }

    /// <summary>The value of an instant query's first sample, null when the result is empty.</summary>
    private static async Task<double?> QueryAsync(ProxyLab lab, string query)
    {
        var result = await lab.Topology.Proxy.RunAsync("curl",
            ["-sfG", $"http://{PrometheusAddress}/api/v1/query", "--data-urlencode", "query=" + query], ProxyLab.Timeout);
        if (result.ExitCode != 0)
        {
            return null;
        }

        using var json = JsonDocument.Parse(result.StdOut);
        var data = json.RootElement.GetProperty("data");
        var results = data.GetProperty("result");
        if (results.GetArrayLength() == 0)
        {
            return null;
        }

        // An instant vector sample: [ <unix time>, "<value>" ].
        return double.Parse(results[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
    }
}
