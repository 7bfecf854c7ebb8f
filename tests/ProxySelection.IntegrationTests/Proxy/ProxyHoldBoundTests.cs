using System.Net;
using ProxySelection.Lab;
using ProxySelection.Lab.Hostile;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Issue 12: holds stay bounded under a cache-miss flood and overload passes untouched. The goal is the hold limit (the
/// probe timeout, 250 ms); measured at load 21 on 2 vCPU (five engineers building) the engine got ~1,500 packets a second
/// and its own timers and thread ran late: p99 282 ms, max 444 ms by capture (before the bound: p99 416 ms, max 1,121 ms
/// with a 1,536-packet queue). What this test asserts holds at any load: no SYN waits anywhere near the client's 1 s SYN
/// RTO (a client that loses two MP_CAPABLE SYNs disables MPTCP), and overload is passed, not queued.
/// MP_CAPABLE SYNs from spoofed sources (many /24s, so the per-source probe limit does not pass them all) to distinct
/// destinations no one answers (random in 198.19.0.0/16, routed through the proxy into the server namespace, which drops them):
/// every probe runs to its timeout, the worst case for holds. Hold times are measured by capture, proxy in to proxy out.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyHoldBoundTests
{
    private const int Rate = 20_000;
    private static readonly TimeSpan FloodTime = TimeSpan.FromSeconds(3);

    [Test]
    public async Task MissFlood_HoldsStayFarBelowTheSynRto_OverloadPassesUntouched()
    {
        await using var lab = await ProxyLab.StartAsync();
        var t = lab.Topology;
        await t.Client.AddRouteAsync("198.19.0.0/16", TwoPathTopology.ProxyPath1V4);
        await t.Proxy.AddRouteAsync("198.19.0.0/16", TwoPathTopology.ServerV4);
        await t.Proxy.SysctlAsync(("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.path1.rp_filter", "0"));
        var proxy = await lab.StartProxyAsync("--set", "Proxy:ProbeTimeout=250ms");
        var inbound = await t.Proxy.StartCaptureAsync(TwoPathTopology.ProxyPath1, Path.Combine(lab.Directory, "in.pcap"), "tcp dst port 80 and tcp[tcpflags] == tcp-syn");
        var outbound = await t.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "out.pcap"), "tcp dst port 80 and tcp[tcpflags] == tcp-syn and not src host 198.18.3.1");

        // Sources over 128 /24s of 198.18.128.0/17, destinations random in 198.19.0.0/16 (about two thirds distinct).
        var flood = HostileSegment.MpCapableSyn(IPAddress.Parse("198.18.128.0"), IPAddress.Parse("198.19.0.0")) with
        {
            SourcePrefixLength = 17,
            DestinationPrefixLength = 16,
        };
        var result = await SegmentGenerator.RunAsync(t.Client, flood,
            new GeneratorLimits(Rate, (long)(Rate * FloodTime.TotalSeconds), FloodTime + TimeSpan.FromSeconds(2)));
        var (inPackets, outPackets) = await Captures.StopBothAsync(inbound, outbound);
        await proxy.StopAsync(ProxyLab.Timeout);
        var load = File.ReadAllText("/proc/loadavg").Trim();

        var arrived = new Dictionary<string, long>();
        foreach (var s in Captures.Segments(inPackets))
        {
            arrived.TryAdd(s.Identity, s.TimestampMicroseconds);
        }

        var holds = Captures.Segments(outPackets).Where(s => arrived.ContainsKey(s.Identity))
            .Select(s => (s.TimestampMicroseconds - arrived[s.Identity]) / 1000.0).Order().ToList();
        double P(double q) => holds[Math.Min(holds.Count - 1, (int)(q * holds.Count))];
        TestContext.Progress.WriteLine(
            $"flood: {result} ({Rate}/s target); matched in->out {holds.Count}; hold p50 {P(0.5):F1} ms, " +
            $"p99 {P(0.99):F1} ms, max {holds[^1]:F1} ms; held {ProxyLab.Counter(proxy, "held")}, overload_passed {ProxyLab.Counter(proxy, "overload_passed")}, " +
            $"holds_overdue {ProxyLab.Counter(proxy, "holds_overdue")}, passed {ProxyLab.Counter(proxy, "passed")}, engine max_hold_us " +
            $"{ProxyLab.Counter(proxy, "max_hold_us")}; loadavg {load}");

        Assert.Multiple(() =>
        {
            Assert.That(holds, Has.Count.GreaterThan(1000), "enough SYNs seen going in and out to measure (tcpdump loses some under load)");
            Assert.That(ProxyLab.Counter(proxy, "held"), Is.GreaterThan(0), "the flood did hold SYNs");
            Assert.That(holds[^1], Is.LessThan(600.0), "no SYN near the client's 1 s SYN RTO");
            Assert.That(ProxyLab.Counter(proxy, "overload_passed") + ProxyLab.Counter(proxy, "holds_overdue"), Is.GreaterThan(0),
                "the flood exceeded what the proxy holds, and the excess passed");
        });
    }
}
