using System.Globalization;
using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>The random chains reach every outcome the properties talk about, so the properties are not vacuous.</summary>
public class ChainCoverageTests
{
    [Test]
    public void HostileChains_ReachEveryOutcome_AndNoSetupNearTheSynRetransmission()
    {
        var connections = Enumerable.Range(0, 3_000)
            .Select(seed => ChainSimulator.Run(ChainGenerator.Generate(seed, hostile: true), seed))
            .SelectMany(o => o.Connections)
            .ToList();
        int hybrid = connections.Count(c => c.Holders.Count == 2);
        int downgradeOnly = connections.Count(c => c.Holders.Count == 1 && c.Holders[0].Role == ProxyRole.Downgrade);
        int upgradeOnly = connections.Count(c => c.Holders.Count == 1 && c.Holders[0].Role == ProxyRole.Upgrade);
        int endToEnd = connections.Count(c => c.MptcpEndToEnd);
        int plain = connections.Count(c => c.Holders.Count == 0 && !c.MptcpEndToEnd);
        int timedOut = connections.Count(c => c.SetupTime >= TimeSpan.FromMilliseconds(250));
        var slowest = connections.Max(c => c.SetupTime);
        TestContext.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{connections.Count} connections: hybrid {hybrid}, downgrade only {downgradeOnly}, upgrade only {upgradeOnly}, MPTCP end to end {endToEnd}, plain TCP {plain}, held past a probe timeout {timedOut}, slowest setup {slowest.TotalMilliseconds} ms"));
        Assert.Multiple(() =>
        {
            Assert.That(hybrid, Is.GreaterThan(50));
            Assert.That(downgradeOnly, Is.GreaterThan(500));
            Assert.That(upgradeOnly, Is.GreaterThan(100));
            Assert.That(endToEnd, Is.GreaterThan(500));
            Assert.That(plain, Is.GreaterThan(500));
            Assert.That(timedOut, Is.GreaterThan(10), "lost probes do time out");
            Assert.That(slowest, Is.LessThan(TimeSpan.FromMilliseconds(750)), "well below the client's 1 s SYN retransmission");
        });
    }
}
