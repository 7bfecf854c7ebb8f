using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Spec;

/// <summary>The limits spec §10.7 states, reproduced on the chain simulator (the real negotiator at every proxy).</summary>
public class SpecLimitsTests
{
    private static ProxyHop Down(byte id, SignalingMode mode = SignalingMode.Explicit) => new(id, ProxyRole.Downgrade, Mode: mode);

    private static ProxyHop Up(byte id) => new(id, ProxyRole.Upgrade);

    private static MiddleboxHop Box(MiddleboxBehavior behavior) => new(behavior);

    [Test]
    public void DowngraderBeforeUpgrader_WithAnMptcpStripper_EachMptcpStretchGetsItsOwnHolders()
    {
        var spec = new ChainSpec(true, false, [Down(1), Box(MiddleboxBehavior.StripMptcp), Up(2), Down(3)]);
        foreach (var c in ChainSimulator.Run(spec, 1).Connections)
        {
            Assert.Multiple(() =>
            {
                Assert.That(c.Completed && c.JoinsLanded, Is.True, c.ToString());
                Assert.That(c.Holders.Select(h => (h.ProxyId, h.Role)), Is.EqualTo(new[]
                {
                    ((byte)1, ProxyRole.Downgrade),
                    ((byte)2, ProxyRole.Upgrade),
                    ((byte)3, ProxyRole.Downgrade),
                }), "client-P1 and P2-P3 are two MPTCP stretches, each terminated at both ends");
            });
        }
    }

    [Test]
    public void DowngraderBeforeUpgrader_NoStripper_OneHolder()
    {
        var spec = new ChainSpec(true, false, [Down(1), Up(2), Down(3)]);
        var holders = ChainSimulator.Run(spec, 1).Connections.Select(c => string.Join(",", c.Holders.Select(h => h.ProxyId)));
        Assert.That(holders, Is.All.EqualTo("1"));
    }

    [Test]
    public void PathRoundTripAboveTheProbeTimeout_HoldsInTurn_SetupPassesOneSecond_ThenUnresolvedPasses()
    {
        // A chain the chaos run found (seed 33): 36 ms links, direct round trip 504 ms against a 400 ms probe timeout.
        var spec = new ChainSpec(false, false,
        [
            new ProxyHop(1, ProxyRole.Upgrade, SelectionPolicy.Priority, 9, AtCapacity: true),
            new ProxyHop(2, ProxyRole.Downgrade, SelectionPolicy.NearestServer, 9, ReturnBypasses: true),
            new ProxyHop(3, ProxyRole.Upgrade, SelectionPolicy.Priority, 7, Mode: SignalingMode.Implicit),
            new ProxyHop(4, ProxyRole.Upgrade, SelectionPolicy.NearestServer, 14),
            new ProxyHop(5, ProxyRole.Upgrade, SelectionPolicy.NearestServer, 2),
            Box(MiddleboxBehavior.UnknownVersion),
        ])
        {
            LinkLatency = TimeSpan.FromMilliseconds(36),
            ProbeTimeout = TimeSpan.FromMilliseconds(400),
        };
        var connections = ChainSimulator.Run(spec, 33).Connections;
        Assert.Multiple(() =>
        {
            Assert.That(connections.All(c => c.Completed), Is.True);
            Assert.That(connections[0].SetupTime, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(1)), connections[0].ToString());
            Assert.That(connections[1].SetupTime, Is.LessThan(TimeSpan.FromSeconds(1)), "the timed-out probes left Unresolved: no hold");
        });
    }

    [Test]
    public void ThreeProbesLostInTurn_AtTheCap_SetupPassesOneSecond()
    {
        // 10 ms links, direct round trip 140 ms: 3 x 400 ms + 140 ms.
        var spec = new ChainSpec(true, false,
            [Down(1), Box(MiddleboxBehavior.LoseFirstProbe), Down(2), Box(MiddleboxBehavior.LoseFirstProbe), Down(3), Box(MiddleboxBehavior.LoseFirstProbe)])
        {
            LinkLatency = TimeSpan.FromMilliseconds(10),
            ProbeTimeout = NegotiatorOptions.MaxProbeTimeout,
        };
        var first = ChainSimulator.Run(spec, 1).Connections[0];
        Assert.Multiple(() =>
        {
            Assert.That(first.Completed, Is.True);
            Assert.That(first.SetupTime, Is.EqualTo(TimeSpan.FromMilliseconds(1340)));
        });
    }
}
