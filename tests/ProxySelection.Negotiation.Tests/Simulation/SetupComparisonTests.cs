using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>The analysis' claims about implicit and explicit proxies, as numbers from the simulator.</summary>
public class SetupComparisonTests
{
    private static readonly IReadOnlyList<ComparisonRow> Rows = SetupComparison.Compute(maxProxies: 4);

    private static ComparisonRow Row(int proxies, string mode) => Rows.Single(r => r.Proxies == proxies && r.Mode == mode);

    [Test]
    public void Format_HasALinePerChainLengthAndMode()
    {
        var table = SetupComparison.Format(Rows);
        TestContext.Out.WriteLine(table);
        Assert.That(table.Split('\n').Count(line => line.Contains(" | explicit first ", StringComparison.Ordinal)), Is.EqualTo(4));
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public void Explicit_OnlyTheSelectedProxyHoldsContext_NoExtraConnection_NoAddedRoundTrip(int n)
    {
        var row = Row(n, "explicit first");
        Assert.Multiple(() =>
        {
            Assert.That(row.Holder, Is.EqualTo("P1"));
            Assert.That(row.ContextHoldersCold, Is.EqualTo(1));
            Assert.That(row.ExtraUpstreamConnectionsCold, Is.Zero, "the probe becomes the upstream leg");
            Assert.That(row.ProbesCold, Is.EqualTo(1));
            Assert.That(row.RoundTripsAddedCold, Is.Zero.Within(1e-9), "the SYN waits exactly the round trip it would have made anyway");
        });
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public void Implicit_EveryProxyHoldsContext_TheOneNearestTheServerActs(int n)
    {
        var row = Row(n, "implicit");
        Assert.Multiple(() =>
        {
            Assert.That(row.Holder, Is.EqualTo($"P{n}"));
            Assert.That(row.ContextHoldersCold, Is.EqualTo(n));
            Assert.That(row.ExtraUpstreamConnectionsCold, Is.EqualTo(2 * (n - 1)), "each nested probe is intercepted, then the released SYN is intercepted again");
        });
    }

    [Test]
    public void Implicit_SetupDelayGrowsWithEveryProxy()
    {
        var added = Enumerable.Range(1, 4).Select(n => Row(n, "implicit").RoundTripsAddedCold).ToList();
        Assert.That(added, Is.Ordered.Ascending.And.Unique);
    }

    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public void ExplicitNearestServer_SameHolderAsImplicit_NeverCostlier(int n)
    {
        var explicitRow = Row(n, "explicit nearest-server");
        var implicitRow = Row(n, "implicit");
        Assert.Multiple(() =>
        {
            Assert.That(explicitRow.Holder, Is.EqualTo(implicitRow.Holder));
            Assert.That(explicitRow.ExtraUpstreamConnectionsCold, Is.LessThanOrEqualTo(implicitRow.ExtraUpstreamConnectionsCold));
            Assert.That(explicitRow.SetupCold, Is.LessThanOrEqualTo(implicitRow.SetupCold));
        });
    }

    [Test]
    public void WarmCaches_EveryModeDecidesWithoutHoldingAnywhereButTheHolder()
    {
        Assert.That(Rows.Select(r => r.ContextHoldersWarm), Is.All.EqualTo(1));
    }
}
