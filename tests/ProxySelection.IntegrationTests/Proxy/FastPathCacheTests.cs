using System.Globalization;
using System.Text.RegularExpressions;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Issue 13, the kernel fast path (<c>Proxy:KernelFastPath</c>): after the first connection's probe, the capability
/// cache's verdict for that destination is in an ipset and the kernel decides later SYNs to it without a queue trip;
/// the kernel copy follows the cache (flush) and expires no later than it; cleanup after SIGKILL leaves no set or rule.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed partial class FastPathCacheTests
{
    private const int CacheHits = 3;

    [TestCase(false)]
    [TestCase(true)]
    public async Task KnownMptcpServer_LaterSynsPassInTheKernel_NeverQueued(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", 64 * 1024);
        await lab.StartNginxAsync(mptcp: true);
        var proxy = await lab.StartProxyAsync("--set", "Proxy:KernelFastPath=true");
        var set = v6 ? "PSEL_MP6" : "PSEL_MP4";

        await DownloadAsync(lab, v6, sha, "first");
        var entry = await WaitForElementAsync(lab.Topology.Proxy, set, TwoPathTopology.ServerAddress(v6));
        var timeout = int.Parse(TimeoutRegex().Match(entry).Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.That(timeout, Is.InRange(1, 600), $"the kernel entry lives no longer than the cache's MptcpCapable (10 min): {entry}");
        for (int i = 0; i < CacheHits; i++)
        {
            await DownloadAsync(lab, v6, sha, $"hit{i}");
        }

        var counted = await lab.Topology.Proxy.CheckAsync(v6 ? "ip6tables" : "iptables", ["-t", "raw", "-L", "PSEL_FAST", "-v", "-x", "-n"], ProxyLab.Timeout);
        var queueChain = await lab.Topology.Proxy.CheckAsync(v6 ? "ip6tables" : "iptables", ["-t", "raw", "-L", "PSEL_QUEUE", "-v", "-x", "-n"], ProxyLab.Timeout);
        var listed = await lab.Topology.Proxy.CheckAsync("ipset", ["list", set], ProxyLab.Timeout);

        // The cache is the one truth: flushed, the kernel copy goes with it.
        var flushed = await lab.Topology.Proxy.RunAsync("dotnet", [ProxyLab.ProxyselDll, "cache", "flush"], ProxyLab.Timeout);
        Assert.That(flushed.ExitCode, Is.Zero, flushed.StdErr);
        await WaitForNoElementsAsync(lab.Topology.Proxy, set);
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"v6={v6}:\n{counted}\n{listed}");
        var decisions = ProxyLab.Lines(proxy, "syn ").Where(l => l.Contains("MpCapable", StringComparison.Ordinal)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(decisions, Has.Count.EqualTo(1), "only the first connection's SYN reached the queue");
            Assert.That(decisions[0], Does.EndWith("HoldAndProbe (CacheMiss)"));
            Assert.That(ProxyLab.Counter(proxy, "probes"), Is.EqualTo(1));
            Assert.That(PacketsOf(listed, TwoPathTopology.ServerAddress(v6)), Is.EqualTo(CacheHits), "each later SYN matched the kernel entry once");
            Assert.That(AcceptedByRule(counted, set), Is.EqualTo(CacheHits));
            Assert.That(ProxyLab.Counter(proxy, "kernel_passed"), Is.EqualTo(CacheHits), "the stop line counts what the kernel passed");
            Assert.That(AcceptedByRule(queueChain, set), Is.GreaterThanOrEqualTo(CacheHits),
                $"each later connection's MP_CAPABLE SYN/ACK (and its joins') stayed in the kernel:\n{queueChain}");
        });
    }

    [Test]
    public async Task KnownTcpOnlyServerImplicitMode_LaterSynsInterceptedInTheKernel_RelayedWithoutAQueueTrip()
    {
        await using var lab = await ProxyLab.StartAsync();
        // Long enough for the client's join to reach the holder before the relay ends: a 64 KiB download ended in 2-21 ms,
        // sometimes before the join, and the relay line then read subflows=1 (CI). Paced by nginx, each lasts about a second.
        var sha = lab.WriteFile("small.bin", ProxyLab.PacedBytesPerSecond * 3 / 2);
        const string paced = ProxyLab.Paced + "small.bin";
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync("--set", "Proxy:KernelFastPath=true", "--set", "Proxy:Mode=implicit");

        int warming = await WarmAsync(lab, proxy, sha, "PSEL_TO4", paced);
        for (int i = 0; i < CacheHits; i++)
        {
            await DownloadAsync(lab, false, sha, $"hit{i}", paced);
        }

        var listed = await lab.Topology.Proxy.CheckAsync("ipset", ["list", "PSEL_TO4"], ProxyLab.Timeout);
        await WaitForRelayLinesAsync(proxy, 1 + CacheHits);
        TestContext.Progress.WriteLine(string.Join('\n', ProxyLab.Lines(proxy, "syn ").Concat(ProxyLab.Lines(proxy, "relay "))));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(listed);
        var decisions = ProxyLab.Lines(proxy, "syn ").Where(l => l.Contains("MpCapable", StringComparison.Ordinal)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(decisions, Has.Count.EqualTo(warming), "only the warming connections' SYNs reached the queue");
            Assert.That(PacketsOf(listed, TwoPathTopology.ServerV4), Is.EqualTo(2 * CacheHits), "two rules test the set for each SYN (mark, accept)");
            Assert.That(ProxyLab.Lines(proxy, "relay "), Has.Count.EqualTo(1 + CacheHits), "every intercepted connection relayed, the kernel's too");
            Assert.That(ProxyLab.Lines(proxy, "relay "), Has.All.Contains("subflows=2"),
                "a join arriving before the accept of a kernel-intercepted connection waits for it, as beside a flow record");
            Assert.That(ProxyLab.Counter(proxy, "kernel_intercepted"), Is.EqualTo(CacheHits), "the stop line counts what the kernel intercepted");
            Assert.That(ProxyLab.Counter(proxy, "hook_failures"), Is.Zero);
        });
    }

    [Test]
    public async Task FastPathDaemonKilled_CleanupRemovesEverySetAndRule()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", 64 * 1024);
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync("--set", "Proxy:KernelFastPath=true", "--set", "Proxy:Mode=implicit");
        await WarmAsync(lab, proxy, sha, "PSEL_TO4");

        await proxy.StopAsync(ProxyLab.Timeout, LabNative.SigKill);
        var left = await lab.Topology.Proxy.CheckAsync("ipset", ["list", "-n"], ProxyLab.Timeout);
        Assert.That(left, Does.Contain("PSEL_TO4"), "SIGKILL leaves the sets (and the rules) behind");
        // Fail open meanwhile: the listener is gone, so the kernel does not intercept; the queue has no reader and passes.
        await DownloadAsync(lab, false, sha, "killed");

        var cleanup = await lab.CleanupAsync();
        Assert.That(cleanup.ExitCode, Is.Zero, cleanup.StdErr);
        var sets = await lab.Topology.Proxy.CheckAsync("ipset", ["list", "-n"], ProxyLab.Timeout);
        Assert.That(sets.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.None.StartWith("PSEL_"));
        foreach (var tool in (string[])["iptables-save", "ip6tables-save"])
        {
            Assert.That(await lab.Topology.Proxy.CheckAsync(tool, [], ProxyLab.Timeout), Does.Not.Contain("PSEL"), tool);
        }
    }

    /// <summary>
    /// Downloads until the server is in <paramref name="set"/> (at most 3 times): on a loaded machine the first probe can
    /// time out, which caches Unresolved (pass) instead; the cache is then flushed and the next download probes again.
    /// Returns the downloads it took.
    /// </summary>
    private static async Task<int> WarmAsync(ProxyLab lab, LabProcess proxy, string sha, string set, string path = "small.bin")
    {
        for (int attempt = 1; ; attempt++)
        {
            await DownloadAsync(lab, false, sha, $"warm{attempt}", path);
            try
            {
                await WaitForElementAsync(lab.Topology.Proxy, set, TwoPathTopology.ServerV4, TimeSpan.FromSeconds(5));
                return attempt;
            }
            catch (TimeoutException) when (attempt < 3)
            {
                TestContext.Progress.WriteLine(string.Join('\n', ProxyLab.Lines(proxy, "probe ")));
                var flushed = await lab.Topology.Proxy.RunAsync("dotnet", [ProxyLab.ProxyselDll, "cache", "flush"], ProxyLab.Timeout);
                Assert.That(flushed.ExitCode, Is.Zero, flushed.StdErr);
            }
        }
    }

    private static async Task DownloadAsync(ProxyLab lab, bool v6, string sha, string name, string path = "small.bin")
    {
        var output = Path.Combine(lab.Directory, name + ".out");
        var curl = await lab.CurlAsync(ProxyLab.Url(v6, path), mptcp: true, output);
        Assert.That(curl.ExitCode, Is.Zero, $"{name}: {curl.StdErr}");
        Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha), name);
    }

    /// <summary>The <c>ipset list</c> member line of <paramref name="address"/> once the daemon has written it.</summary>
    internal static async Task<string> WaitForElementAsync(NetNamespace ns, string set, string address, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? ProxyLab.Timeout);
        string listed = "";
        while (DateTime.UtcNow < deadline)
        {
            listed = await ns.CheckAsync("ipset", ["list", set], ProxyLab.Timeout);
            var line = listed.Split('\n').FirstOrDefault(l => l.StartsWith(address + ",tcp:80 ", StringComparison.Ordinal));
            if (line is not null)
            {
                return line;
            }

            await Task.Delay(50);
        }

        var all = await ns.CheckAsync("ipset", ["list"], ProxyLab.Timeout);
        throw new TimeoutException($"no {address} in {set}: {all}");
    }

    private static async Task WaitForNoElementsAsync(NetNamespace ns, string set)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        string listed = "";
        while (DateTime.UtcNow < deadline)
        {
            listed = await ns.CheckAsync("ipset", ["list", set], ProxyLab.Timeout);
            if (listed.Contains("Number of entries: 0", StringComparison.Ordinal))
            {
                return;
            }

            await Task.Delay(50);
        }

        Assert.Fail($"{set} kept entries after the cache was flushed: {listed}");
    }

    private static async Task WaitForRelayLinesAsync(LabProcess proxy, int count)
    {
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (ProxyLab.Lines(proxy, "relay ").Count < count && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }
    }

    private static long PacketsOf(string listed, string address)
    {
        var line = listed.Split('\n').First(l => l.StartsWith(address + ",tcp:80 ", StringComparison.Ordinal));
        return long.Parse(PacketsRegex().Match(line).Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>The packet count of the fast chain's ACCEPT rule matching <paramref name="set"/> (<c>iptables -L -v -x</c>).</summary>
    private static long AcceptedByRule(string counted, string set)
    {
        var line = counted.Split('\n').First(l => l.Contains("ACCEPT", StringComparison.Ordinal) && l.Contains(set, StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], CultureInfo.InvariantCulture);
    }

    [GeneratedRegex(@"timeout (\d+)")]
    private static partial Regex TimeoutRegex();

    [GeneratedRegex(@"packets (\d+)")]
    private static partial Regex PacketsRegex();
}
