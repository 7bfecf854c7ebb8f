using System.Net;
using ProxySelection.Lab;
using ProxySelection.Negotiation;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Issue 13 item 2 on the real kernel (<c>Proxy:KernelSigning</c> with <c>Proxy:KernelFastPath</c>, explicit mode): once
/// the cache knows the origin as TCP-only, a connection to it never reaches user space before its accept. The kernel
/// intercepts its SYN, writes P1's Claim on the SYN/ACK to the client and on the upstream leg's SYN, and an upgrade proxy
/// beyond (P2) verifies that Claim and passes the leg. Chain: MPTCP client — P1 (downgrade) — P2 (upgrade) — TCP-only origin.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class KernelSigningTests
{
    private const int CacheHits = 2;
    private static readonly byte[] Key = Convert.FromHexString("303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f");

    [Test]
    public async Task CachedTcpOnlyOrigin_KernelInterceptsAndSignsClaimOnSynAckAndLeg_NoQueueTrip()
    {
        await using var lab = await ProxyLab.StartAsync();
        var p2Namespace = await ProxyChainTests.BuildChainAsync(lab);
        var sha = ProxyLab.Sha256Of(Path.Combine(lab.Directory, "www", "small.bin"));
        var keyFile = Path.Combine(lab.Directory, "operator.key");
        await File.WriteAllTextAsync(keyFile, Convert.ToHexString(Key));
        var p1 = await lab.StartProxyAsync("--key-file", keyFile, "--proxy-id", "1", "--set", "Proxy:KernelSigning=true", "--set", "Proxy:KernelFastPath=true");
        var p2 = await ProxyLab.StartProxyInAsync(p2Namespace, "--key-file", keyFile, "--proxy-id", "2", "--role", "upgrade");
        Assert.That(p1.Output, Does.Contain("kernel signing on"), "the kernel took the signer");
        const string SynAcks = "tcp port 80 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)";
        const string Syns = "tcp port 80 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn";
        var toClient = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyPath1, Path.Combine(lab.Directory, "p1-path1.pcap"), SynAcks);
        var leaving = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "p1-up.pcap"), Syns);

        // The first connection probes and learns TCP-only (its leg is the adopted probe, which carried Probe).
        var first = await lab.CurlAsync($"http://{ProxyChainTests.Origin}/small.bin", mptcp: true, Path.Combine(lab.Directory, "first.out"), null, "--range", "0-65535");
        Assert.That(first.ExitCode, Is.Zero, first.StdErr);
        await FastPathCacheTests.WaitForElementAsync(lab.Topology.Proxy, "PSEL_TO4", ProxyChainTests.Origin);
        for (int i = 0; i < CacheHits; i++)
        {
            var output = Path.Combine(lab.Directory, $"hit{i}.out");
            var hit = await lab.CurlAsync($"http://{ProxyChainTests.Origin}/small.bin", mptcp: true, output, TimeSpan.FromSeconds(120));
            Assert.That(hit.ExitCode, Is.Zero, hit.StdErr);
            Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));
        }

        var (atClientSide, atUplink) = await Captures.StopBothAsync(toClient, leaving);
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (ProxyLab.Lines(p1, "relay ").Count < 1 + CacheHits && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        await p1.StopAsync(ProxyLab.Timeout);
        await p2.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"P1:\n{p1.Output}\nP2:\n{p2.Output}");

        var ring = new MpProxyKeyRing(1, Key);
        var claim = new ProxySignal(SignalKind.Claim, 1, 8);
        var synAcks = Captures.Segments(atClientSide).Where(ProxyUpstreamClaimTests.HasMpCapable).Select(s => ReadSynAck(s, ring)).ToList();
        var legs = Captures.Segments(atUplink).Where(s => !ProxyUpstreamClaimTests.HasMpCapable(s)).Select(s => ProxyUpstreamClaimTests.Read(s, ring)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(synAcks, Has.Count.GreaterThanOrEqualTo(1 + CacheHits), "every connection's SYN/ACK to the client was captured");
            Assert.That(synAcks, Has.All.EqualTo(claim), "the kernel's Claim of P1 (short form) verifies under the operator key on every SYN/ACK");
            Assert.That(legs, Has.Count.GreaterThanOrEqualTo(CacheHits), "each cache hit opened its own leg");
            Assert.That(legs, Has.All.EqualTo(claim), "the kernel's Claim (long form) verifies on every leg SYN");
            Assert.That(ProxyLab.Lines(p1, "syn ").Where(l => l.Contains("MpCapable", StringComparison.Ordinal)).Select(l => l[(l.LastIndexOf(':') + 2)..]),
                Is.EqualTo(new[] { "HoldAndProbe (CacheMiss)" }), "only the first SYN reached the queue");
            Assert.That(ProxyLab.Counter(p1, "kernel_intercepted"), Is.EqualTo(CacheHits));
            Assert.That(ProxyLab.Counter(p1, "kernel_signed_synacks"), Is.GreaterThanOrEqualTo(1 + CacheHits));
            Assert.That(ProxyLab.Counter(p1, "kernel_signed_syns"), Is.GreaterThanOrEqualTo(CacheHits));
            Assert.That(ProxyLab.Counter(p1, "claims_added") + ProxyLab.Counter(p1, "upstream_signals_added"), Is.Zero, "nothing was signed through the egress queue");
            Assert.That(ProxyLab.Lines(p1, "relay "), Has.Count.EqualTo(1 + CacheHits).And.All.Contains("Completed"));
            Assert.That(ProxyLab.Lines(p2, "syn ").Count(l => l.EndsWith("Pass (HeldUpstream)", StringComparison.Ordinal)), Is.GreaterThanOrEqualTo(CacheHits),
                "the upgrade proxy verified each kernel-signed Claim and let the leg go (spec §7.2 step 2)");
            Assert.That(ProxyLab.Counter(p2, "intercepted"), Is.Zero);
        });
    }

    [Test]
    public async Task KernelSigningDaemonKilled_NoProgramLeftAndCleanupRemovesItsCgroup()
    {
        await using var lab = await ProxyLab.StartAsync();
        await lab.StartNginxAsync();
        var proxy = await lab.StartProxyAsync("--set", "Proxy:KernelSigning=true", "--set", "Proxy:KernelFastPath=true");
        var cgroup = CgroupOf(proxy.Output);
        Assert.That(Directory.Exists(cgroup), Is.True, $"the signer's cgroup {cgroup}");

        await proxy.StopAsync(ProxyLab.Timeout, LabNative.SigKill);
        Assert.That(ProxySelection.Interception.Bpf.KernelSigner.AttachedPrograms(cgroup), Is.Zero, "the program went with the process (its bpf_link)");
        var cleanup = await lab.CleanupAsync();
        Assert.That(cleanup.ExitCode, Is.Zero, cleanup.StdErr);
        Assert.That(Directory.Exists(cgroup), Is.False, "cleanup removed the empty cgroup");
        Assert.That(cleanup.StdOut, Does.Contain(Path.GetFileName(cgroup)));
    }

    /// <summary>
    /// An interface that comes up after the daemon started (an LTE link, a PPP session) gets the egress relabelling within
    /// about a second: an MPTCP SYN/ACK leaving by it carries the kernel's Claim as MP_PROXY (kind 30), not the placeholder.
    /// </summary>
    [Test]
    public async Task InterfaceAddedAfterStart_MptcpSynAckLeavingByIt_CarriesTheRelabelledClaim()
    {
        await using var lab = await ProxyLab.StartAsync();
        await lab.StartNginxAsync();
        var keyFile = Path.Combine(lab.Directory, "operator.key");
        await File.WriteAllTextAsync(keyFile, Convert.ToHexString(Key));
        var proxy = await lab.StartProxyAsync("--key-file", keyFile, "--proxy-id", "1", "--set", "Proxy:KernelSigning=true", "--set", "Proxy:KernelFastPath=true");
        Assert.That(proxy.Output, Does.Contain("kernel signing on"), "the kernel took the signer");

        // A new link, client "clte" to proxy "lte"; the client reaches the server through it from now on.
        await lab.Lab.ConnectAsync(lab.Topology.Proxy, "lte", lab.Topology.Client, "clte");
        await lab.Topology.Proxy.AddAddressAsync("lte", "198.18.9.1/24");
        await lab.Topology.Client.AddAddressAsync("clte", "198.18.9.2/24");
        await lab.Topology.Client.IpAsync("route", "replace", TwoPathTopology.ServerV4 + "/32", "via", "198.18.9.1", "dev", "clte");
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (!proxy.Output.Contains("leaving by lte", StringComparison.Ordinal) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.That(proxy.Output, Does.Contain("relabelling MPTCP segments leaving by lte"), "the daemon followed the new interface");
        var capture = await lab.Topology.Proxy.StartCaptureAsync("lte", Path.Combine(lab.Directory, "lte.pcap"),
            "tcp port 80 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)");
        var download = await lab.CurlAsync(ProxyLab.Url(false, "small.bin"), mptcp: true, Path.Combine(lab.Directory, "lte.out"), null,
            "--interface", "198.18.9.2");
        var packets = await capture.StopAsync();
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        var ring = new MpProxyKeyRing(1, Key);
        var synAcks = Captures.Segments(packets).Where(ProxyUpstreamClaimTests.HasMpCapable).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(download.ExitCode, Is.Zero, download.StdErr);
            Assert.That(synAcks, Has.Count.EqualTo(1), "the connection's MP_CAPABLE SYN/ACK left by the new interface");
            Assert.That(synAcks.Select(s => ReadSynAck(s, ring)), Has.All.EqualTo(new ProxySignal(SignalKind.Claim, 1, 8)),
                "the kernel's Claim, relabelled to kind 30, verifies under the operator key");
            Assert.That(ProxyLab.Counter(proxy, "kernel_signed_synacks"), Is.GreaterThanOrEqualTo(1));
        });
    }

    private static string CgroupOf(string output)
    {
        const string Marker = "(cgroup ";
        int at = output.IndexOf(Marker, StringComparison.Ordinal);
        Assert.That(at, Is.GreaterThanOrEqualTo(0), output);
        int start = at + Marker.Length;
        string path = output[start..output.IndexOf(';', start)];
        // Under `ip netns exec` (/sys remounted) the daemon mounted the hierarchy privately; the same cgroup is under this
        // process's view of it.
        string host = File.ReadLines("/proc/self/mountinfo").Select(l => (Line: l, Dash: l.IndexOf(" - ", StringComparison.Ordinal)))
            .Where(m => m.Dash > 0 && m.Line.AsSpan(m.Dash + 3).StartsWith("cgroup2 "))
            .Select(m => m.Line.Split(' ')[4]).First();
        return path.Replace(ProxySelection.Interception.Bpf.KernelSigner.PrivateCgroup2Mount, host, StringComparison.Ordinal);
    }

    private static ProxySignal? ReadSynAck(CapturedSegment segment, MpProxyKeyRing ring)
    {
        if (TcpHeader.TryParse(segment.Bytes, out var tcp) != WireError.None)
        {
            return null;
        }

        // The flow as its SYN named it: the client is the SYN/ACK's destination.
        var flow = MpProxyFlow.ForSyn(IPAddress.Parse(segment.Destination).GetAddressBytes(), IPAddress.Parse(segment.Source).GetAddressBytes(),
            tcp.DestinationPort, tcp.SourcePort, tcp.AcknowledgmentNumber - 1).WithSynAck(tcp.SequenceNumber);
        var signal = SignalCodec.Read(tcp.Options, ring, flow, out var check);
        return check == SignalCheck.Verified ? signal : null;
    }
}
