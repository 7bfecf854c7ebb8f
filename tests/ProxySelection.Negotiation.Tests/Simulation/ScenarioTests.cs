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
}
