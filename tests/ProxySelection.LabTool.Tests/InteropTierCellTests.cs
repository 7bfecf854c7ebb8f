using System.Text;
using ProxySelection.LabTool.Interop;
using ProxySelection.Negotiation;

namespace ProxySelection.LabTool.Tests;

public class InteropTierCellTests
{
    private static readonly InteropProxy First = new(SignalingMode.Explicit, SelectionPolicy.First);
    private static readonly InteropProxy Implicit = new(SignalingMode.Implicit, SelectionPolicy.First);

    [Test]
    public void TierCells_AreNamedByTheirTierAndTheProxiesBehindIt()
    {
        Assert.That(InteropMatrix.Tiers().Select(c => c.Name), Is.EqualTo(new[]
        {
            "mptcp-tcp-tier3-explicit-first",
            "mptcp-tcp-tier3+1-explicit-first",
            "mptcp-tcp-tier3+1-mixed-impl.first",
            "mptcp-tcp-tier3+1-explicit-nearest-server",
        }));
    }

    [Test]
    public void TierCells_ExpectTheHolderOfTheSameChainOfSingleProxies()
    {
        foreach (var cell in InteropMatrix.Tiers())
        {
            Assert.That(InteropExpectation.For(cell), Is.EqualTo(InteropExpectation.For(cell with { Tier = 1 })), cell.Name);
        }

        var expected = InteropMatrix.Tiers().ToDictionary(c => c.Name, c => InteropExpectation.For(c));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(expected["mptcp-tcp-tier3-explicit-first"], Is.EqualTo(new InteropExpectation("P1", 2)));
            Assert.That(expected["mptcp-tcp-tier3+1-explicit-first"], Is.EqualTo(new InteropExpectation("P1", 2)), "first: the tier, nearest the client");
            Assert.That(expected["mptcp-tcp-tier3+1-mixed-impl.first"], Is.EqualTo(new InteropExpectation("P2", 2)), "an implicit tier defers to the explicit proxy behind it");
            Assert.That(expected["mptcp-tcp-tier3+1-explicit-nearest-server"], Is.EqualTo(new InteropExpectation("P2", 2)));
        }
    }

    [Test]
    public void TierCells_AreInTheFullMatrixAndSelectableByName_ButNotInTheCiSubset()
    {
        var names = InteropMatrix.Tiers().Select(c => c.Name).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(InteropMatrix.Full().Select(c => c.Name), Is.SupersetOf(names).And.Unique);
            Assert.That(InteropMatrix.CiSubset().Select(c => c.Name), Has.None.AnyOf(names));
            Assert.That(InteropCommand.Select(false, names)?.Select(c => c.Tier), Is.All.EqualTo(InteropMatrix.TierInstances));
        }
    }

    [Test]
    public void InteropList_NamesTheTierCellsWithFull_AndNotWithout()
    {
        string List(params string[] args)
        {
            using var stdout = new MemoryStream();
            using var stderr = new StringWriter();
            Assert.That(Cli.Run(["interop", "--list", .. args], stdout, stderr), Is.EqualTo(ExitCodes.Ok), stderr.ToString());
            return Encoding.UTF8.GetString(stdout.ToArray());
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(List("--full"), Does.Contain("mptcp-tcp-tier3+1-mixed-impl.first").And.Match(@"mptcp-tcp-tier3-explicit-first\s+expected holder P1 "));
            Assert.That(List(), Does.Not.Contain("tier3"));
        }
    }

    [Test]
    public void Judge_AllConnectionsOnTierInstancesWithTheirJoins_IsAsExpected()
    {
        var cell = new InteropCell(true, false, [First, First], Tier: 3);
        var run = Run(holders: ["inst1", "inst2", "inst3", "inst1"], joins: [2, 1, 1, 0]);

        var result = TierChainRunner.Judge(cell, InteropExpectation.For(cell), run);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.HolderByOutput, Is.EqualTo("P1"));
            Assert.That(result.HolderByCapture, Is.EqualTo("P1"), "the joins arrived in the tier's namespaces");
            Assert.That(result.Subflows, Is.EqualTo(2));
            Assert.That(result.PassthroughIdentical, Is.True);
            Assert.That(result.Error, Is.Null);
            Assert.That(result.Ok, Is.True);
        }
    }

    [Test]
    public void Judge_AJoinOffItsHolder_IsNotAsExpected()
    {
        var cell = new InteropCell(true, false, [First, First], Tier: 3);
        // inst2 holds two connections but received one join; inst3 received a join it holds no connection for.
        var run = Run(holders: ["inst1", "inst2", "inst2", "inst1"], joins: [2, 1, 1, 0]);

        var result = TierChainRunner.Judge(cell, InteropExpectation.For(cell), run);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.Ok, Is.False);
            Assert.That(result.Error, Does.Contain("joins not all on their holders"));
        }
    }

    [Test]
    public void Judge_TheSecondTierHoldingWhereTheTierShould_IsNotAsExpected()
    {
        var cell = new InteropCell(true, false, [First, First], Tier: 3);
        var run = Run(holders: ["inst1", "tier2", "inst3", "inst1"], joins: [2, 0, 1, 1]);

        var result = TierChainRunner.Judge(cell, InteropExpectation.For(cell), run);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(result.HolderByOutput, Is.EqualTo("P1+P2"));
            Assert.That(result.PassthroughIdentical, Is.False, "the second tier took a connection");
            Assert.That(result.Ok, Is.False);
        }
    }

    [Test]
    public void Judge_ImplicitTierInFrontOfAnExplicitProxy_ExpectsTheSecondTier()
    {
        var cell = new InteropCell(true, false, [Implicit, First], Tier: 3);
        var run = Run(holders: ["tier2", "tier2", "tier2", "tier2"], joins: [0, 0, 0, 4]);

        var result = TierChainRunner.Judge(cell, InteropExpectation.For(cell), run);

        Assert.That((result.HolderByOutput, result.HolderByCapture, result.Ok), Is.EqualTo(("P2", "P2", true)));
    }

    /// <summary>Four intact downloads held as <paramref name="holders"/> says, inst1..inst3 and tier2 receiving <paramref name="joins"/>.</summary>
    private static TierChainRun Run(string[] holders, long[] joins)
    {
        string[] proxies = ["inst1", "inst2", "inst3", TierChainRun.SecondTierName];
        var downloads = holders.Select((h, i) => new TierDownload(0, true, 40000 + i, [h], "")).ToList();
        var counters = proxies.Select((_, i) => (IReadOnlyDictionary<string, long>)TierChainRunner.CounterNames.ToDictionary(n => n, n => n == "MPTcpExtMPJoinSynRx" ? joins[i] : 0L)).ToList();
        var client = TierChainRunner.CounterNames.ToDictionary(n => n, n => n == "MPTcpExtMPJoinSynAckRx" ? (long)holders.Length : 0L);
        var held = proxies.Select(p => holders.Count(h => h == p)).ToList();
        return new TierChainRun(downloads, proxies, counters, client, held, WarmUpRounds: 1, TimeSpan.FromSeconds(1));
    }
}
