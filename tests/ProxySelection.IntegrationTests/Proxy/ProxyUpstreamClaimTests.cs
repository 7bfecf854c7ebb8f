using System.Net;
using ProxySelection.Lab;
using ProxySelection.Negotiation;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// Spec §7.3.3 on the real kernel: a downgrade holder's upstream leg opened for a connection intercepted from the cache
/// carries MP_PROXY Claim on its SYN, so an upgrade proxy beyond passes it (§7.2 step 2) instead of upgrading a
/// connection that was just terminated. Chain: MPTCP client — P1 (downgrade) — P2 (upgrade) — TCP-only origin.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class ProxyUpstreamClaimTests
{
    private static readonly byte[] Key = Convert.FromHexString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");

    [Test]
    public async Task CachedDestination_HolderUpstreamSynCarriesVerifiedClaim_UpgradeProxyBeyondPassesItAsHeldUpstream()
    {
        await using var lab = await ProxyLab.StartAsync();
        var p2Namespace = await ProxyChainTests.BuildChainAsync(lab);
        var sha = ProxyLab.Sha256Of(Path.Combine(lab.Directory, "www", "small.bin"));
        var keyFile = Path.Combine(lab.Directory, "operator.key");
        await File.WriteAllTextAsync(keyFile, Convert.ToHexString(Key));
        var p1 = await lab.StartProxyAsync("--key-file", keyFile, "--proxy-id", "1");
        var p2 = await ProxyLab.StartProxyInAsync(p2Namespace, "--key-file", keyFile, "--proxy-id", "2", "--role", "upgrade");
        const string Syns = "tcp port 80 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn";
        var leaving = await lab.Topology.Proxy.StartCaptureAsync(TwoPathTopology.ProxyUp, Path.Combine(lab.Directory, "p1-up.pcap"), Syns);
        var beyond = await p2Namespace.StartCaptureAsync("origin", Path.Combine(lab.Directory, "p2-origin.pcap"), Syns);

        // First connection: P1 probes, learns TCP-only and adopts the probe (which carried Probe, not Claim).
        var first = await lab.CurlAsync($"http://{ProxyChainTests.Origin}/small.bin", mptcp: true, Path.Combine(lab.Directory, "first.out"), null, "--range", "0-65535");
        Assert.That(first.ExitCode, Is.Zero, first.StdErr);
        // Second connection: a cache hit at P1, whose relay opens a new TCP leg to the origin.
        var output = Path.Combine(lab.Directory, "second.out");
        var second = await lab.CurlAsync($"http://{ProxyChainTests.Origin}/small.bin", mptcp: true, output, TimeSpan.FromSeconds(120));
        Assert.That(second.ExitCode, Is.Zero, second.StdErr);
        Assert.That(ProxyLab.Sha256Of(output), Is.EqualTo(sha));

        var (atP1, atOrigin) = await Captures.StopBothAsync(leaving, beyond);
        var deadline = DateTime.UtcNow + ProxyLab.Timeout;
        while (ProxyLab.Lines(p1, "relay ").Count < 2 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        await p1.StopAsync(ProxyLab.Timeout);
        await p2.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine($"P1:\n{p1.Output}\nP2:\n{p2.Output}");

        var ring = new MpProxyKeyRing(1, Key);
        var leftP1 = Captures.Segments(atP1).Select(s => (Segment: s, Signal: Read(s, ring))).ToList();
        var legs = leftP1.Where(s => !HasMpCapable(s.Segment)).ToList();
        var probes = leftP1.Where(s => HasMpCapable(s.Segment)).ToList();
        var reachedOrigin = Captures.Segments(atOrigin).Select(s => Convert.ToHexString(s.Bytes)).ToHashSet();
        Assert.Multiple(() =>
        {
            Assert.That(probes.Select(p => p.Signal?.Kind).Distinct(), Is.EqualTo(new SignalKind?[] { SignalKind.Probe }), "the first connection's probe");
            Assert.That(legs, Is.Not.Empty, "the second connection's upstream leg left P1");
            Assert.That(legs.Select(l => l.Signal), Has.All.EqualTo(new ProxySignal(SignalKind.Claim, 1, 8)), "a verified Claim of P1 (id 1, priority 8) on every leg SYN");
            Assert.That(legs.Select(l => l.Segment.Bytes.Length), Has.All.LessThanOrEqualTo(TcpHeader.MaxLength));
            Assert.That(legs.Select(l => Convert.ToHexString(l.Segment.Bytes)), Is.SubsetOf(reachedOrigin), "P2 passed the SYN unchanged");
            Assert.That(ProxyLab.Lines(p1, "syn ").Where(l => l.Contains("MpCapable", StringComparison.Ordinal)).Select(l => l[(l.LastIndexOf(':') + 2)..]),
                Is.EqualTo(new[] { "HoldAndProbe (CacheMiss)", "Intercept (ServerTcpOnly)" }));
            Assert.That(ProxyLab.Counter(p1, "upstream_signals_added"), Is.GreaterThanOrEqualTo(1));
            Assert.That(ProxyLab.Counter(p1, "egress_no_room"), Is.Zero);
            Assert.That(ProxyLab.Lines(p1, "relay "), Has.Count.EqualTo(2).And.All.Contains("Completed"));
            // Per SYN (a retransmitted leg SYN is signed and passed again); the captures may miss one, the counters do not.
            Assert.That(ProxyLab.Lines(p2, "syn ").Count(l => l.EndsWith("Pass (HeldUpstream)", StringComparison.Ordinal)),
                Is.EqualTo(ProxyLab.Counter(p1, "upstream_signals_added")), "the upgrade proxy saw each verified Claim and let the leg go (spec §7.2 step 2)");
            Assert.That(ProxyLab.Counter(p2, "probes"), Is.Zero, "P2 never tried to upgrade the proxied connection");
            Assert.That(ProxyLab.Counter(p2, "intercepted"), Is.Zero);
        });
    }

    internal static ProxySignal? Read(CapturedSegment segment, MpProxyKeyRing ring)
    {
        if (TcpHeader.TryParse(segment.Bytes, out var tcp) != WireError.None)
        {
            return null;
        }

        var flow = MpProxyFlow.ForSyn(IPAddress.Parse(segment.Source).GetAddressBytes(), IPAddress.Parse(segment.Destination).GetAddressBytes(),
            tcp.SourcePort, tcp.DestinationPort, tcp.SequenceNumber);
        var signal = SignalCodec.Read(tcp.Options, ring, flow, out var check);
        return check == SignalCheck.Verified ? signal : null;
    }

    internal static bool HasMpCapable(CapturedSegment segment)
    {
        if (TcpHeader.TryParse(segment.Bytes, out var tcp) != WireError.None)
        {
            return false;
        }

        foreach (var option in new TcpOptionReader(tcp.Options))
        {
            if (option.Kind == TcpOptionKind.Mptcp && MptcpOption.TryPeekSubtype(option.Slice(tcp.Options), out var subtype) == WireError.None
                && subtype == MptcpSubtype.MpCapable)
            {
                return true;
            }
        }

        return false;
    }
}
