using System.Net;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Tests.Diagnostics;

/// <summary>The accepted and relay lines (log and event): the upstream connect's own time beside the lifetime, and the upstream leg's subflows.</summary>
public sealed class RelayLineTests
{
    private static readonly RelayResult UpgradeRole = new()
    {
        Client = new IPEndPoint(IPAddress.Parse("198.18.1.2"), 40000),
        OriginalDestination = new IPEndPoint(IPAddress.Parse("198.18.3.2"), 80),
        Reason = CloseReason.Completed,
        ConnectStatus = UpstreamConnectStatus.Connected,
        ConnectTime = TimeSpan.FromMilliseconds(2.5),
        Duration = TimeSpan.FromSeconds(4),
        BytesClientToUpstream = 10,
        BytesUpstreamToClient = 20,
        ClientMaxSubflows = 0,
        UpstreamMaxSubflows = 2,
    };

    [Test]
    public void AcceptedEvent_PlainTcpClientLeg_NamesNoToken_MptcpLegNamesItsToken()
    {
        var sink = new ListSink();
        var flow = new FlowEndPoints(UpgradeRole.Client!, UpgradeRole.OriginalDestination!);
        var events = new EngineEvents(sink, new FakeTimeProvider());

        events.Accepted(flow, token: null);
        events.Accepted(flow, token: 0x24af78d3);

        Assert.Multiple(() =>
        {
            Assert.That(sink.Events[0].Token, Is.Null, "the upgrade role's client leg is plain TCP: no token names it");
            Assert.That(ProxyEventText.Format(sink.Events[0]), Is.EqualTo("accepted 198.18.1.2:40000 -> 198.18.3.2:80 tcp"));
            Assert.That(ProxyEventText.Format(sink.Events[1]), Is.EqualTo("accepted 198.18.1.2:40000 -> 198.18.3.2:80 token=24af78d3"));
        });
    }

    [Test]
    public void RelayEvent_UpgradeRole_CarriesTheConnectTimeAndTheUpstreamSubflows()
    {
        var sink = new ListSink();

        new EngineEvents(sink, new FakeTimeProvider()).Relay(UpgradeRole);

        var e = sink.Events.Single();
        Assert.Multiple(() =>
        {
            Assert.That(e.ConnectMilliseconds, Is.EqualTo(2.5));
            Assert.That(e.Milliseconds, Is.EqualTo(4000));
            Assert.That(e.Subflows, Is.Zero);
            Assert.That(e.UpstreamSubflows, Is.EqualTo(2));
            Assert.That(ProxyEventText.Format(e), Does.EndWith("subflows=0 upstream_subflows=2 client=NotMptcp upstream=NotMptcp connect=Connected in 2.5 ms, lasted 4000 ms"));
        });
    }

    [Test]
    public void RelayLogLine_UpgradeRole_ConnectTimeNotTheLifetimeAndTheUpstreamSubflows()
    {
        var log = new RecordingLogger();

        ProxyEngineLog.Relayed(log, UpgradeRole.Client, UpgradeRole.OriginalDestination, UpgradeRole.Reason, 10, 20, UpgradeRole.ClientMaxSubflows,
            UpgradeRole.UpstreamMaxSubflows, MptcpStatus.NotMptcp, MptcpStatus.Active,
            ProxyEventText.Connect(UpgradeRole.ConnectStatus.ToString(), UpgradeRole.ConnectTime?.TotalMilliseconds), UpgradeRole.Duration.TotalMilliseconds);

        Assert.That(log.Entries.Single().Message, Is.EqualTo(
            "relay 198.18.1.2:40000 -> 198.18.3.2:80: Completed up=10 down=20 subflows=0 upstream_subflows=2 client=NotMptcp upstream=Active " +
            "connect=Connected in 2.5 ms, lasted 4000 ms"));
    }

    [Test]
    public void RelayEvent_AdoptedProbe_NoConnectTimeSaysTheProbeWasTheConnect()
    {
        var sink = new ListSink();

        new EngineEvents(sink, new FakeTimeProvider()).Relay(UpgradeRole with { ConnectTime = null });

        Assert.That(sink.Events.Single().ConnectMilliseconds, Is.Null);
        Assert.That(ProxyEventText.Format(sink.Events.Single()), Does.Contain("connect=Connected (the probe's connection), lasted 4000 ms"));
    }

    private sealed class ListSink : IProxyEventSink
    {
        public List<ProxyEvent> Events { get; } = [];

        public bool Enabled => true;

        public void Write(ProxyEvent proxyEvent) => Events.Add(proxyEvent);
    }
}
