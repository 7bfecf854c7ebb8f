using ProxySelection.Engine.Flows;
using ProxySelection.Negotiation;
using ProxySelection.Tests;
using ProxySelection.Wire;

namespace ProxySelection.Engine.Tests.Flows;

/// <summary>Spec §7.2: a RST for the flow of a held SYN ends the hold; any other RST passes untouched.</summary>
public sealed class HeldSynResetTests
{
    private static byte[] Rst(ushort clientPort) => PacketBuilder.Build(false, clientPort, TcpFlags.Rst, ReadOnlySpan<byte>.Empty);

    [Test]
    public async Task RstForAHeldSyn_DiscardsTheSyn_ForwardsTheRst_TheProbeGoesOnForTheOthers()
    {
        await using var h = new EngineHarness();
        uint abandoned = h.MpCapableSyn(40_101);
        uint other = h.MpCapableSyn(40_102);
        Assert.That(h.Probes.Opened, Has.Count.EqualTo(1), "the second SYN joined the first one's probe");

        uint rst = h.Ingress(Rst(40_101));

        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(abandoned)!.Kind, Is.EqualTo("drop"));
            Assert.That(h.Verdicts.For(rst)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Verdicts.For(other), Is.Null, "still held");
            Assert.That(h.Probes.Opened[0].Aborted, Is.False, "the probe goes on");
            Assert.That(h.Engine.Negotiator.HeldSyns, Is.EqualTo(1));
            Assert.That(h.Engine.Counters.HoldsReset, Is.EqualTo(1));
        });

        h.Probes.Opened[0].Answer(mptcp: false);
        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(other) is not null, "the other held SYN's verdict");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(other)!.Kind, Is.EqualTo("intercept"));
            Assert.That(h.Verdicts.All.Where(v => v.PacketId == abandoned).Select(v => v.Kind), Is.EqualTo(new[] { "drop" }),
                "the discarded SYN gets no second verdict");
            Assert.That(h.Engine.Flows.Count, Is.EqualTo(1), "only the other flow, awaiting its accept");
        });
    }

    [Test]
    public async Task RstForTheOnlyHeldSyn_ThenTheProbeTimesOut_NothingIsLeft()
    {
        await using var h = new EngineHarness();
        uint syn = h.MpCapableSyn(40_103);
        h.Ingress(Rst(40_103));
        h.Time.Advance(h.Options.Negotiation.ProbeTimeout);

        await EngineHarness.WaitUntilAsync(() => h.Engine.Negotiator.ProbesInFlight == 0, "the probe resolved");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.All.Where(v => v.PacketId == syn).Select(v => v.Kind), Is.EqualTo(new[] { "drop" }));
            Assert.That(h.Engine.Flows.Count, Is.Zero);
            Assert.That(h.Engine.Negotiator.HeldSyns, Is.Zero);
            Assert.That(h.Events.Events.Single(e => e.Event == "expired").Reason, Is.EqualTo(FlowCloseReasons.ResetBySender));
        });
    }

    [Test]
    public async Task RstForAFlowNotHeld_PassesUntouched_AnInterceptedFlowIsNotChanged()
    {
        await using var h = new EngineHarness();
        uint stray = h.Ingress(Rst(40_104));
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(EngineHarness.Server), CapabilityState.TcpOnly);
        uint intercepted = h.MpCapableSyn(40_105);
        uint late = h.Ingress(Rst(40_105));

        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(stray)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Verdicts.For(late)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Verdicts.For(intercepted)!.Kind, Is.EqualTo("intercept"));
            Assert.That(h.Engine.Flows.Snapshot().Single().State, Is.EqualTo(FlowState.AwaitingAccept));
            Assert.That(h.Engine.Counters.HoldsReset, Is.Zero);
            Assert.That(h.Engine.Counters.Syns, Is.EqualTo(1), "a RST is not counted as a SYN");
        });
    }
}
