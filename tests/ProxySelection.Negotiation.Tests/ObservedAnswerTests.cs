using static ProxySelection.Negotiation.Tests.NegotiatorHarness;

namespace ProxySelection.Negotiation.Tests;

/// <summary>Answers to probes that passed (spec §6, §7.6): ISN-checked, first one decides, short-lived, per interface.</summary>
public class ObservedAnswerTests
{
    private static readonly ProxySignal PassingProbe = new(SignalKind.Probe, ProxyId: 1, Priority: 4);

    [Test]
    public void ObservedAnswer_AckNotProbeIsnPlusOne_Ignored()
    {
        using var h = new NegotiatorHarness();
        h.OnSyn(2000, signal: PassingProbe);
        h.Negotiator.OnSynAckObserved(SynAck(2000, mpCapable: true) with { AckNumber = IsnOf(2000) + 2 });
        h.Negotiator.OnSynAckObserved(SynAck(2000, mpCapable: true) with { AckNumber = IsnOf(2000) });
        Assert.That(h.CacheEntry()?.State, Is.EqualTo(CapabilityState.ProbedByOther));
    }

    [Test]
    public void ObservedAnswer_ForgeryWithWrongAckFirst_TheRealAnswerStillCounts()
    {
        using var h = new NegotiatorHarness();
        h.OnSyn(2000, signal: PassingProbe);
        h.Negotiator.OnSynAckObserved(SynAck(2000, mpCapable: false, new ProxySignal(SignalKind.Defer, 9, 0)) with { AckNumber = 12345 });
        h.Negotiator.OnSynAckObserved(SynAck(2000, mpCapable: true));
        Assert.That(h.CacheEntry()?.State, Is.EqualTo(CapabilityState.MptcpCapable));
    }

    [Test]
    public void ObservedAnswer_IsnWrapsAround_AckIsZero()
    {
        using var h = new NegotiatorHarness();
        h.Negotiator.OnSyn(Syn(2000, signal: PassingProbe) with { Isn = uint.MaxValue });
        h.Negotiator.OnSynAckObserved(new SynAckObservation(Flow(2000), 0, MpCapable: true));
        Assert.That(h.CacheEntry()?.State, Is.EqualTo(CapabilityState.MptcpCapable));
    }

    [Test]
    public void ObservedAnswer_SecondSynAckForTheSameProbe_Ignored()
    {
        using var h = new NegotiatorHarness();
        h.OnSyn(2000, signal: PassingProbe);
        h.Negotiator.OnSynAckObserved(SynAck(2000, mpCapable: true));
        h.Negotiator.Cache.Set(Server, new CapabilityEntry(CapabilityState.ProbedByOther, 0, CapabilitySource.Observed, Ingress));
        h.Negotiator.OnSynAckObserved(SynAck(2000, mpCapable: false, new ProxySignal(SignalKind.Defer, 9, 0)));
        Assert.That(h.CacheEntry()?.State, Is.EqualTo(CapabilityState.ProbedByOther), "the first SYN/ACK decided; the second found no probe to answer");
    }

    [Test]
    public void ObservedFact_LivesSixtySecondsNotTheOwnProbeTtl()
    {
        using var h = new NegotiatorHarness();
        h.OnSyn(2000, signal: PassingProbe);
        h.Negotiator.OnSynAckObserved(SynAck(2000, mpCapable: true));
        Assert.That(h.CacheEntry(), Is.EqualTo(new CapabilityEntry(CapabilityState.MptcpCapable, 0, CapabilitySource.Observed)));
        h.Time.Advance(TimeSpan.FromSeconds(59));
        Assert.That(h.CacheEntry()?.State, Is.EqualTo(CapabilityState.MptcpCapable));
        h.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.That(h.CacheEntry(), Is.Null, "observed facts expire after 60 s");
    }

    [Test]
    public void OwnProbeFact_ConfirmedByTheNextOwnProbe_LivesItsOwnTtl()
    {
        using var h = new NegotiatorHarness();
        var d = h.OnSyn(1000);
        h.Negotiator.OnProbeAnswered(d.ProbeId, new ProbeAnswer(MpCapable: true));
        h.Time.Advance(TimeSpan.FromSeconds(60));
        var recheck = h.OnSyn(1001);
        h.Negotiator.OnProbeAnswered(recheck.ProbeId, new ProbeAnswer(MpCapable: true));
        h.Time.Advance(TimeSpan.FromMinutes(9));
        Assert.That(h.CacheEntry(), Is.EqualTo(new CapabilityEntry(CapabilityState.MptcpCapable, 0, CapabilitySource.OwnProbe)));
    }

    [Test]
    public void ObservedDefer_LivesSixtySeconds()
    {
        using var h = new NegotiatorHarness();
        h.OnSyn(2000, signal: PassingProbe);
        h.Negotiator.OnSynAckObserved(SynAck(2000, mpCapable: false, new ProxySignal(SignalKind.Defer, 9, 0)));
        h.Time.Advance(TimeSpan.FromSeconds(60));
        Assert.That(h.CacheEntry(), Is.Null);
    }

    [Test]
    public void ObservedAnswer_AfterTheWindow_Ignored()
    {
        using var h = new NegotiatorHarness();
        h.OnSyn(2000, signal: PassingProbe);
        h.Time.Advance(TimeSpan.FromMilliseconds(500));
        h.Negotiator.OnSynAckObserved(SynAck(2000, mpCapable: true));
        Assert.That(h.CacheEntry(), Is.Null);
    }

    [Test]
    public void ProbedByOther_ClientSynOnTheProbesInterface_Passed()
    {
        using var h = new NegotiatorHarness();
        h.OnSyn(2000, signal: PassingProbe);
        var d = h.Negotiator.OnSyn(Syn(1000) with { IngressInterface = Ingress });
        Assert.That((d.Verdict, d.Reason), Is.EqualTo((SynVerdict.Pass, DecisionReason.ProbedByOther)));
    }

    [Test]
    public void ProbedByOther_SynOnAnotherInterface_NotCoveredAndProbed()
    {
        // A SYN for D on another interface did not cross the prober: passing it would let it escape selection.
        using var h = new NegotiatorHarness();
        h.OnSyn(2000, signal: PassingProbe);
        var d = h.Negotiator.OnSyn(Syn(1000) with { IngressInterface = Ingress + 1 });
        Assert.Multiple(() =>
        {
            Assert.That((d.Verdict, d.Reason), Is.EqualTo((SynVerdict.HoldAndProbe, DecisionReason.CacheMiss)));
            Assert.That(h.CacheEntry(), Is.EqualTo(new CapabilityEntry(CapabilityState.ProbedByOther, 0, CapabilitySource.Observed, Ingress)));
        });
    }
}
