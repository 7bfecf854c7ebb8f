using ProxySelection.Engine.Hook;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Negotiation;
using ProxySelection.Tests;
using ProxySelection.Wire;

namespace ProxySelection.Engine.Tests.Flows;

/// <summary>The probe's answer is the first SYN/ACK that acknowledges the probe's own ISN + 1 (its SYN seen at the egress hook).</summary>
public sealed class ProbeSynAckMatchTests
{
    [Test]
    public async Task StraySynAckFirst_DoesNotTakeTheAnswer_TheOneAcknowledgingTheProbeDecides()
    {
        await using var h = new EngineHarness(o => o.Mode = SignalingMode.Explicit);
        uint syn = h.MpCapableSyn(40_401);
        var probe = h.Probes.Opened.Single();
        // The probe's SYN leaves through the egress hook (builder: ISN 0x10000000 + port, toward the server).
        var ownSyn = PacketBuilder.Build(false, probe.LocalPort, TcpFlags.Syn, EngineHarness.V1Capable);
        h.Engine.OnPacket(new QueuedPacket(900, 2, NetfilterHook.PostRouting, 0, ownSyn));
        uint isn = 0x1000_0000u + probe.LocalPort;

        h.Ingress(EngineHarness.ProbeSynAck(probe.LocalPort, signal: null, acknowledgment: isn + 1000));
        h.Ingress(EngineHarness.ProbeSynAck(probe.LocalPort, new ProxySignal(SignalKind.Claim, 9, 1), acknowledgment: isn + 1));
        probe.Answer(mptcp: true);

        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(syn) is not null, "the held SYN's verdict");
        var probeEvent = h.Events.Events.Single(e => e.Event == "probe");
        Assert.That((probeEvent.Signal, probeEvent.SignalProxy), Is.EqualTo(("Claim", (int?)9)), "the stray SYN/ACK was ignored");
    }
}
