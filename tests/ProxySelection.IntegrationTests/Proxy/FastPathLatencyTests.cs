using System.Globalization;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Issue 13's cache-hit goal (&lt; 50 µs at p99 over direct): curl's connect time (SYN to SYN/ACK) toward an MPTCP
/// server the cache knows, directly (no proxy), through the queue and through the kernel fast path. Only correctness
/// is asserted (a timing bound on a shared machine would be fragile); the figures are printed with the load.
/// <c>PSEL_FASTPATH_SAMPLES</c> sets the connections per path (default 20).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class FastPathLatencyTests
{
    [Test]
    public async Task CacheHitConnects_DirectQueueAndKernel_AllConnectAndKernelDecidesEach()
    {
        int samples = int.TryParse(Environment.GetEnvironmentVariable("PSEL_FASTPATH_SAMPLES"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
            ? Math.Clamp(n, 1, 2000)
            : 20;
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", 1024);
        await lab.StartNginxAsync(mptcp: true);

        var direct = await ConnectTimesAsync(lab, samples, "direct");

        var queued = await lab.StartProxyAsync("--set", "Proxy:KernelFastPath=false");
        await ConnectTimesAsync(lab, 1, "warm-queue");
        var viaQueue = await ConnectTimesAsync(lab, samples, "queue");
        await queued.StopAsync(ProxyLab.Timeout);

        var kernel = await lab.StartProxyAsync("--set", "Proxy:KernelFastPath=true");
        await ConnectTimesAsync(lab, 1, "warm-kernel");
        await WaitForAnyElementAsync(lab.Topology.Proxy, "PSEL_MP4");
        var viaKernel = await ConnectTimesAsync(lab, samples, "kernel");
        await kernel.StopAsync(ProxyLab.Timeout);

        var load = (await File.ReadAllTextAsync("/proc/loadavg")).Trim();
        TestContext.Progress.WriteLine($"cache-hit connect time, {samples} connections each, loadavg {load}:");
        foreach (var (name, times) in new[] { ("direct", direct), ("queue", viaQueue), ("kernel", viaKernel) })
        {
            TestContext.Progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {name,-6} p50 {Percentile(times, 0.50),7:F0} µs  p99 {Percentile(times, 0.99),7:F0} µs  (p50 over direct {Percentile(times, 0.50) - Percentile(direct, 0.50),6:F0} µs, p99 over direct {Percentile(times, 0.99) - Percentile(direct, 0.99),6:F0} µs)"));
        }

        Assert.Multiple(() =>
        {
            Assert.That(ProxyLab.Counter(kernel, "kernel_passed"), Is.EqualTo(samples), "the kernel decided every cache hit");
            Assert.That(ProxyLab.Lines(kernel, "syn ").Count(l => l.Contains("MpCapable", StringComparison.Ordinal)), Is.EqualTo(1), "only the warming SYN was queued");
            Assert.That(ProxyLab.Lines(queued, "syn ").Count(l => l.Contains("MpCapable", StringComparison.Ordinal)), Is.EqualTo(1 + samples), "the queue saw every SYN");
        });
    }

    /// <summary>curl's <c>time_connect</c> in µs for <paramref name="count"/> downloads (each must succeed).</summary>
    private static async Task<List<double>> ConnectTimesAsync(ProxyLab lab, int count, string name)
    {
        var times = new List<double>();
        for (int i = 0; i < count; i++)
        {
            var curl = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, Path.Combine(lab.Directory, $"{name}{i}.out"), null,
                "-w", "%{time_connect}");
            Assert.That(curl.ExitCode, Is.Zero, $"{name} {i}: {curl.StdErr}");
            times.Add(double.Parse(curl.StdOut.Trim(), CultureInfo.InvariantCulture) * 1e6);
        }

        return times;
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];
    }

    private static async Task WaitForAnyElementAsync(NetNamespace ns, string set)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (!(await ns.CheckAsync("ipset", ["list", set], ProxyLab.Timeout)).Contains("Number of entries: 0", StringComparison.Ordinal))
            {
                return;
            }

            await Task.Delay(50);
        }

        Assert.Fail($"{set} stayed empty");
    }
}
