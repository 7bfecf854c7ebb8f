using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>Issue 4 acceptance: what the proxy must leave alone, proven with captures on both sides of it.</summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyPassThroughTests
{
    // Small: a burst of a few hundred segments in a millisecond overruns tcpdump's buffer and a capture misses some.
    private const int CapturedSize = 16 * 1024;

    [TestCase(false)]
    [TestCase(true)]
    public async Task PlainTcpClientToTcpServer_PassesUntouchedWithoutBeingQueued_CapturesBeforeAndAfterProxyCarrySameSegments(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", CapturedSize);
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync();
        var before = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyPath1, Path.Combine(lab.Directory, "path1.pcap"), "tcp port 80");
        var after = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "uplink.pcap"), "tcp port 80");
        var output = Path.Combine(lab.Directory, "small.out");

        var curl = await lab.CurlAsync(ProxyLab.Url(v6, "small.bin"), mptcp: false, output);

        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        var (first, second) = await Captures.StopBothAsync(before, after);
        var one = Captures.Segments(first);
        var two = Captures.Segments(second);
        Captures.AssertSameSegments(one, two, v6 ? TwoPathTopology.ClientPath1V6 : TwoPathTopology.ClientPath1V4, Captures.ReportedLoss(before) + Captures.ReportedLoss(after));
        // Then an MPTCP client through the same rules: its SYN is still queued and decided.
        var mptcpOutput = Path.Combine(lab.Directory, "small-mptcp.out");
        var mptcpCurl = await lab.CurlAsync(ProxyLab.Url(v6, "small.bin"), mptcp: true, mptcpOutput);
        await proxy.StopAsync(ProxyLab.Timeout);
        var decisions = ProxyLab.Lines(proxy, "syn ");
        Assert.Multiple(() =>
        {
            Assert.That(mptcpCurl.ExitCode, Is.Zero, mptcpCurl.StdErr);
            Assert.That(decisions, Has.None.Contains(" Tcp: "), "a downgrading proxy's queue skips SYNs without an MPTCP option");
            Assert.That(decisions, Has.One.Contains(" MpCapable: HoldAndProbe (CacheMiss)"), "the MPTCP SYN was queued and decided");
            Assert.That(ProxyLab.Counter(proxy, "syns"), Is.EqualTo(decisions.Count), "every queued SYN is the MPTCP connection's (joins included)");
            Assert.That(ProxyLab.Counter(proxy, "synacks"), Is.Zero,
                "SYN/ACKs without an MPTCP option skip the queue too: the plain connection's and the TCP-only server's answer to the probe");
            Assert.That(ProxyLab.Counter(proxy, "passed"), Is.Zero);
            Assert.That(ProxyLab.Counter(proxy, "probes"), Is.EqualTo(1), "only the MPTCP connection probed");
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.EqualTo(1), "only the MPTCP connection was intercepted");
        });
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task MptcpClientToMptcpServer_ProxyStepsAsideUntouched_NextConnectionSkipsProbe(bool v6)
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", CapturedSize);
        await lab.StartNginxAsync(mptcp: true);
        var proxy = await lab.StartProxyAsync();
        var client = v6 ? TwoPathTopology.ClientPath1V6 : TwoPathTopology.ClientPath1V4;
        var before = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyPath1, Path.Combine(lab.Directory, "path1.pcap"), "tcp port 80");
        var after = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "uplink.pcap"), "tcp port 80");

        for (int i = 0; i < 2; i++)
        {
            var output = Path.Combine(lab.Directory, $"small{i}.out");
            var curl = await lab.CurlAsync(ProxyLab.Url(v6, "small.bin"), mptcp: true, output);
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        }

        // Only the first subflow crosses path1; the join subflows take path2.
        var (first, second) = await Captures.StopBothAsync(before, after);
        var one = Captures.Segments(first);
        var two = Captures.Segments(second, s => s.Source == client || s.Destination == client);
        var handshake = one.Concat(two).Where(s => Captures.IsSyn(s) || Captures.IsSynAck(s)).Select(s => s.Identity).Distinct().ToList();
        Assert.That(handshake.Count(h => h.Contains(">" + TwoPathTopology.ServerAddress(v6) + " ", StringComparison.Ordinal)), Is.EqualTo(2), "one SYN per connection, the same on both sides");
        Assert.That(handshake, Has.Count.EqualTo(4), "one SYN/ACK per connection, the same on both sides");
        Captures.AssertSameSegments(one, two, client, Captures.ReportedLoss(before) + Captures.ReportedLoss(after));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);
        var decisions = ProxyLab.Lines(proxy, "syn ").Where(l => l.Contains("MpCapable", StringComparison.Ordinal)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(decisions, Has.Count.EqualTo(2));
            Assert.That(decisions[0], Does.EndWith("HoldAndProbe (CacheMiss)"));
            Assert.That(decisions[1], Does.EndWith("Pass (ServerSpeaksMptcp)"), "the cache answered");
            Assert.That(ProxyLab.Counter(proxy, "probes"), Is.EqualTo(1), "the second connection skipped the probe");
            Assert.That(ProxyLab.Counter(proxy, "released"), Is.EqualTo(1));
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.Zero);
            Assert.That(ProxyLab.Counter(proxy, "claims_added"), Is.Zero);
        });
    }
}
