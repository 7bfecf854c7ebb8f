namespace ProxySelection.Negotiation.Tests;

/// <summary>Probe rate limits per source prefix and per destination (spec §7.5.1, §13.3).</summary>
public class ProbeRateLimitTests
{
    private static DestinationKey V4(int a, int b, int c, int d, int port = 443) => new([(byte)a, (byte)b, (byte)c, (byte)d], (ushort)port);

    private static DestinationKey V6(ulong high, ulong low, int port = 443)
    {
        var bytes = new byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes, high);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(8), low);
        return new DestinationKey(bytes, (ushort)port);
    }

    /// <summary>A SYN from <paramref name="client"/> to <paramref name="server"/>; a probe it starts ends at once (reset), and the cache entry goes, so the next SYN to that server would probe again.</summary>
    private static SynDecision Probe(NegotiatorHarness h, DestinationKey client, DestinationKey server)
    {
        var d = h.Negotiator.OnSyn(new SynObservation(new FlowKey(client, server), SynKind.MpCapable));
        if (d.StartProbe)
        {
            h.Negotiator.OnProbeReset(d.ProbeId);
            h.Negotiator.Cache.Remove(server);
        }

        return d;
    }

    [Test]
    public void Defaults_64PerSourcePrefixAnd16PerDestination()
    {
        var o = new NegotiatorOptions();
        Assert.Multiple(() =>
        {
            Assert.That(o.ProbeRatePerSourcePrefix, Is.EqualTo(64));
            Assert.That(o.ProbeRatePerDestination, Is.EqualTo(16));
            Assert.That(o.Validate(), Is.Empty);
        });
    }

    [TestCase(0.0)]
    [TestCase(-1.0)]
    [TestCase(double.NaN)]
    [TestCase(double.PositiveInfinity)]
    public void Options_RateNotPositiveAndFinite_Rejected(double rate)
    {
        Assert.Multiple(() =>
        {
            Assert.That(new NegotiatorOptions { ProbeRatePerSourcePrefix = rate }.Validate(), Has.Count.EqualTo(1));
            Assert.That(new NegotiatorOptions { ProbeRatePerDestination = rate }.Validate(), Has.Count.EqualTo(1));
        });
    }

    [TestCase(0)]
    [TestCase((1 << 22) + 1)]
    public void Options_TableSizeOutOfRange_Rejected(int entries)
    {
        Assert.That(new NegotiatorOptions { ProbeRateTableEntries = entries }.Validate(), Has.Count.EqualTo(1));
    }

    [Test]
    public void PerDestination_SeventeenthProbeInASecond_PassedAsRateLimited_ThenRefills()
    {
        using var h = new NegotiatorHarness();
        var server = V4(198, 19, 0, 1);
        var decisions = Enumerable.Range(0, 17).Select(i => Probe(h, V4(198, 18, i, 1), server)).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(decisions.Take(16).Select(d => d.Reason), Is.All.EqualTo(DecisionReason.CacheMiss));
            Assert.That((decisions[16].Verdict, decisions[16].Reason), Is.EqualTo((SynVerdict.Pass, DecisionReason.ProbeRateLimited)));
            Assert.That(h.Negotiator.HeldSyns, Is.Zero);
        });

        h.Time.Advance(TimeSpan.FromSeconds(1.0 / 16));
        Assert.Multiple(() =>
        {
            Assert.That(Probe(h, V4(198, 18, 100, 1), server).Reason, Is.EqualTo(DecisionReason.CacheMiss), "one token back after 1/16 s");
            Assert.That(Probe(h, V4(198, 18, 101, 1), server).Reason, Is.EqualTo(DecisionReason.ProbeRateLimited));
            Assert.That(Probe(h, V4(198, 18, 102, 1), V4(198, 19, 0, 2)).Reason, Is.EqualTo(DecisionReason.CacheMiss), "another destination has its own bucket");
        });
    }

    [Test]
    public void PerSourcePrefix_SixtyFifthProbeFromOneIPv4Slash24_RateLimited_AnotherSlash24Not()
    {
        using var h = new NegotiatorHarness();
        var decisions = Enumerable.Range(0, 65).Select(i => Probe(h, V4(198, 18, 7, i), V4(198, 19, 1, i))).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(decisions.Take(64).Select(d => d.Reason), Is.All.EqualTo(DecisionReason.CacheMiss));
            Assert.That(decisions[64].Reason, Is.EqualTo(DecisionReason.ProbeRateLimited));
            Assert.That(Probe(h, V4(198, 18, 8, 1), V4(198, 19, 2, 1)).Reason, Is.EqualTo(DecisionReason.CacheMiss));
        });
    }

    [Test]
    public void PerSourcePrefix_IPv6Slash56_SharedWithinNotAcross()
    {
        using var h = new NegotiatorHarness(o => o.ProbeRatePerSourcePrefix = 1);
        const ulong prefix = 0x2001_0db8_0000_1200UL;
        Assert.Multiple(() =>
        {
            Assert.That(Probe(h, V6(prefix, 1), V4(198, 19, 0, 1)).Reason, Is.EqualTo(DecisionReason.CacheMiss));
            Assert.That(Probe(h, V6(prefix | 0xFF, 99), V4(198, 19, 0, 2)).Reason, Is.EqualTo(DecisionReason.ProbeRateLimited), "same /56");
            Assert.That(Probe(h, V6(prefix + 0x100, 1), V4(198, 19, 0, 3)).Reason, Is.EqualTo(DecisionReason.CacheMiss), "next /56");
        });
    }

    [Test]
    public void JoiningAProbeInFlight_NotRateLimited()
    {
        using var h = new NegotiatorHarness(o => o.ProbeRatePerDestination = 1);
        var server = V4(198, 19, 0, 1);
        var first = h.Negotiator.OnSyn(new SynObservation(new FlowKey(V4(198, 18, 0, 1, 1000), server), SynKind.MpCapable));
        var joined = h.Negotiator.OnSyn(new SynObservation(new FlowKey(V4(198, 18, 0, 1, 1001), server), SynKind.MpCapable));
        Assert.Multiple(() =>
        {
            Assert.That(first.Reason, Is.EqualTo(DecisionReason.CacheMiss));
            Assert.That((joined.Verdict, joined.Reason), Is.EqualTo((SynVerdict.HoldAndProbe, DecisionReason.ProbeInFlight)));
        });
    }

    [Test]
    public void RateLimited_KnownDestination_CacheStillDecides()
    {
        // The limit bounds probes only: a destination the cache knows is intercepted or passed as before.
        using var h = new NegotiatorHarness(o => o.ProbeRatePerDestination = 1);
        var server = V4(198, 19, 0, 1);
        Probe(h, V4(198, 18, 0, 1), server);
        h.Negotiator.Cache.Set(server, CapabilityState.TcpOnly);
        var d = h.Negotiator.OnSyn(new SynObservation(new FlowKey(V4(198, 18, 0, 2), server), SynKind.MpCapable));
        Assert.That(d.Verdict, Is.EqualTo(SynVerdict.Intercept));
    }

    [Test]
    public void Flood_100kDistinctSourcesAndDestinations_TablesStayBounded()
    {
        const int bound = 1024;
        using var h = new NegotiatorHarness(o => { o.ProbeRateTableEntries = bound; o.MaxProbesInFlight = 1 << 20; });
        int probed = 0;
        int limited = 0;
        int maxSources = 0;
        int maxDestinations = 0;
        for (int i = 0; i < 100_000; i++)
        {
            // Every SYN from its own /24 (and /56) to its own destination, 100k SYNs over 1 s.
            var client = (i & 1) == 0 ? V4(10 + (i >> 16), (i >> 8) & 0xFF, i & 0xFF, 1) : V6(0x2001_0db8_0000_0000UL | ((ulong)i << 8), 1);
            var d = Probe(h, client, V4(198, 19, (i >> 8) & 0xFF, i & 0xFF, 1000 + (i >> 16)));
            probed += d.StartProbe ? 1 : 0;
            limited += d.Reason == DecisionReason.ProbeRateLimited ? 1 : 0;
            maxSources = Math.Max(maxSources, h.Negotiator.ProbeRateSourcePrefixes);
            maxDestinations = Math.Max(maxDestinations, h.Negotiator.ProbeRateDestinations);
            h.Time.Advance(TimeSpan.FromMicroseconds(10));
        }

        Assert.Multiple(() =>
        {
            Assert.That(maxSources, Is.EqualTo(bound), "source table filled to its bound, never past it");
            Assert.That(maxDestinations, Is.EqualTo(bound));
            Assert.That(probed + limited, Is.EqualTo(100_000), "every SYN either probed or was passed as rate-limited");
            Assert.That(limited, Is.GreaterThan(0));
            Assert.That(h.Negotiator.HeldSyns, Is.Zero);
            Assert.That(h.Negotiator.Cache.Count, Is.LessThanOrEqualTo(h.Negotiator.Options.Cache.MaxEntries));
        });

        // Once the flood stops, the buckets refill and are forgotten: a new source probes again.
        h.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.That(Probe(h, V4(203, 0, 113, 1), V4(203, 0, 113, 2)).Reason, Is.EqualTo(DecisionReason.CacheMiss));
    }
}
