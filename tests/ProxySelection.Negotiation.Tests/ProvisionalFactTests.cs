namespace ProxySelection.Negotiation.Tests;

/// <summary>
/// A server fact from one own probe is provisional (spec §6): an on-path party that answered that probe could have forged
/// it, so it lives <see cref="CapabilityCacheOptions.ObservedTtl"/> and the next own probe re-checks it; only an
/// agreeing answer gives the state's full life, a disagreeing one replaces it and stays provisional.
/// </summary>
public class ProvisionalFactTests
{
    private static readonly TimeSpan Provisional = TimeSpan.FromSeconds(60);

    /// <summary>A cache miss from a new client port, its probe answered with <paramref name="mpCapable"/>.</summary>
    private static SynDecision ProbeAnswered(NegotiatorHarness h, int clientPort, bool mpCapable)
    {
        var d = h.OnSyn(clientPort);
        Assert.That((d.Verdict, d.StartProbe), Is.EqualTo((SynVerdict.HoldAndProbe, true)), "a cache miss that probes");
        h.Negotiator.OnProbeAnswered(d.ProbeId, new ProbeAnswer(mpCapable));
        return d;
    }

    private static TimeSpan Remaining(NegotiatorHarness h) =>
        h.Negotiator.Cache.Snapshot().Single(i => i.Destination == NegotiatorHarness.Server).Remaining;

    [Test]
    public void FirstOwnProbe_FactIsProvisional_LivesTheObservedTtl()
    {
        using var h = new NegotiatorHarness();
        ProbeAnswered(h, 1000, mpCapable: false);
        var entry = h.CacheEntry();
        Assert.Multiple(() =>
        {
            Assert.That(entry?.State, Is.EqualTo(CapabilityState.TcpOnly));
            Assert.That(entry?.Provisional, Is.True);
            Assert.That(Remaining(h), Is.EqualTo(Provisional));
        });

        h.Time.Advance(Provisional - TimeSpan.FromMilliseconds(1));
        Assert.That(h.OnSyn(1001).Verdict, Is.EqualTo(SynVerdict.Intercept), "still believed just before its end");
        h.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.That(h.OnSyn(1002).Reason, Is.EqualTo(DecisionReason.CacheMiss), "then re-checked by a probe");
    }

    [Test]
    public void RecheckAgrees_FactConfirmed_FullLife_CountedRecheckedNotChanged()
    {
        using var h = new NegotiatorHarness();
        ProbeAnswered(h, 1000, mpCapable: false);
        h.Time.Advance(Provisional);
        ProbeAnswered(h, 1001, mpCapable: false);
        var cache = h.Negotiator.Cache;
        Assert.Multiple(() =>
        {
            Assert.That(h.CacheEntry(), Is.EqualTo(new CapabilityEntry(CapabilityState.TcpOnly, 0)), "confirmed: not provisional");
            Assert.That(Remaining(h), Is.EqualTo(h.Negotiator.Options.Cache.TcpOnlyTtl));
            Assert.That((cache.FactsRechecked, cache.FactsChanged), Is.EqualTo((1L, 0L)));
        });
    }

    [Test]
    public void RecheckDisagrees_ForgedFactReplacedByTheTruth_StaysProvisional_CountedChanged()
    {
        // The first answer was forged on the path (TcpOnly for an MPTCP server); the re-check reaches the real server.
        using var h = new NegotiatorHarness();
        ProbeAnswered(h, 1000, mpCapable: false);
        h.Time.Advance(Provisional);
        ProbeAnswered(h, 1001, mpCapable: true);
        var cache = h.Negotiator.Cache;
        Assert.Multiple(() =>
        {
            Assert.That(h.CacheEntry()?.State, Is.EqualTo(CapabilityState.MptcpCapable));
            Assert.That(h.CacheEntry()?.Provisional, Is.True, "one answer of each: neither is confirmed");
            Assert.That(Remaining(h), Is.EqualTo(Provisional));
            Assert.That((cache.FactsRechecked, cache.FactsChanged), Is.EqualTo((1L, 1L)));
        });

        // With the forger gone the next re-check agrees: the truth gets the full life.
        h.Time.Advance(Provisional);
        ProbeAnswered(h, 1002, mpCapable: true);
        Assert.Multiple(() =>
        {
            Assert.That(h.CacheEntry(), Is.EqualTo(new CapabilityEntry(CapabilityState.MptcpCapable, 0)));
            Assert.That(Remaining(h), Is.EqualTo(h.Negotiator.Options.Cache.MptcpCapableTtl));
            Assert.That((cache.FactsRechecked, cache.FactsChanged), Is.EqualTo((2L, 1L)));
        });
    }

