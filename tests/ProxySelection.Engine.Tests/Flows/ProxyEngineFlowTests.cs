using System.Net;
using System.Net.Sockets;
using ProxySelection.Engine.Flows;
using ProxySelection.Negotiation;
using ProxySelection.Relay;
using ProxySelection.Wire;

namespace ProxySelection.Engine.Tests.Flows;

/// <summary>The engine driven through its verdict seam with real packets and a fake clock (no root, no queue).</summary>
public sealed class ProxyEngineFlowTests
{
    private static readonly ListenerKey AnyKey = new(80, AddressFamily.InterNetwork, TransportProtocol.Mptcp);

    [Test]
    public async Task CacheMiss_HoldsTheSynAndProbes_TcpOnlyAnswerIntercepts()
    {
        await using var h = new EngineHarness();
        uint syn = h.MpCapableSyn(40_001);
        Assert.That(h.Verdicts.For(syn), Is.Null, "held: no verdict yet");
        Assert.That(h.Probes.Opened, Has.Count.EqualTo(1));

        h.Probes.Opened[0].Answer(mptcp: false);

        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(syn) is not null, "the held SYN's verdict");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("intercept"));
            Assert.That(h.Engine.Counters.Intercepted, Is.EqualTo(1));
            Assert.That(h.Active, Is.Zero, "no slot before the accept");
            Assert.That(h.Events.Events.Select(e => e.Event), Is.EqualTo(new[] { "syn", "probe", "hold" }));
            Assert.That(h.Events.Events[2].Outcome, Is.EqualTo("Intercept"));
        });
    }

    [Test]
    public async Task AdoptedProbesBounded_BeyondTheBound_AnsweredProbeIsClosedAtOnce_TheSynStillIntercepted()
    {
        // A spoofed SYN never completes: each kept probe would hold a real connection on the server (spec §11.3).
        await using var h = new EngineHarness(maxAdoptedProbes: 1);
        using var first = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        using var second = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        uint synA = h.MpCapableSyn(40_011);
        h.Probes.Opened[0].Socket = first;
        h.Probes.Opened[0].Answer(mptcp: false);
        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(synA) is not null, "the first SYN's verdict");

        uint synB = h.MpCapableSyn(40_012, ipv6: true); // another destination: a cache miss of its own
        h.Probes.Opened[1].Socket = second;
        h.Probes.Opened[1].Answer(mptcp: false);
        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(synB) is not null, "the second SYN's verdict");

        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(synA)!.Kind, Is.EqualTo("intercept"));
            Assert.That(h.Verdicts.For(synB)!.Kind, Is.EqualTo("intercept"), "intercepted all the same: the leg opens at the accept");
            Assert.That(h.Engine.Counters.ProbesAdopted, Is.EqualTo(1), "only the first probe is kept");
            Assert.That(h.Probes.Opened[0].Aborted, Is.False, "the first probe waits for its accept");
            Assert.That(h.Probes.Opened[1].Aborted, Is.True, "the second probe is closed at once");
        });
    }

    [Test]
    public async Task ProbeAnsweredWithMptcp_ReleasesTheHeldSynAndLeavesNoFlow()
    {
        await using var h = new EngineHarness();
        uint syn = h.MpCapableSyn(40_002);
        h.Probes.Opened[0].Answer(mptcp: true);

        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(syn) is not null, "the held SYN's verdict");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Engine.Flows.Count, Is.Zero);
            Assert.That(h.Probes.Opened[0].Aborted, Is.True, "the probe is reset");
        });
    }

    [Test]
    public async Task ProbeAnsweredWithAVerifiedClaim_ReleasesTheHeldSyn_TheFirstSynAckDecides()
    {
        await using var h = new EngineHarness(o => o.Mode = SignalingMode.Explicit);
        uint syn = h.MpCapableSyn(40_020);
        var probe = h.Probes.Opened[0];
        h.Ingress(EngineHarness.ProbeSynAck(probe.LocalPort, new ProxySignal(SignalKind.Claim, 9, 1)));
        // A second answer (a retransmission without the claim) does not undo the first.
        h.Ingress(EngineHarness.ProbeSynAck(probe.LocalPort, signal: null));
        probe.Answer(mptcp: true);

        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(syn) is not null, "the held SYN's verdict");
        var probeEvent = h.Events.Events.Single(e => e.Event == "probe");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That((probeEvent.Signal, probeEvent.SignalProxy), Is.EqualTo(("Claim", (int?)9)));
            Assert.That(h.Events.Events.Single(e => e.Event == "hold").Outcome, Is.EqualTo(nameof(HoldOutcome.Release)));
            Assert.That(h.Engine.Flows.Count, Is.Zero);
        });
    }

    [Test]
    public async Task ProbeTimesOut_ReleasesTheHeldSyn()
    {
        await using var h = new EngineHarness();
        uint syn = h.MpCapableSyn(40_003);
        h.Time.Advance(h.Options.Negotiation.ProbeTimeout);

        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(syn) is not null, "the held SYN's verdict");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Engine.Flows.Count, Is.Zero);
            Assert.That(h.Events.Events.Where(e => e.Event == "probe").Select(e => e.Outcome), Has.Member("timed_out"));
        });
    }

    [Test]
    public async Task ProbeAnsweredInTheKernel_CompletionLate_IsReadAtTheDeadline_NotTimedOut()
    {
        // Issue 13: the server answered in microseconds but the process was busy; the deadline reads the socket.
        await using var h = new EngineHarness();
        uint syn = h.MpCapableSyn(40_013);
        var probe = h.Probes.Opened.Single();
        probe.AnswerInKernel(mptcp: false);
        h.Time.Advance(h.Options.Negotiation.ProbeTimeout);

        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(syn) is not null, "the held SYN's verdict");
        probe.CompleteLate();
        await EngineHarness.WaitUntilAsync(() => h.Engine.Counters.ProbesAnswered > 0, "the answer counted");
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("intercept"), "a TCP-only answer intercepts");
            Assert.That(h.Events.Events.Where(e => e.Event == "probe").Select(e => e.Outcome), Is.EqualTo(new[] { "answered" }));
            Assert.That(h.Engine.Counters.ProbesAnswered, Is.EqualTo(1), "counted once, by the deadline's read");
            Assert.That(h.Engine.Counters.ProbesAnsweredAtDeadline, Is.EqualTo(1));
        });
    }

    [Test]
    public async Task ProbeAnswerTakenByTheCompletion_NotHandedOverAtTheDeadline_StillIntercepts()
    {
        // Issue 13's burst: the completion had taken the answer, not yet handed it over, when the deadline read the socket.
        await using var h = new EngineHarness();
        uint syn = h.MpCapableSyn(40_014);
        var probe = h.Probes.Opened.Single();
        using var gate = new ManualResetEventSlim();
        probe.StallFirstMptcpRead(gate);
        probe.AnswerInKernel(mptcp: false);
        var completion = Task.Run(probe.CompleteLate);
        await EngineHarness.WaitUntilAsync(() => probe.MptcpReads > 0, "the completion took the answer");
        h.Time.Advance(h.Options.Negotiation.ProbeTimeout);

        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(syn) is not null, "the held SYN's verdict");
        gate.Set();
        await completion.WaitAsync(EngineHarness.Timeout);
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("intercept"), "an answered probe, not a timed-out one");
            Assert.That(h.Events.Events.Where(e => e.Event == "probe").Select(e => e.Outcome), Is.EqualTo(new[] { "answered" }));
            Assert.That(h.Engine.Counters.ProbesAnswered, Is.EqualTo(1), "counted once, by the completion that took it");
        });
    }

    [Test]
    public async Task CacheSaysTcpOnly_InterceptsAtOnce_CacheSaysMptcp_Passes()
    {
        await using var h = new EngineHarness();
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(EngineHarness.Server), CapabilityState.TcpOnly);
        uint intercepted = h.MpCapableSyn(40_004);
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(EngineHarness.Server), CapabilityState.MptcpCapable);
        uint passed = h.MpCapableSyn(40_005);
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(intercepted)!.Kind, Is.EqualTo("intercept"));
            Assert.That(h.Verdicts.For(passed)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Probes.Opened, Is.Empty);
        });
    }

    [Test]
    public async Task AtCapacity_CacheMiss_DefersUntouched()
    {
        await using var h = new EngineHarness(maxConnections: 1);
        Assert.That(h.Engine.Negotiator.TryAdmit(), Is.True);
        uint syn = h.MpCapableSyn(40_006);
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Events.Events.Single().Verdict, Is.EqualTo(nameof(SynVerdict.Defer)));
        });
        h.Engine.Negotiator.OnConnectionClosed();
    }

    [Test]
    public async Task DuplicateOfAHeldSyn_IsDropped_TheHeldOneKeepsItsVerdict()
    {
        await using var h = new EngineHarness();
        uint first = h.MpCapableSyn(40_007);
        uint copy = h.MpCapableSyn(40_007);
        Assert.That(h.Verdicts.For(copy)!.Kind, Is.EqualTo("drop"));

        h.Probes.Opened[0].Answer(mptcp: false);
        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(first) is not null, "the held SYN's verdict");
        Assert.That(h.Verdicts.For(first)!.Kind, Is.EqualTo("intercept"));
    }

    [Test]
    public async Task RetransmissionOfAnInterceptedSyn_KeepsTheInterceptVerdict()
    {
        await using var h = new EngineHarness();
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(EngineHarness.Server), CapabilityState.TcpOnly);
        h.MpCapableSyn(40_008);
        uint again = h.MpCapableSyn(40_008);
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(again)!.Kind, Is.EqualTo("intercept"));
            Assert.That(h.Events.Events.Last().Reason, Is.EqualTo("Retransmission"));
        });
    }

    [TestCase(TcpOptionKind.Md5Signature)]
    [TestCase(TcpOptionKind.Authentication)]
    public async Task SignedSyn_PassesUntouched_NeverHeldOrProbed(TcpOptionKind kind)
    {
        await using var h = new EngineHarness();
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(EngineHarness.Server), CapabilityState.TcpOnly);
        Span<byte> options = stackalloc byte[TcpHeader.MaxOptionsLength];
        var writer = new TcpOptionWriter(options);
        Assert.That(writer.TryWriteMptcp(EngineHarness.V1Capable), Is.EqualTo(WireError.None));
        var signature = new byte[16];
        Assert.That(kind == TcpOptionKind.Md5Signature ? writer.TryWriteMd5(signature) : writer.TryWriteAuthentication(1, 1, signature[..12]), Is.EqualTo(WireError.None));
        Assert.That(writer.TryPadWithNops(), Is.EqualTo(WireError.None));
        uint syn = h.Ingress(PacketBuilder.Build(false, 40_009, TcpFlags.Syn, writer.Written));
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Probes.Opened, Is.Empty);
            Assert.That(h.Engine.Flows.Count, Is.Zero);
            Assert.That(h.Events.Events.Last().Reason, Is.EqualTo(nameof(DecisionReason.TcpAuthOption)), "the syn event names the negotiator's reason");
        });
    }

    [Test]
    public async Task MptcpV0Syn_PassesUntouched()
    {
        await using var h = new EngineHarness();
        uint syn = h.Ingress(PacketBuilder.Build(false, 40_010, TcpFlags.Syn, new MpCapable(MpCapableForm.SenderKey, 0, MpCapableFlags.HmacSha256, 0x1122334455667788)));
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Probes.Opened, Is.Empty);
            Assert.That(h.Events.Events.Last().Reason, Is.EqualTo(nameof(DecisionReason.MptcpV0)), "the syn event names the negotiator's reason");
        });
    }

    [Test]
    public async Task Draining_NewSynsPass_JoinsOfOwnedTokensAreStillIntercepted()
    {
        await using var h = new EngineHarness();
        Assert.That(h.Engine.Negotiator.Tokens.Register(0xabc), Is.True);
        h.Engine.StopClaiming();
        uint syn = h.MpCapableSyn(40_011);
        uint join = h.JoinSyn(40_012, 0xabc);
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Verdicts.For(join)!.Kind, Is.EqualTo("intercept"));
        });
    }

    [Test]
    public async Task ForeignJoin_NothingAwaitingAccept_PassesAtOnce()
    {
        await using var h = new EngineHarness();
        uint join = h.JoinSyn(40_013, 0xdef);
        Assert.That(h.Verdicts.For(join)!.Kind, Is.EqualTo("accept"));
    }

    [Test]
    public async Task JoinBeforeItsAccept_IsParked_AndPassesAfterTheParkTimeout()
    {
        await using var h = new EngineHarness();
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(EngineHarness.Server), CapabilityState.TcpOnly);
        h.MpCapableSyn(40_014);
        uint join = h.JoinSyn(40_015, 0x123);
        Assert.That(h.Verdicts.For(join), Is.Null, "parked while a connection awaits its accept");

        h.Time.Advance(ParkedJoins.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(join)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Events.Events.Last().Event, Is.EqualTo("join"));
        });
    }

    [Test]
    public async Task JoinAfterAHoldWasIntercepted_BeforeItsAccept_IsParked()
    {
        await using var h = new EngineHarness();
        uint syn = h.MpCapableSyn(40_021);
        h.Probes.Opened[0].Answer(mptcp: false);
        await EngineHarness.WaitUntilAsync(() => h.Verdicts.For(syn) is not null, "the held SYN's verdict");

        uint join = h.JoinSyn(40_022, 0x321);

        Assert.Multiple(() =>
        {
            Assert.That(h.Engine.Flows.AnyAwaitingAccept(), Is.True);
            Assert.That(h.Verdicts.For(join), Is.Null, "parked");
        });
    }

    [Test]
    public void ParkedJoin_ItsTokenRegistered_IsTakenOverNotTimedOut()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var timedOut = new List<ParkedJoin>();
        var joins = new ParkedJoins(time, timedOut.Add);
        var join = new ParkedJoin(1, 0, 0x55, new FlowEndPoints(EngineHarness.Client, EngineHarness.Server));
        Assert.That(joins.TryPark(join, _ => false), Is.True);

        Assert.That(joins.Take(0x55), Is.EqualTo(new[] { join }));
        time.Advance(ParkedJoins.Timeout);
        Assert.Multiple(() =>
        {
            Assert.That(timedOut, Is.Empty);
            Assert.That(joins.Count, Is.Zero);
            Assert.That(joins.TryPark(join with { PacketId = 2 }, token => token == 0x55), Is.False, "a known token is not parked");
        });
    }

    [Test]
    public async Task InterceptedButNeverAccepted_ExpiresAtTheAdoptionDeadline_NoSlotHeld()
    {
        await using var h = new EngineHarness();
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(EngineHarness.Server), CapabilityState.TcpOnly);
        h.MpCapableSyn(40_016);
        Assert.That(h.Engine.Flows.Count, Is.EqualTo(1));

        h.Time.Advance(h.Options.AdoptionTimeout);

        Assert.Multiple(() =>
        {
            Assert.That(h.Engine.Flows.Count, Is.Zero);
            Assert.That(h.Engine.Flows.AnyAwaitingAccept(), Is.False);
            Assert.That(h.Active, Is.Zero);
            Assert.That(h.Events.Events.Last().Event, Is.EqualTo("expired"));
        });
    }

    [Test]
    public async Task VerdictFails_TheSynIsAcceptedUntouched_AndTheFlowEnds()
    {
        await using var h = new EngineHarness();
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(EngineHarness.Server), CapabilityState.TcpOnly);
        h.Verdicts.FailMarks = true;
        uint syn = h.MpCapableSyn(40_017);
        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Engine.Counters.HookFailures, Is.EqualTo(1));
            Assert.That(h.Engine.Flows.Count, Is.Zero);
            Assert.That(h.Active, Is.Zero);
        });
    }

    [Test]
    public async Task Accepted_TakesOneSlot_RelayClosed_ReleasesIt()
    {
        await using var h = new EngineHarness();
        using var pair = LoopbackConnection.Create();
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(pair.ListenerEndPoint), CapabilityState.TcpOnly);
        uint syn = h.Ingress(EngineHarness.SynBetween(pair.ClientEndPoint, pair.ListenerEndPoint));
        Assert.That(h.Verdicts.For(syn)!.Kind, Is.EqualTo("intercept"));
        Assert.That(h.Active, Is.Zero);

        var accepted = await pair.ConnectAsync();
        var relay = h.Engine.OnAcceptedAsync(accepted, AnyKey);
        // The relay connects upstream to the original destination: the same loopback listener.
        using var upstream = await pair.Listener.AcceptAsync().WaitAsync(EngineHarness.Timeout);
        await EngineHarness.WaitUntilAsync(() => h.Active == 1, "the slot taken at the accept");

        pair.ClientSide.Shutdown(SocketShutdown.Both);
        pair.ClientSide.Close();
        upstream.Shutdown(SocketShutdown.Both);
        upstream.Close();
        await relay.WaitAsync(EngineHarness.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(h.Active, Is.Zero);
            Assert.That(h.Engine.Flows.Count, Is.Zero);
            Assert.That(h.Engine.Counters.Relayed, Is.EqualTo(1));
            Assert.That(h.Events.Events.Select(e => e.Event), Is.SupersetOf(new[] { "syn", "accepted", "relay" }));
        });
    }

    [Test]
    public async Task Accepted_NoSlotLeft_ResetsTheClientAndHoldsNothing()
    {
        await using var h = new EngineHarness(maxConnections: 1);
        using var pair = LoopbackConnection.Create();
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(pair.ListenerEndPoint), CapabilityState.TcpOnly);
        h.Ingress(EngineHarness.SynBetween(pair.ClientEndPoint, pair.ListenerEndPoint));
        // Another connection took the last slot between the intercept and the accept.
        Assert.That(h.Engine.Negotiator.TryAdmit(), Is.True);

        var accepted = await pair.ConnectAsync();
        await h.Engine.OnAcceptedAsync(accepted, AnyKey).WaitAsync(EngineHarness.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(h.Active, Is.EqualTo(1), "only the other connection's");
            Assert.That(h.Engine.Flows.Count, Is.Zero);
        });
        h.Engine.Negotiator.OnConnectionClosed();
    }

    [Test]
    public async Task Dispose_WithFlowsHeldInterceptedAndRelaying_ReleasesEverySlot()
    {
        var h = new EngineHarness();
        using var pair = LoopbackConnection.Create();
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(pair.ListenerEndPoint), CapabilityState.TcpOnly);
        h.Ingress(EngineHarness.SynBetween(pair.ClientEndPoint, pair.ListenerEndPoint));
        var accepted = await pair.ConnectAsync();
        var relay = h.Engine.OnAcceptedAsync(accepted, AnyKey);
        using var upstream = await pair.Listener.AcceptAsync().WaitAsync(EngineHarness.Timeout);
        await EngineHarness.WaitUntilAsync(() => h.Active == 1, "the relaying flow's slot");
        h.MpCapableSyn(40_018); // held for a probe (another destination's cache entry is empty)
        h.Engine.Negotiator.Cache.Set(DestinationKey.From(EngineHarness.Server), CapabilityState.TcpOnly);
        h.MpCapableSyn(40_019); // intercepted, awaiting its accept

        await h.DisposeAsync().AsTask().WaitAsync(EngineHarness.Timeout);
        await relay.WaitAsync(EngineHarness.Timeout);

        Assert.Multiple(() =>
        {
            Assert.That(h.Active, Is.Zero);
            Assert.That(h.Engine.Flows.Count, Is.Zero);
        });
    }

    [Test]
    public void Options_AdoptionTimeout_DefaultsToThreeSecondsAndIsAtMostTen()
    {
        var ring = new Wire.MpProxy.MpProxyKeyRing(1, new byte[32]);
        var options = new ProxyEngineOptions { KeyRing = ring };
        Assert.Multiple(() =>
        {
            Assert.That(options.AdoptionTimeout, Is.EqualTo(TimeSpan.FromSeconds(3)));
            Assert.That(options.Validate(), Is.Empty);
            Assert.That((options with { AdoptionTimeout = TimeSpan.FromSeconds(11) }).Validate(), Has.Some.Contains("AdoptionTimeout"));
        });
    }
}
