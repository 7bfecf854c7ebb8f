using ProxySelection.Tests;
using ProxySelection.Wire;

namespace ProxySelection.Engine.Tests.Flows;

/// <summary>No SYN is held beyond the hold limit (the probe timeout), counted from its arrival in the kernel; overload passes untouched.</summary>
public sealed class HoldOverloadTests
{
    private static byte[] Syn(ushort clientPort) => PacketBuilder.Build(false, clientPort, TcpFlags.Syn, EngineHarness.V1Capable);

    [Test]
    public async Task AtTheHeldLimit_AnotherSynThatWouldBeHeld_PassesUntouched()
    {
        await using var h = new EngineHarness(maxHeldSyns: 2);
        uint first = h.MpCapableSyn(40_201);
        uint second = h.MpCapableSyn(40_202);
        uint third = h.MpCapableSyn(40_203);

        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(first), Is.Null, "held");
            Assert.That(h.Verdicts.For(second), Is.Null, "held");
            Assert.That(h.Verdicts.For(third)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Engine.Negotiator.HeldSyns, Is.EqualTo(2));
            Assert.That(h.Engine.Counters.OverloadPassed, Is.EqualTo(1));
            Assert.That(h.Events.Events.Last(e => e.Event == "syn").Verdict, Is.EqualTo("Pass"));
        });
    }

    [Test]
    public async Task ASynThatWaitedHalfTheLimitInTheQueue_PassesUntouched_WithoutAProbeConnection_TheNextSynProbes()
    {
        // Issue 13's burst: a probe for a passed SYN is a second connection the server accepts for one client.
        await using var h = new EngineHarness();
        uint late = h.Ingress(Syn(40_204), waited: h.Options.Negotiation.ProbeTimeout / 2);

        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(late)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Engine.Negotiator.HeldSyns, Is.Zero);
            Assert.That(h.Probes.Opened, Is.Empty, "no probe toward a server its client reaches directly");
            Assert.That(h.Engine.Negotiator.ProbesInFlight, Is.Zero);
            Assert.That(h.Engine.Counters.OverloadPassed, Is.EqualTo(1));
        });

        uint next = h.MpCapableSyn(40_210);
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(next), Is.Null, "held: no fact was recorded for the abandoned probe");
            Assert.That(h.Probes.Opened, Has.Count.EqualTo(1), "the destination's next SYN probes");
        });
    }

    [Test]
    public async Task AnOverdueHoldWhoseProbeTheKernelAnswered_IsDecidedByTheAnswer_NotReleasedAsTimedOut()
    {
        // Issue 13: a probe answered in time is never declared timed out, whichever mechanism ends the hold.
        await using var h = new EngineHarness(o => o.ReleaseMargin = TimeSpan.FromMilliseconds(50));
        var waited = TimeSpan.FromMilliseconds(100);
        uint syn = h.Ingress(Syn(40_211), waited);
        h.Probes.Opened.Single().AnswerInKernel(mptcp: false);

        // Overdue counted from its arrival; the probe's own timer (from the probe's start) has not fired.
        h.Time.Advance(h.Options.Negotiation.ProbeDeadline - waited);
        h.Ingress(PacketBuilder.Build(false, 40_212, TcpFlags.Rst, ReadOnlySpan<byte>.Empty));

        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(syn) is not null, "the held SYN's verdict");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("intercept"), "a TCP-only answer intercepts");
            Assert.That(h.Engine.Counters.HoldsOverdue, Is.Zero);
            Assert.That(h.Engine.Counters.ProbesAnsweredAtDeadline, Is.EqualTo(1));
            Assert.That(h.Events.Events.Where(e => e.Event == "probe").Select(e => e.Outcome), Is.EqualTo(new[] { "answered" }));
        });
    }

    [Test]
    public async Task AHeldSynThatWaitedInTheQueue_IsReleasedAtTheLimitFromItsArrival_BeforeTheProbeTimer()
    {
        await using var h = new EngineHarness();
        var limit = h.Options.Negotiation.ProbeTimeout;
        var waited = TimeSpan.FromMilliseconds(100);
        uint syn = h.Ingress(Syn(40_205), waited);
        Assert.That(h.Verdicts.For(syn), Is.Null, "held: it waited less than half the limit");

        // The probe timer (started when the engine read the SYN) has not fired; the next packet finds the hold overdue.
        h.Time.Advance(limit - waited);
        uint next = h.Ingress(PacketBuilder.Build(false, 40_206, TcpFlags.Rst, ReadOnlySpan<byte>.Empty));

        var hold = h.Events.Events.Single(e => e.Event == "hold");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Verdicts.For(next)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Engine.Counters.HoldsOverdue, Is.EqualTo(1));
            Assert.That(hold.Milliseconds, Is.EqualTo(limit.TotalMilliseconds).Within(1.0), "held the limit, counted from the kernel's receive");
            Assert.That(h.Engine.Counters.MaxHold, Is.LessThanOrEqualTo(limit + TimeSpan.FromMilliseconds(1)));
            Assert.That(h.Engine.Flows.Count, Is.Zero);
        });

        // The probe's own timeout later finds nothing left to release.
        h.Time.Advance(waited);
        await EngineHarness.WaitUntilAsync(() => h.Engine.Negotiator.ProbesInFlight == 0, "the probe resolved");
        Assert.That(h.Verdicts.All.Count(v => v.PacketId == syn), Is.EqualTo(1), "one verdict");
    }

    [Test]
    public async Task WithAReleaseMargin_AHeldSynThatWaitedInTheQueue_IsReleasedAtTheProbeDeadlineFromItsArrival_KeepingTheMarginForStalls()
    {
        await using var h = new EngineHarness(o => o.ReleaseMargin = TimeSpan.FromMilliseconds(50));
        var deadline = h.Options.Negotiation.ProbeDeadline; // 200 ms of the default 250
        var waited = TimeSpan.FromMilliseconds(100);
        uint syn = h.Ingress(Syn(40_207), waited);

        h.Time.Advance(deadline - waited - TimeSpan.FromMilliseconds(1));
        h.Ingress(PacketBuilder.Build(false, 40_208, TcpFlags.Rst, ReadOnlySpan<byte>.Empty));
        Assert.That(h.Verdicts.For(syn), Is.Null, "still held 1 ms before the deadline");

        h.Time.Advance(TimeSpan.FromMilliseconds(1));
        h.Ingress(PacketBuilder.Build(false, 40_209, TcpFlags.Rst, ReadOnlySpan<byte>.Empty));
        var hold = h.Events.Events.Single(e => e.Event == "hold");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Engine.Counters.HoldsOverdue, Is.EqualTo(1));
            Assert.That(hold.Milliseconds, Is.EqualTo(deadline.TotalMilliseconds).Within(1.0), "released at the deadline counted from the kernel's receive");
        });
    }
}
