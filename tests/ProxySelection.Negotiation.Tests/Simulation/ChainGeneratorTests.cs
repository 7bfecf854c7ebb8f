using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>The random chains really contain what the properties claim to cover.</summary>
public class ChainGeneratorTests
{
    [Test]
    public void Generate_TenThousandHostileSeeds_CoverEveryFeature()
    {
        var chains = Enumerable.Range(0, 10_000).Select(seed => ChainGenerator.Generate(seed, hostile: true)).ToList();
        var proxies = chains.SelectMany(c => c.Proxies).ToList();
        var boxes = chains.SelectMany(c => c.Hops.OfType<MiddleboxHop>()).Select(m => m.Behavior).ToHashSet();
        Assert.Multiple(() =>
        {
            Assert.That(chains.Select(c => c.Proxies.Count()).Distinct().Order(), Is.EqualTo(new[] { 0, 1, 2, 3, 4, 5 }));
            Assert.That(proxies.Select(p => p.Policy).Distinct().Count(), Is.EqualTo(3));
            Assert.That(proxies.Select(p => p.Role).Distinct().Count(), Is.EqualTo(2));
            Assert.That(proxies.Count(p => p.AtCapacity), Is.GreaterThan(1000));
            Assert.That(proxies.Count(p => p.ReturnBypasses), Is.GreaterThan(1000));
            Assert.That(chains.Count(c => c.Proxies.Any(p => p.Mode == SignalingMode.Implicit)), Is.GreaterThan(2000));
            Assert.That(boxes, Is.EquivalentTo(new[] { MiddleboxBehavior.StripMpProxy, MiddleboxBehavior.StripMptcp, MiddleboxBehavior.LoseFirstProbe, MiddleboxBehavior.LoseFirstProbeAnswer }));
            Assert.That(chains.Select(c => (c.ClientMptcp, c.ServerMptcp)).Distinct().Count(), Is.EqualTo(4));
            Assert.That(chains.Count(c => c.Proxies.Select(p => p.Priority).Distinct().Count() < c.Proxies.Count()), Is.GreaterThan(1000), "priority ties");
        });
    }

    [Test]
    public void Generate_SameSeed_SameChain()
    {
        var first = ChainGenerator.Generate(42, hostile: true).ToString();
        var second = ChainGenerator.Generate(42, hostile: true).ToString();
        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void Run_SameSeed_SameOutcome()
    {
        var spec = ChainGenerator.Generate(7, hostile: true);
        var first = ChainSimulator.Run(spec, 7).ToString();
        var second = ChainSimulator.Run(spec, 7).ToString();
        Assert.That(second, Is.EqualTo(first));
    }
}