    [Test]
    public void ForgerAnsweringEveryProbe_NeverGetsMoreThanTheProvisionalLifeOnAChange()
    {
        // Alternating answers (a forger that wins every other race): every fact stays provisional, none lasts past 60 s.
        using var h = new NegotiatorHarness();
        for (int i = 0; i < 6; i++)
        {
            ProbeAnswered(h, 1000 + i, mpCapable: i % 2 == 0);
            Assert.That(Remaining(h), Is.EqualTo(Provisional), $"probe {i}");
            h.Time.Advance(Provisional);
        }

        Assert.That((h.Negotiator.Cache.FactsRechecked, h.Negotiator.Cache.FactsChanged), Is.EqualTo((5L, 5L)));
    }

    [Test]
    public void ConfirmedFact_ExpiresAfterItsFullLife_NextProbeRechecksItAgain()
    {
        using var h = new NegotiatorHarness();
        ProbeAnswered(h, 1000, mpCapable: false);
        h.Time.Advance(Provisional);
        ProbeAnswered(h, 1001, mpCapable: false);
        h.Time.Advance(h.Negotiator.Options.Cache.TcpOnlyTtl);
        ProbeAnswered(h, 1002, mpCapable: true);
        Assert.Multiple(() =>
        {
            Assert.That(h.CacheEntry()?.State, Is.EqualTo(CapabilityState.MptcpCapable));
            Assert.That(h.CacheEntry()?.Provisional, Is.True, "the server changed (or a forger answered): provisional");
            Assert.That(h.Negotiator.Cache.FactsChanged, Is.EqualTo(1));
        });
    }

    [Test]
    public void ProbeFailsBetween_NoRecheck_NextFactProvisional()
    {
        using var h = new NegotiatorHarness();
        ProbeAnswered(h, 1000, mpCapable: false);
        h.Time.Advance(Provisional);
        var failed = h.OnSyn(1001);
        h.Negotiator.OnProbeReset(failed.ProbeId);
        h.Time.Advance(h.Negotiator.Options.Cache.UnresolvedTtl);
        ProbeAnswered(h, 1002, mpCapable: false);
        Assert.Multiple(() =>
        {
            Assert.That(h.CacheEntry()?.Provisional, Is.True, "the failed probe's Unresolved is not a fact to agree with");
            Assert.That(h.Negotiator.Cache.FactsRechecked, Is.Zero);
        });
    }

    [Test]
    public void UpgradeRole_ProvisionalToo()
    {
        using var h = new NegotiatorHarness(o => o.Role = ProxyRole.Upgrade);
        var first = h.Negotiator.OnSyn(NegotiatorHarness.Syn(1000, SynKind.Tcp));
        h.Negotiator.OnProbeAnswered(first.ProbeId, new ProbeAnswer(MpCapable: true));
        Assert.That((h.CacheEntry()?.State, h.CacheEntry()?.Provisional), Is.EqualTo((CapabilityState.MptcpCapable, true)));
        h.Time.Advance(Provisional);
        var second = h.Negotiator.OnSyn(NegotiatorHarness.Syn(1001, SynKind.Tcp));
        h.Negotiator.OnProbeAnswered(second.ProbeId, new ProbeAnswer(MpCapable: true));
        Assert.That(h.CacheEntry(), Is.EqualTo(new CapabilityEntry(CapabilityState.MptcpCapable, 0)));
    }

    [Test]
    public void VerifiedDefer_NotProvisional_ItsTagIsChecked()
    {
        using var h = new NegotiatorHarness();
        var d = h.OnSyn(1000);
        h.Negotiator.OnProbeAnswered(d.ProbeId, new ProbeAnswer(false, new ProxySignal(SignalKind.Defer, 9, 0)));
        Assert.Multiple(() =>
        {
            Assert.That(h.CacheEntry()?.Provisional, Is.False);
            Assert.That(Remaining(h), Is.EqualTo(h.Negotiator.Options.Cache.ProxyBeyondTtl));
        });
    }

    [Test]
    public void ObservedAnswer_CannotOverwriteAProvisionalOwnFact()
    {
        using var h = new NegotiatorHarness(o => o.Policy = SelectionPolicy.First);
        ProbeAnswered(h, 1000, mpCapable: false);
        var passing = h.Negotiator.OnSyn(NegotiatorHarness.Syn(2000, signal: new ProxySignal(SignalKind.Probe, 7, 5)));
        h.Negotiator.OnSynAckObserved(NegotiatorHarness.SynAck(2000, mpCapable: true));
        Assert.Multiple(() =>
        {
            Assert.That(passing.Verdict, Is.EqualTo(SynVerdict.Pass));
            Assert.That((h.CacheEntry()?.State, h.CacheEntry()?.Source), Is.EqualTo((CapabilityState.TcpOnly, CapabilitySource.OwnProbe)));
        });
    }

    [Test]
    public void OperatorSetFact_NotProvisional()
    {
        using var h = new NegotiatorHarness();
        h.Negotiator.Cache.Set(NegotiatorHarness.Server, CapabilityState.TcpOnly);
        Assert.That(Remaining(h), Is.EqualTo(h.Negotiator.Options.Cache.TcpOnlyTtl));
    }
}
