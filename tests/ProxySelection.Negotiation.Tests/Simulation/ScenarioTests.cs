using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

public class ScenarioTests
{
    private static ProxyHop Down(byte id, SelectionPolicy policy = SelectionPolicy.First, byte priority = 8, bool full = false, SignalingMode mode = SignalingMode.Explicit) =>
        new(id, ProxyRole.Downgrade, policy, priority, full, mode);

    private static ProxyHop Up(byte id, SelectionPolicy policy = SelectionPolicy.First, byte priority = 8, bool full = false, SignalingMode mode = SignalingMode.Explicit) =>
        new(id, ProxyRole.Upgrade, policy, priority, full, mode);

    private static ChainOutcome Run(ChainSpec spec, int seed = 1)
    {
        var outcome = ChainSimulator.Run(spec, seed);
        TestContext.Out.WriteLine(outcome);
        foreach (var connection in outcome.Connections)
        {
            Assert.That(connection.Violations, Is.Empty, outcome.ToString());
        }

        return outcome;
    }

    [Test]
    public void Explicit_First_MptcpClientTcpServer_FirstProxyHoldsAndAdoptsProbe()
    {
        var outcome = Run(new ChainSpec(true, false, [Down(1), Down(2), Down(3)]));
        Assert.Multiple(() =>
        {
            foreach (var c in outcome.Connections)
            {
                Assert.That(c.Completed, Is.True);
                Assert.That(c.Holders.Select(h => h.ProxyId), Is.EqualTo(new byte[] { 1 }));
                Assert.That(c.ClientGotMptcp, Is.True);
                Assert.That(c.ClientSawClaim, Is.True);
                Assert.That(c.JoinsLanded, Is.True);
            }

            Assert.That(outcome.Connections[0].ContextHolders, Is.EqualTo(1));
            Assert.That(outcome.Connections[0].ExtraUpstreamConnections, Is.Zero);
        });
    }

    [Test]
    public void Explicit_NearestServer_MptcpClientTcpServer_LastProxyHolds()
    {
        var outcome = Run(new ChainSpec(true, false, [Down(1, SelectionPolicy.NearestServer), Down(2, SelectionPolicy.NearestServer), Down(3, SelectionPolicy.NearestServer)]));
        foreach (var c in outcome.Connections)
        {
            Assert.That(c.Holders.Select(h => h.ProxyId), Is.EqualTo(new byte[] { 3 }));
        }
    }

    [Test]
    public void Implicit_MptcpClientTcpServer_ProxyNearestServerHoldsAndEveryProxyKeepsContext()
    {
        var outcome = Run(new ChainSpec(true, false, [Down(1, mode: SignalingMode.Implicit), Down(2, mode: SignalingMode.Implicit), Down(3, mode: SignalingMode.Implicit)]));
        Assert.That(outcome.Connections[0].Holders.Select(h => h.ProxyId), Is.EqualTo(new byte[] { 3 }));
        Assert.That(outcome.Connections[0].ContextHolders, Is.EqualTo(3));
    }

    [Test]
    public void HybridAccess_TcpClientTcpServer_UpgradeThenDowngrade()
    {
        var outcome = Run(new ChainSpec(false, false, [Up(1), Down(2)]));
        foreach (var c in outcome.Connections)
        {
            Assert.That(c.Holders, Is.EqualTo(new[] { new Holder(1, 1, ProxyRole.Upgrade), new Holder(2, 2, ProxyRole.Downgrade) }));
            Assert.That(c.JoinsLanded, Is.True);
        }
    }

    [Test]
    public void MptcpBothEnds_NoProxyActs()
    {
        var outcome = Run(new ChainSpec(true, true, [Down(1), Up(2), Down(3, SelectionPolicy.NearestServer)]));
        foreach (var c in outcome.Connections)
        {
            Assert.That(c.MptcpEndToEnd, Is.True);
            Assert.That(c.Holders, Is.Empty);
        }
    }

    [Test]
    public void ProbeLostBeforeTheNextProxy_ProberReleasesAtItsTimeoutAndTheNextProxyTakesOver()
    {
        var outcome = Run(new ChainSpec(true, false, [Down(1), new MiddleboxHop(MiddleboxBehavior.LoseFirstProbe), Down(2)]));
        var first = outcome.Connections[0];
        Assert.Multiple(() =>
        {
            Assert.That(first.Holders.Select(h => h.ProxyId), Is.EqualTo(new byte[] { 2 }));
            Assert.That(first.SetupTime, Is.EqualTo(TimeSpan.FromMilliseconds(250) + first.DirectRoundTrip), "one probe timeout, then the path");
            Assert.That(outcome.Connections[1].Holders.Select(h => h.ProxyId), Is.EqualTo(new byte[] { 2 }), "P1 passes meanwhile (Unresolved)");
        });
    }

    [Test]
    public void ProbeLostAfterTheNextProxy_ItPassesTheReleasedSyn_PlainTcpFallback()
    {
        var outcome = Run(new ChainSpec(true, false, [Down(1), Down(2), new MiddleboxHop(MiddleboxBehavior.LoseFirstProbe)]));
        var first = outcome.Connections[0];
        Assert.Multiple(() =>
        {
            Assert.That(first.Completed, Is.True);
            Assert.That(first.Holders, Is.Empty, "P2 saw the probe pass (ProbedByOther): it does not hold the SYN a second time");
            Assert.That(first.ClientGotMptcp, Is.False);
            Assert.That(first.ContextHolders, Is.EqualTo(1));
        });
    }

    [TestCase(250, 600)]
    [TestCase(400, 900)]
    public void TwoProbesLostInTurn_HoldsAddUp(int probeTimeoutMs, int expectedSetupMs)
    {
        // 10 ms links, direct round trip 100 ms: the client's SYN waits 2 x timeout + the path. At the 400 ms cap
        // that is 900 ms (the former 450 ms cap reached 1 s exactly: spec §8.3).
        var spec = new ChainSpec(true, false, [Down(1), new MiddleboxHop(MiddleboxBehavior.LoseFirstProbe), Down(2), new MiddleboxHop(MiddleboxBehavior.LoseFirstProbe)])
        {
            ProbeTimeout = TimeSpan.FromMilliseconds(probeTimeoutMs),
            LinkLatency = TimeSpan.FromMilliseconds(10),
        };
        var first = ChainSimulator.Run(spec, 1).Connections[0];
        Assert.Multiple(() =>
        {
            Assert.That(first.SetupTime, Is.EqualTo(TimeSpan.FromMilliseconds(expectedSetupMs)));
            Assert.That(first.Completed, Is.True, "both release untouched: plain TCP");
            Assert.That(first.Holders, Is.Empty);
        });
    }
}
