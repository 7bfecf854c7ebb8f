using System.Globalization;
using System.Net;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Issue 12, first finding: spoofed MPTCP SYNs toward a server the cache knows TCP-only fill the transparent listener's
/// SYN queue; the kernel answers the next clients with SYN cookies and keeps no request socket for them. Their
/// completing ACK must still reach the listener (the ruleset's handshake set), not go on to the real server, which
/// resets it.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class FastPathSynCookieTests
{
    private const int SpoofedSyns = 400;
    private const int Downloads = 5;

    [TestCase(false)]
    [TestCase(true)]
    public async Task SpoofedFloodOverflowsTheListenersSynQueue_LegitimateMptcpDownloadsStillSucceed(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("file.bin", 1024 * 1024);
        await lab.StartNginxAsync();
        // A small SYN queue (listen's backlog is capped by somaxconn, per namespace): a few hundred spoofed SYNs fill it.
        await lab.Topology.Proxy.SysctlAsync(("net.core.somaxconn", "16"));
        var proxy = await lab.StartProxyAsync();

        // Warm the cache: the first connection probes and learns the server is TCP-only.
        var first = await lab.CurlAsync(ProxyLab.Url(v6, "file.bin"), mptcp: true, Path.Combine(lab.Directory, "first.out"));
        Assert.That(first.ExitCode, Is.Zero, first.StdErr);

        await SendSpoofedSynsAsync(lab.Topology.Client, v6);
        var before = await NetstatAsync(lab.Topology.Proxy);
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (before["TcpExtSyncookiesSent"] == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
            before = await NetstatAsync(lab.Topology.Proxy);
        }

        Assert.That(before["TcpExtSyncookiesSent"], Is.Positive, "the flood filled the listener's SYN queue");
        var results = new List<string>();
        for (int i = 0; i < Downloads; i++)
        {
            var output = Path.Combine(lab.Directory, $"download{i}.out");
            var curl = await lab.CurlAsync(ProxyLab.Url(v6, "file.bin"), mptcp: true, output, TimeSpan.FromSeconds(20));
            results.Add($"{curl.ExitCode} {curl.StdOut} {curl.StdErr.Trim()}");
            Assert.That(curl.ExitCode, Is.Zero, string.Join('\n', results));
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        }

        var after = await NetstatAsync(lab.Topology.Proxy);
        TestContext.Progress.WriteLine($"v6={v6}: cookies sent {after["TcpExtSyncookiesSent"]}, received {after["TcpExtSyncookiesRecv"] - before["TcpExtSyncookiesRecv"]} "
            + $"during the downloads, failed {after["TcpExtSyncookiesFailed"]}; downloads: {string.Join(" | ", results)}");
        Assert.That(after["TcpExtSyncookiesRecv"] - before["TcpExtSyncookiesRecv"], Is.GreaterThanOrEqualTo(Downloads),
            "every download's handshake completed through a SYN cookie (the queue stayed full)");
        await proxy.StopAsync(ProxyLab.Timeout);
        Assert.That(ProxyLab.Counter(proxy, "hook_failures"), Is.Zero);
    }

    /// <summary>
    /// <see cref="SpoofedSyns"/> MPTCP SYNs (MP_CAPABLE v1) to the server's port 80 from addresses on the client's first
    /// path that no host answers for (the upper half of its /24, or 2001:db8:1::1000/116), at 400/s: they stay half-open
    /// in the proxy's listener.
    /// </summary>
    private static async Task SendSpoofedSynsAsync(NetNamespace client, bool v6)
    {
        var server = IPAddress.Parse(TwoPathTopology.ServerAddress(v6));
        var spoofed = HostileSegment.MpCapableSyn(IPAddress.Parse(v6 ? "2001:db8:1::1000" : "198.18.1.128"), server) with
        {
            SourcePrefixLength = v6 ? 116 : 25,
            SourcePortRange = (20000, 60000),
        };
        var result = await SegmentGenerator.RunAsync(client, spoofed, new GeneratorLimits(400, SpoofedSyns, TimeSpan.FromSeconds(10)), seed: 12);
        Assert.That(result.Sent, Is.EqualTo(SpoofedSyns), result.ToString());
    }

    /// <summary>The namespace's absolute SNMP/netstat counters (nstat -a, history untouched), zeros included.</summary>
    private static async Task<IReadOnlyDictionary<string, long>> NetstatAsync(NetNamespace ns)
    {
        var text = await ns.CheckAsync("nstat", ["-asz"], ProxyLab.Timeout);
        var counters = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
            {
                counters[parts[0]] = value;
            }
        }

        return counters;
    }
}
