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
        // The global cap off: this is about the per-key tables, which it would keep from filling.
        using var h = new NegotiatorHarness(o => { o.ProbeRateTableEntries = bound; o.MaxProbesInFlight = 1 << 20; o.ProbeRateGlobal = 0; });
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

    [Test]
    public void GlobalCap_Default512_ZeroTurnsItOff_NegativeOrNotFiniteRejected()
    {
        Assert.Multiple(() =>
        {
            Assert.That(new NegotiatorOptions().ProbeRateGlobal, Is.EqualTo(512));
            Assert.That(new NegotiatorOptions { ProbeRateGlobal = 0 }.Validate(), Is.Empty);
            Assert.That(new NegotiatorOptions { ProbeRateGlobal = -1 }.Validate(), Has.Count.EqualTo(1));
            Assert.That(new NegotiatorOptions { ProbeRateGlobal = double.NaN }.Validate(), Has.Count.EqualTo(1));
            Assert.That(new NegotiatorOptions { ProbeRateGlobal = 1_000_001 }.Validate(), Has.Count.EqualTo(1));
        });
    }

    [Test]
    public void GlobalCap_ProbesFromManySourcePrefixesToManyDestinations_CappedAtTheGlobalRate_SynPassedUntouched()
    {
        // Each SYN from its own /24 toward its own destination: only the global bucket can refuse.
        using var h = new NegotiatorHarness(o => o.ProbeRateGlobal = 100);
        var decisions = Enumerable.Range(0, 101).Select(i => Probe(h, V4(198, 18, i, 1), V4(198, 19, i, 1))).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(decisions.Take(100).Select(d => d.Reason), Is.All.EqualTo(DecisionReason.CacheMiss), "a burst of one second's worth");
            Assert.That((decisions[100].Verdict, decisions[100].Reason, decisions[100].StartProbe), Is.EqualTo((SynVerdict.Pass, DecisionReason.ProbeRateCapped, false)));
            Assert.That(h.Negotiator.HeldSyns, Is.Zero);
            Assert.That((h.Negotiator.ProbesRateLimited, h.Negotiator.ProbesRateCapped), Is.EqualTo((1L, 1L)));
        });
    }

    [Test]
    public void GlobalCap_RefillsAtItsRate_OverTenSecondsProbesStayWithinRateTimesTimePlusBurst()
    {
        using var h = new NegotiatorHarness(o => o.ProbeRateGlobal = 100);
        int started = 0;
        int capped = 0;
        // 1,000 SYNs a second, each from a new /24 toward a new destination, for 10 fake seconds.
        for (int i = 0; i < 10_000; i++)
        {
            var d = Probe(h, V4(198, 18, i % 250, 1 + (i / 250 % 250)), V4(198, 19, i % 250, 1 + (i / 250 % 250)));
            started += d.StartProbe ? 1 : 0;
            capped += d.Reason == DecisionReason.ProbeRateCapped ? 1 : 0;
            h.Time.Advance(TimeSpan.FromMilliseconds(1));
        }

        Assert.Multiple(() =>
        {
            Assert.That(started, Is.InRange(100 * 10, (100 * 10) + 100), "rate x time, plus at most one burst");
            Assert.That(started + capped, Is.EqualTo(10_000), "every SYN either probed or passed as capped");
            Assert.That(h.Negotiator.ProbesRateCapped, Is.EqualTo(capped));
        });
    }

    [Test]
    public void GlobalCap_RateCapReached_OnlyOnTheFirstCappedSynOfEachEpisode()
    {
        using var h = new NegotiatorHarness(o => o.ProbeRateGlobal = 2);
        Probe(h, V4(198, 18, 1, 1), V4(198, 19, 1, 1));
        Probe(h, V4(198, 18, 2, 1), V4(198, 19, 2, 1));
        var first = Probe(h, V4(198, 18, 3, 1), V4(198, 19, 3, 1));
        var second = Probe(h, V4(198, 18, 4, 1), V4(198, 19, 4, 1));
        h.Time.Advance(TimeSpan.FromSeconds(0.5));
        var through = Probe(h, V4(198, 18, 5, 1), V4(198, 19, 5, 1));
        var again = Probe(h, V4(198, 18, 6, 1), V4(198, 19, 6, 1));
        Assert.Multiple(() =>
        {
            Assert.That((first.Reason, first.RateCapReached), Is.EqualTo((DecisionReason.ProbeRateCapped, true)));
            Assert.That((second.Reason, second.RateCapReached), Is.EqualTo((DecisionReason.ProbeRateCapped, false)));
            Assert.That(through.Reason, Is.EqualTo(DecisionReason.CacheMiss), "one token back after 0.5 s at 2/s");
            Assert.That((again.Reason, again.RateCapReached), Is.EqualTo((DecisionReason.ProbeRateCapped, true)), "a new episode");
        });
    }

    [Test]
    public void GlobalCap_Off_ManyPrefixesProbeBeyondAnyGlobalRate()
    {
        using var h = new NegotiatorHarness(o => o.ProbeRateGlobal = 0);
        var decisions = Enumerable.Range(0, 2_000).Select(i => Probe(h, V4(198, 18, i % 250, 1 + (i / 250)), V4(198, 19, i % 250, 1 + (i / 250)))).ToList();
        Assert.That(decisions.Count(d => d.StartProbe), Is.EqualTo(2_000));
    }

    [Test]
    public void GlobalCap_PerPrefixRefusal_TakesNoGlobalToken()
    {
        // A SYN the per-prefix limit refuses must not spend the global budget other clients share.
        using var h = new NegotiatorHarness(o => { o.ProbeRateGlobal = 2; o.ProbeRatePerSourcePrefix = 1; });
        var a = Probe(h, V4(198, 18, 1, 1), V4(198, 19, 1, 1));
        var refused = Enumerable.Range(2, 5).Select(i => Probe(h, V4(198, 18, 1, i), V4(198, 19, 1, i))).ToList();
        var b = Probe(h, V4(198, 18, 2, 1), V4(198, 19, 2, 1));
        Assert.Multiple(() =>
        {
            Assert.That(a.Reason, Is.EqualTo(DecisionReason.CacheMiss));
            Assert.That(refused.Select(d => d.Reason), Is.All.EqualTo(DecisionReason.ProbeRateLimited));
            Assert.That(b.Reason, Is.EqualTo(DecisionReason.CacheMiss), "the second global token was still there");
            Assert.That((h.Negotiator.ProbesRateLimited, h.Negotiator.ProbesRateCapped), Is.EqualTo((5L, 0L)));
        });
    }
}
