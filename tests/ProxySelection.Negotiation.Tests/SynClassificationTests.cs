using static ProxySelection.Negotiation.Tests.NegotiatorHarness;

namespace ProxySelection.Negotiation.Tests;

/// <summary>The rules of spec §7.2 that pass a SYN before any procedure: TCP-MD5/AO (1), own proxy id (5), MPTCP v0 (6).</summary>
public class SynClassificationTests
{
    [TestCase(ProxyRole.Downgrade, SynKind.MpCapable)]
    [TestCase(ProxyRole.Upgrade, SynKind.Tcp)]
    public void TcpAuthOption_CacheWouldIntercept_PassedUntouched(ProxyRole role, SynKind kind)
    {
        using var h = new NegotiatorHarness(o => o.Role = role);
        h.Negotiator.Cache.Set(Server, role == ProxyRole.Downgrade ? CapabilityState.TcpOnly : CapabilityState.MptcpCapable);
        var d = h.Negotiator.OnSyn(Syn(1000, kind) with { HasTcpAuthOption = true });
        Assert.Multiple(() =>
        {
            Assert.That((d.Verdict, d.Reason), Is.EqualTo((SynVerdict.Pass, DecisionReason.TcpAuthOption)));
            Assert.That(h.Negotiator.ActiveConnections, Is.Zero);
        });
    }

    [TestCase(ProxyRole.Downgrade, SynKind.MpCapable)]
    [TestCase(ProxyRole.Upgrade, SynKind.Tcp)]
    public void TcpAuthOption_CacheMiss_NeitherHeldNorProbed(ProxyRole role, SynKind kind)
    {
        using var h = new NegotiatorHarness(o => o.Role = role);
        var d = h.Negotiator.OnSyn(Syn(1000, kind) with { HasTcpAuthOption = true });
        Assert.Multiple(() =>
        {
            Assert.That((d.Verdict, d.Reason), Is.EqualTo((SynVerdict.Pass, DecisionReason.TcpAuthOption)));
            Assert.That(h.Negotiator.HeldSyns, Is.Zero);
            Assert.That(h.Negotiator.ProbesInFlight, Is.Zero);
        });
    }

    [Test]
    public void TcpAuthOption_ForeignProbeItWouldOutrank_PassedWithoutRecording()
    {
        using var h = new NegotiatorHarness(o => o.Policy = SelectionPolicy.NearestServer);
        var d = h.Negotiator.OnSyn(Syn(2000, SynKind.MpCapable, new ProxySignal(SignalKind.Probe, 1, 4)) with { HasTcpAuthOption = true });
        Assert.Multiple(() =>
        {
            Assert.That((d.Verdict, d.Reason), Is.EqualTo((SynVerdict.Pass, DecisionReason.TcpAuthOption)));
            Assert.That(h.CacheEntry(), Is.Null);
        });
    }

    [TestCase(ProxyRole.Downgrade)]
    [TestCase(ProxyRole.Upgrade)]
    public void MptcpV0Syn_EitherRole_PassedUntouched(ProxyRole role)
    {
        using var h = new NegotiatorHarness(o => o.Role = role);
        h.Negotiator.Cache.Set(Server, role == ProxyRole.Downgrade ? CapabilityState.TcpOnly : CapabilityState.MptcpCapable);
        var cached = h.OnSyn(1000, SynKind.MpCapableV0);
        h.Negotiator.Cache.Clear();
        var miss = h.OnSyn(1001, SynKind.MpCapableV0);
        Assert.Multiple(() =>
        {
            Assert.That((cached.Verdict, cached.Reason), Is.EqualTo((SynVerdict.Pass, DecisionReason.MptcpV0)));
            Assert.That((miss.Verdict, miss.Reason), Is.EqualTo((SynVerdict.Pass, DecisionReason.MptcpV0)));
            Assert.That(h.Negotiator.HeldSyns, Is.Zero);
        });
    }

    [TestCase(ProxyRole.Downgrade, SynKind.MpCapable, SignalKind.Probe)]
    [TestCase(ProxyRole.Upgrade, SynKind.MpCapable, SignalKind.Upgrade)]
    [TestCase(ProxyRole.Downgrade, SynKind.MpCapable, SignalKind.Upgrade)]
    public void VerifiedSignalWithOwnProxyId_Loop_PassedNeitherHeldNorRecorded(ProxyRole role, SynKind kind, SignalKind signal)
    {
        // The harness proxy has id 3; under nearest-server it would otherwise hold a foreign probe.
        using var h = new NegotiatorHarness(o => { o.Role = role; o.Policy = SelectionPolicy.NearestServer; });
        var d = h.OnSyn(2000, kind, new ProxySignal(signal, ProxyId: 3, Priority: 4));
        Assert.Multiple(() =>
        {
            Assert.That((d.Verdict, d.Reason), Is.EqualTo((SynVerdict.Pass, DecisionReason.OwnProxyId)));
            Assert.That(h.Negotiator.HeldSyns, Is.Zero);
            Assert.That(h.Negotiator.ProbesInFlight, Is.Zero);
            Assert.That(h.CacheEntry(), Is.Null, "a looped probe is no other proxy's probe: no ProbedByOther");
        });
    }

    [Test]
    public void VerifiedSignalWithAnotherProxyId_NotALoop()
    {
        using var h = new NegotiatorHarness(o => o.Policy = SelectionPolicy.NearestServer);
        var d = h.OnSyn(2000, SynKind.MpCapable, new ProxySignal(SignalKind.Probe, ProxyId: 4, Priority: 4));
        Assert.That(d.Verdict, Is.EqualTo(SynVerdict.HoldAndProbe));
    }

    [Test]
    public void OwnProxyId_ImplicitMode_SignalNotRead()
    {
        using var h = new NegotiatorHarness(o => o.Mode = SignalingMode.Implicit);
        var d = h.OnSyn(2000, SynKind.MpCapable, new ProxySignal(SignalKind.Probe, ProxyId: 3, Priority: 4));
        Assert.That((d.Verdict, d.Reason), Is.EqualTo((SynVerdict.HoldAndProbe, DecisionReason.CacheMiss)));
    }
}
