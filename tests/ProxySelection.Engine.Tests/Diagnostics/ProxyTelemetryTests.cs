using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using ProxySelection.Engine;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Interception.Netlink;
using ProxySelection.Negotiation;
using ProxySelection.Relay;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine.Tests.Diagnostics;

/// <summary>
/// The engine's instrumentation without a kernel: a held connection's spans and how the kernel's subflow events find
/// them by token, the metrics it records, and that nothing is allocated per SYN while nobody listens.
/// </summary>
[NonParallelizable]
public sealed class ProxyTelemetryTests
{
    private static readonly FlowEndPoints Flow = new(new IPEndPoint(IPAddress.Parse("198.18.1.2"), 40000), new IPEndPoint(IPAddress.Parse("198.18.3.2"), 80));
    private static readonly IPEndPoint Proxy = new(IPAddress.Parse("198.18.3.2"), 80);

    [Test]
    public void HeldConnection_SubflowEventsBeforeTheAccept_ReplayedOntoItsRootSpan()
    {
        var stopped = new List<Activity>();
        using var listener = Listen(stopped);
        using var telemetry = Create();

        Hold(telemetry, probeId: 7);
        telemetry.ProbeEnded(7, answered: true, mpCapable: false, signal: null);
        telemetry.HoldResolved(Flow, new HoldResolution { HoldId = 1, ProbeId = 7, Outcome = HoldOutcome.Intercept, Reason = DecisionReason.ProbeAnswered });
        // The kernel reports the first subflows before the listener's accept reads the token.
        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.Established, 0xabc, "198.18.1.2", 40000));
        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.SubflowEstablished, 0xabc, "198.18.2.2", 40001));
        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.SubflowEstablished, 0xdef, "198.18.2.2", 40002));
        var trace = telemetry.Accepted(Flow, 0xabc);
        telemetry.Relayed(trace, Result(CloseReason.Completed));

        var root = stopped.Single(a => a.OperationName == "proxysel.connection");
        var probe = stopped.Single(a => a.OperationName == "proxysel.probe");
        Assert.Multiple(() =>
        {
            Assert.That(root.Parent, Is.Null);
            Assert.That(root.ParentSpanId, Is.EqualTo(default(ActivitySpanId)));
            Assert.That(probe.ParentSpanId, Is.EqualTo(root.SpanId));
            Assert.That(probe.TraceId, Is.EqualTo(root.TraceId));
            Assert.That(probe.GetTagItem("proxysel.probe.outcome"), Is.EqualTo("answered"));
            Assert.That(root.GetTagItem("proxysel.decision"), Is.EqualTo("intercept"));
            Assert.That(root.GetTagItem("proxysel.reason"), Is.EqualTo("ProbeAnswered"));
            Assert.That(root.GetTagItem("proxysel.role"), Is.EqualTo("downgrade"));
            Assert.That(root.GetTagItem("client.address"), Is.EqualTo("198.18.1.2"));
            Assert.That(root.GetTagItem("server.port"), Is.EqualTo(80));
            Assert.That(root.GetTagItem("proxysel.bytes.downstream"), Is.EqualTo(2000L));
            Assert.That(root.GetTagItem("proxysel.subflows"), Is.EqualTo(2));
            Assert.That(root.GetTagItem("proxysel.close_reason"), Is.EqualTo("Completed"));
            Assert.That(root.GetTagItem("proxysel.mptcp.token"), Is.EqualTo("00000abc"));
            Assert.That(root.Events.Select(e => e.Name), Is.EqualTo(new[] { "proxysel.subflow.established", "proxysel.subflow.established" }),
                "the two events of its token, not the other connection's");
            Assert.That(root.Events.Select(e => e.Tags.First(t => t.Key == "network.peer.address").Value), Is.EqualTo(new[] { "198.18.1.2", "198.18.2.2" }));
        });
    }

    [Test]
    public void HeldConnection_Released_TraceEndsNotHeld()
    {
        var stopped = new List<Activity>();
        using var listener = Listen(stopped);
        using var telemetry = Create();

        Hold(telemetry, probeId: 3);
        telemetry.ProbeEnded(3, answered: false, mpCapable: false, signal: null);
        telemetry.HoldResolved(Flow, new HoldResolution { HoldId = 1, ProbeId = 3, Outcome = HoldOutcome.Release, Reason = DecisionReason.ProbeReset });

        var root = stopped.Single(a => a.OperationName == "proxysel.connection");
        Assert.That(root.GetTagItem("proxysel.decision"), Is.EqualTo("release"));
        Assert.That(root.GetTagItem("proxysel.close_reason"), Is.EqualTo("not_held"));
        Assert.That(stopped.Single(a => a.OperationName == "proxysel.probe").Status, Is.EqualTo(ActivityStatusCode.Error));
        Assert.That(telemetry.Accepted(Flow, 0), Is.Null, "nothing left to accept");
    }

    [Test]
    public void Metrics_DecisionsBytesCacheAndLatency_RecordedWithTheirTags()
    {
        var measured = new List<(string Name, double Value, string? Tag)>();
        using var telemetry = Create();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == telemetry.Meter)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        meters.SetMeasurementEventCallback<long>((i, v, tags, _) => measured.Add((i.Name, v, TagOf(tags))));
        meters.SetMeasurementEventCallback<double>((i, v, tags, _) => measured.Add((i.Name, v, TagOf(tags))));
        meters.Start();
        var counters = new ProxyCounters(telemetry);

        telemetry.OnSynDecision(Flow, SynKind.MpCapable, new SynDecision { Verdict = SynVerdict.Intercept, Reason = DecisionReason.ServerTcpOnly });
        telemetry.OnSynDecision(Flow, SynKind.MpCapable, new SynDecision { Verdict = SynVerdict.HoldAndProbe, Reason = DecisionReason.CacheMiss, ProbeId = 1, StartProbe = true });
        telemetry.ProbeEnded(1, answered: true, mpCapable: true, signal: null);
        counters.AddIntercepted();
        counters.AddPassed();
        counters.RecordHold(TimeSpan.FromMilliseconds(40));
        telemetry.Relayed(null, Result(CloseReason.Completed));
        meters.RecordObservableInstruments();

        Assert.That(measured, Is.SupersetOf(new (string, double, string?)[]
        {
            ("proxysel.cache.hits", 1, null),
            ("proxysel.cache.misses", 1, null),
            ("proxysel.connections", 1, "intercept"),
            ("proxysel.connections", 1, "pass"),
            ("proxysel.verdict.duration", 0.04, null),
            ("proxysel.bytes", 1000, "upstream"),
            ("proxysel.bytes", 2000, "downstream"),
            ("proxysel.subflows", 2, null),
            ("proxysel.connections.active", 5, "intercept"),
            ("proxysel.queue.drops", 3, null),
        }));
        Assert.That(measured.Single(m => m.Name == "proxysel.probe.duration").Tag, Is.EqualTo("answered"));
    }

    [Test]
    public void NoListener_SynDecisions_AllocateNothing()
    {
        using var telemetry = Create();
        var counters = new ProxyCounters(telemetry);
        var intercept = new SynDecision { Verdict = SynVerdict.Intercept, Reason = DecisionReason.ServerTcpOnly };
        var pass = new SynDecision { Verdict = SynVerdict.Pass, Reason = DecisionReason.NotMptcp };
        telemetry.OnSynDecision(Flow, SynKind.MpCapable, intercept);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            telemetry.OnSynDecision(Flow, SynKind.MpCapable, intercept);
            telemetry.OnSynDecision(Flow, SynKind.Tcp, pass);
            counters.AddPassed();
            counters.AddIntercepted();
            counters.RecordHold(TimeSpan.FromMilliseconds(1));
        }

        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }

    [Test]
    public void OnPathManagerEvent_ClosedBeforeTheAccept_PendingEntryRemoved()
    {
        using var telemetry = Create();

        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.Established, 0xabc, "198.18.1.2", 40000));
        Assert.That(telemetry.PendingTokens, Is.EqualTo(1));
        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.Closed, 0xabc, "198.18.1.2", 40000));

        Assert.That(telemetry.PendingTokens, Is.Zero);
    }

    [Test]
    public void OnPathManagerEvent_ClosedOfATrackedToken_LeavesNoPendingEntry()
    {
        var stopped = new List<Activity>();
        using var listener = Listen(stopped);
        using var telemetry = Create();
        telemetry.OnSynDecision(Flow, SynKind.MpCapable, new SynDecision { Verdict = SynVerdict.Intercept, Reason = DecisionReason.ServerTcpOnly });
        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.Established, 0xabc, "198.18.1.2", 40000));
        var trace = telemetry.Accepted(Flow, 0xabc);

        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.SubflowEstablished, 0xabc, "198.18.2.2", 40001));
        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.Closed, 0xabc, "198.18.1.2", 40000));
        Assert.That(telemetry.PendingTokens, Is.Zero, "drained at the accept, not buffered again after it");
        telemetry.Relayed(trace, Result(CloseReason.Completed));

        var root = stopped.Single(a => a.OperationName == "proxysel.connection");
        Assert.That(root.Events.Select(e => e.Name),
            Is.EqualTo(new[] { "proxysel.subflow.established", "proxysel.subflow.established", "proxysel.mptcp.closed" }));
    }

    [Test]
    public void OnPathManagerEvent_BoundFullOfStaleTokens_StaleOnesEvictedAndNewBuffered()
    {
        var time = new ManualTime();
        using var telemetry = Create(time);
        for (uint token = 1; token <= 4096; token++)
        {
            telemetry.OnPathManagerEvent(Event(MptcpPmEventType.Established, token, "198.18.1.2", 40000));
        }

        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.Established, 5000, "198.18.1.2", 40000));
        Assert.That(telemetry.PendingTokens, Is.EqualTo(4096), "the bound holds while the tokens are fresh");

        time.Advance(TimeSpan.FromSeconds(11));
        telemetry.OnPathManagerEvent(Event(MptcpPmEventType.Established, 5001, "198.18.1.2", 40000));

        Assert.That(telemetry.PendingTokens, Is.EqualTo(1), "the stale tokens evicted, the new one buffered");
    }

    [Test]
    public void OnSynDecision_TraceOlderThanItsLifetime_EndedExpired()
    {
        var stopped = new List<Activity>();
        using var listener = Listen(stopped);
        var time = new ManualTime();
        using var telemetry = Create(time);
        Hold(telemetry, probeId: 7);

        // Probe timeout 250 ms, adoption timeout 10 s: a trace older than 2 × (both) leaked.
        time.Advance(TimeSpan.FromSeconds(21));
        var other = new FlowEndPoints(new IPEndPoint(IPAddress.Parse("198.18.1.2"), 40001), Flow.Destination);
        telemetry.OnSynDecision(other, SynKind.MpCapable, new SynDecision { Verdict = SynVerdict.Intercept, Reason = DecisionReason.ServerTcpOnly });

        var expired = stopped.Single(a => a.OperationName == "proxysel.connection");
        Assert.Multiple(() =>
        {
            Assert.That(expired.GetTagItem("client.port"), Is.EqualTo(40000));
            Assert.That(expired.GetTagItem("proxysel.close_reason"), Is.EqualTo("expired"));
            Assert.That(telemetry.OpenTraces, Is.EqualTo(1), "only the new connection's");
            Assert.That(telemetry.Accepted(Flow, 0), Is.Null);
            Assert.That(telemetry.Accepted(other, 0), Is.Not.Null);
        });
    }

    [Test]
    public void OpenTraces_DecidedResolvedAndRedecided_CountsTheOpenOnes()
    {
        var stopped = new List<Activity>();
        using var listener = Listen(stopped);
        using var telemetry = Create();

        Hold(telemetry, probeId: 3);
        Assert.That(telemetry.OpenTraces, Is.EqualTo(1));
        Hold(telemetry, probeId: 4);
        Assert.That(telemetry.OpenTraces, Is.EqualTo(1), "the same flow again replaces its trace");
        Assert.That(stopped.Single(a => a.OperationName == "proxysel.connection").GetTagItem("proxysel.close_reason"), Is.EqualTo("superseded"));
        telemetry.HoldResolved(Flow, new HoldResolution { HoldId = 1, ProbeId = 4, Outcome = HoldOutcome.Release, Reason = DecisionReason.ProbeReset });

        Assert.That(telemetry.OpenTraces, Is.Zero);
    }

    private static ProxyTelemetry Create(TimeProvider? time = null) =>
        new(new ProxyEngineOptions { KeyRing = new MpProxyKeyRing(1, new byte[32]) }, time ?? TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, () => 5, () => 3);

    /// <summary>A clock moved by the test only.</summary>
    private sealed class ManualTime : TimeProvider
    {
        private long _now = 1;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _now;

        public void Advance(TimeSpan by) => _now += by.Ticks;
    }

    private static void Hold(ProxyTelemetry telemetry, long probeId) =>
        telemetry.OnSynDecision(Flow, SynKind.MpCapable,
            new SynDecision { Verdict = SynVerdict.HoldAndProbe, Reason = DecisionReason.CacheMiss, HoldId = 1, ProbeId = probeId, StartProbe = true });

    private static MptcpPmEvent Event(MptcpPmEventType type, uint token, string client, int port) => new()
    {
        Type = type,
        Token = token,
        Source = Proxy,
        Destination = new IPEndPoint(IPAddress.Parse(client), port),
        ServerSide = true,
    };

    private static RelayResult Result(CloseReason reason) => new()
    {
        Client = Flow.Client,
        OriginalDestination = Flow.Destination,
        Reason = reason,
        BytesClientToUpstream = 1000,
        BytesUpstreamToClient = 2000,
        ClientMaxSubflows = 2,
    };

    private static ActivityListener Listen(List<Activity> stopped)
    {
        var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == ProxyTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = stopped.Add,
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }

    private static string? TagOf(ReadOnlySpan<KeyValuePair<string, object?>> tags) => tags.Length == 0 ? null : tags[0].Value as string;
}
