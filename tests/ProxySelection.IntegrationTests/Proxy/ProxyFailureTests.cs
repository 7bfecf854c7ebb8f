using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>Issue 4 acceptance: safe fallback — a killed daemon, an unreachable or closed server, a slow server.</summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyFailureTests
{
    [Test]
    public async Task DaemonKilledMidTraffic_NewConnectionsPass_CleanupLeavesNoRule_RestartProxiesAgain()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", 64 * 1024);
        lab.WriteFile("big.bin", 50 * 1024 * 1024);
        await lab.StartNginxAsync();
        var rulesBefore = await RulesAsync(lab);
        var proxy = await lab.StartProxyAsync();

        // Mid-traffic: a slowed download is being relayed when the daemon dies.
        var download = lab.CurlAsync(ProxyLab.Url(false, "big.bin"), mptcp: true, Path.Combine(lab.Directory, "big.out"), TimeSpan.FromSeconds(20), "--limit-rate", "5M");
        await ProxyLab.WaitForLineAsync(proxy, "accepted ", "");
        Assert.That(proxy.Signal(9), Is.True);
        Assert.That(await proxy.WaitForExitAsync(ProxyLab.Timeout), Is.EqualTo(128 + 9));
        var interrupted = await download;
        Assert.That(interrupted.ExitCode, Is.Not.Zero, "the relayed download died with the daemon");

        // Rules still in, nobody on the queue: --queue-bypass lets new SYNs through untouched.
        Assert.That(await RulesAsync(lab), Is.Not.EqualTo(rulesBefore), "the killed daemon left its rules");
        var passed = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, Path.Combine(lab.Directory, "passed.out"));
        Assert.That(passed.ExitCode, Is.Zero, passed.StdErr);
        Assert.That(ProxyLab.Sha256Of(Path.Combine(lab.Directory, "passed.out")), Is.EqualTo(sha));

        var cleanup = await lab.CleanupAsync();
        Assert.That(cleanup.ExitCode, Is.Zero, cleanup.StdErr);
        Assert.That(await RulesAsync(lab), Is.EqualTo(rulesBefore), "cleanup left a rule behind");
        var again = await lab.CleanupAsync();
        Assert.That(again.ExitCode, Is.Zero, "cleanup is idempotent: " + again.StdErr);

        var restarted = await lab.StartProxyAsync();
        var proxied = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, Path.Combine(lab.Directory, "proxied.out"));
        Assert.That(proxied.ExitCode, Is.Zero, proxied.StdErr);
        Assert.That(ProxyLab.Sha256Of(Path.Combine(lab.Directory, "proxied.out")), Is.EqualTo(sha));
        await ProxyLab.WaitForLineAsync(restarted, "relay ", "Completed");
        await restarted.StopAsync(ProxyLab.Timeout);
        Assert.That(await RulesAsync(lab), Is.EqualTo(rulesBefore), "a clean stop removes every rule");
    }

    /// <summary>
    /// Spec §10.6: the server goes away after the cache learnt it is TCP-only. The next connection is intercepted from
    /// the cache, its upstream connect is refused and the client is reset; the entry is removed, so the connection
    /// after it probes again instead of trusting the stale entry.
    /// </summary>
    [Test]
    public async Task UpstreamRefusedAfterCacheHit_EntryRemoved_NextSynProbesAgain()
    {
        await using var lab = await ProxyLab.StartAsync();
        lab.WriteFile("small.bin", 64 * 1024);
        var nginx = await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync();
        var url = ProxyLab.Url(false, "small.bin");

        var learnt = await lab.CurlAsync(url, mptcp: true, Path.Combine(lab.Directory, "1.out"));
        await nginx.StopAsync(ProxyLab.Timeout);
        var refused = await lab.CurlAsync(url, mptcp: true, Path.Combine(lab.Directory, "2.out"), TimeSpan.FromSeconds(8));
        var removed = await ProxyLab.WaitForLineAsync(proxy, "cache ", "entry removed");
        var probedAgain = await lab.CurlAsync(url, mptcp: true, Path.Combine(lab.Directory, "3.out"), TimeSpan.FromSeconds(8));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        var syns = ProxyLab.Lines(proxy, "syn ").Where(l => l.Contains(" MpCapable: ", StringComparison.Ordinal)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(learnt.ExitCode, Is.Zero, learnt.StdErr);
            Assert.That(refused.ExitCode, Is.Not.Zero, "the server is gone");
            Assert.That(probedAgain.ExitCode, Is.Not.Zero, "the server is still gone");
            Assert.That(removed, Does.Contain("the upstream connect failed (Refused)"));
            Assert.That(syns, Has.Count.EqualTo(3));
            Assert.That(syns[0], Does.EndWith("HoldAndProbe (CacheMiss)"));
            Assert.That(syns[1], Does.Contain(": Intercept ("), "intercepted from the cache");
            Assert.That(syns[2], Does.EndWith("HoldAndProbe (CacheMiss)"), "the stale entry was removed");
        });
    }

    /// <summary>
    /// Port closed (nginx not running) and host unreachable (no such neighbour): the client sees exactly what it sees
    /// with no proxy on the path — curl's exit code and message — and never an accepted-then-closed connection.
    /// </summary>
    [TestCase("198.18.3.2")]
    [TestCase("198.18.3.99")]
    public async Task ServerClosedOrUnreachable_ClientSeesWhatItSeesWithoutProxy(string address)
    {
        await using var lab = await ProxyLab.StartAsync();
        var url = $"http://{address}/x";
        var output = Path.Combine(lab.Directory, "x.out");
        var alone = await lab.CurlAsync(url, mptcp: true, output, TimeSpan.FromSeconds(8));

        var proxy = await lab.StartProxyAsync();
        var proxied = await lab.CurlAsync(url, mptcp: true, output, TimeSpan.FromSeconds(8));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"without proxy: {alone.ExitCode} {alone.StdErr.Trim()} | with proxy: {proxied.ExitCode} {proxied.StdErr.Trim()}");

        Assert.Multiple(() =>
        {
            Assert.That(proxied.ExitCode, Is.EqualTo(alone.ExitCode), proxied.StdErr);
            // 52: empty reply, 56: receive failure — what an accepted-then-closed connection looks like.
            Assert.That(proxied.ExitCode, Is.Not.EqualTo(52).And.Not.EqualTo(56));
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.Zero);
            Assert.That(ProxyLab.Counter(proxy, "released"), Is.EqualTo(1), "the held SYN went on untouched");
        });
    }

    /// <summary>
    /// SYN/ACKs delayed 600 ms at the server (this kernel has no netem: an NFQUEUE in the server namespace holds them): the probe times out, the held SYN is released at ~250 ms, and the
    /// client (SYN RTO 1 s) never retransmits it.
    /// </summary>
    [Test]
    public async Task SlowServer_SynReleasedBeforeClientRetransmits_ExactlyOneSynPerConnection()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", 16 * 1024);
        await lab.StartNginxAsync();
        await using var slow = await SynAckDelay.StartAsync(lab.Topology.Server, TimeSpan.FromMilliseconds(600));
        var proxy = await lab.StartProxyAsync();
        var client = await lab.Topology.Client.StartCaptureAsync(TwoPathTopology.ClientPath1, Path.Combine(lab.Directory, "client.pcap"), "tcp port 80");
        var before = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyPath1, Path.Combine(lab.Directory, "path1.pcap"), "tcp port 80 and tcp[tcpflags] & tcp-syn != 0");
        var after = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "uplink.pcap"), "tcp port 80 and tcp[tcpflags] & tcp-syn != 0");

        for (int i = 0; i < 2; i++)
        {
            var output = Path.Combine(lab.Directory, $"small{i}.out");
            var curl = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, output);
            Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        }

        var (path1, uplink) = await Captures.StopBothAsync(before, after);
        var clientSyns = Captures.Segments(await client.StopAsync(), Captures.IsSyn);
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        var ports = clientSyns.Select(s => s.Bytes[0] << 8 | s.Bytes[1]).ToList();
        var inbound = Captures.Segments(path1, Captures.IsSyn);
        var outbound = Captures.Segments(uplink, s => Captures.IsSyn(s) && s.Source == TwoPathTopology.ClientPath1V4);
        var holds = inbound.Zip(outbound, (i, o) => (o.TimestampMicroseconds - i.TimestampMicroseconds) / 1000.0).ToList();
        TestContext.Progress.WriteLine($"client SYNs (source port @ µs): {string.Join(", ", clientSyns.Select(s => $"{s.Bytes[0] << 8 | s.Bytes[1]} @ {s.TimestampMicroseconds}"))}");
        TestContext.Progress.WriteLine($"SYN hold (path1 in -> uplink out): {string.Join(", ", holds.Select(h => $"{h:F1} ms"))}; engine max_hold_ms={ProxyLab.Counter(proxy, "max_hold_ms")}");
        Assert.That(ports, Has.Count.EqualTo(2), "one SYN per connection, no retransmission");
        Assert.That(ports.Distinct().Count(), Is.EqualTo(2));
        Assert.That(outbound.Select(s => s.Identity), Is.EqualTo(inbound.Select(s => s.Identity)), "the released SYNs went on untouched");
        Assert.Multiple(() =>
        {
            Assert.That(holds[0], Is.InRange(200.0, 450.0), "held for the probe timeout");
            Assert.That(holds[1], Is.LessThan(50.0), "the cache (probe failed recently) passes at once");
            Assert.That(ProxyLab.Counter(proxy, "probes"), Is.EqualTo(1));
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.Zero);
            Assert.That(slow.Delayed, Is.GreaterThanOrEqualTo(3), "the probe's and both connections' SYN/ACKs were delayed");
        });
    }

    /// <summary>
    /// SYN/ACKs delayed 150 ms: the probe is answered within its timeout, so the SYN is held that long and then
    /// intercepted; the client still sends exactly one SYN, and gets its SYN/ACK from the proxy at once.
    /// </summary>
    [Test]
    public async Task SlowButAnsweringServer_SynHeldUntilProbeAnswer_InterceptedWithOneSyn()
    {
        await using var lab = await ProxyLab.StartAsync();
        var sha = lab.WriteFile("small.bin", 16 * 1024);
        await lab.StartNginxAsync();
        await using var slow = await SynAckDelay.StartAsync(lab.Topology.Server, TimeSpan.FromMilliseconds(150));
        var proxy = await lab.StartProxyAsync();
        var before = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyPath1, Path.Combine(lab.Directory, "path1.pcap"), "tcp port 80 and tcp[tcpflags] & tcp-syn != 0");

        var output = Path.Combine(lab.Directory, "small.out");
        var curl = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, output);
        Assert.That(curl.ExitCode, Is.Zero, curl.StdErr);
        Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));

        // The relay line comes after the connection closed, so every SYN of it has crossed the capture point.
        await ProxyLab.WaitForLineAsync(proxy, "relay ", "Completed");
        var handshake = Captures.Segments(await before.StopAsync(TimeSpan.FromSeconds(1)), s => s.Source == TwoPathTopology.ClientPath1V4 || s.Destination == TwoPathTopology.ClientPath1V4);
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);
        var syns = handshake.Where(Captures.IsSyn).ToList();
        var synAcks = handshake.Where(Captures.IsSynAck).ToList();
        Assert.That(syns, Has.Count.EqualTo(1), "no retransmitted SYN");
        Assert.That(synAcks, Has.Count.EqualTo(1));
        var hold = (synAcks[0].TimestampMicroseconds - syns[0].TimestampMicroseconds) / 1000.0;
        TestContext.Progress.WriteLine($"client SYN -> proxy's SYN/ACK: {hold:F1} ms; engine max_hold_ms={ProxyLab.Counter(proxy, "max_hold_ms")}");
        Assert.Multiple(() =>
        {
            Assert.That(hold, Is.InRange(140.0, 400.0), "held until the probe's answer, released well before the 1 s RTO");
            Assert.That(ProxyLab.Counter(proxy, "probes_adopted"), Is.EqualTo(1));
            Assert.That(ProxyLab.Counter(proxy, "intercepted"), Is.EqualTo(1));
            Assert.That(slow.Delayed, Is.EqualTo(1), "only the probe met the slow server's SYN/ACK; the client's came from the proxy");
        });
    }

    /// <summary>iptables-save and ip6tables-save without comments and counters, ip rule and the routing table 100, both families.</summary>
    private static async Task<string> RulesAsync(ProxyLab lab)
    {
        var ns = lab.Topology.Proxy;
        var parts = new List<string>();
        foreach (var tool in new[] { "iptables-save", "ip6tables-save" })
        {
            var saved = await ns.CheckAsync(tool, [], ProxyLab.Timeout);
            parts.AddRange(saved.Split('\n').Where(l => !l.StartsWith('#')).Select(l => l.StartsWith(':') ? l.Split(' ')[0] + " " + l.Split(' ')[1] : l));
        }

        foreach (var family in new[] { "-4", "-6" })
        {
            parts.Add(await ns.IpAsync(family, "rule", "show"));
            parts.Add(await ns.IpAsync(family, "route", "show", "table", "all"));
        }

        return string.Join('\n', parts);
    }
}
