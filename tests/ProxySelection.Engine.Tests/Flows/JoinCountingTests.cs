namespace ProxySelection.Engine.Tests.Flows;

/// <summary>The <c>pass</c> connection count counts connections: a foreign MP_JOIN is a subflow, counted apart.</summary>
public sealed class JoinCountingTests
{
    [Test]
    public async Task ForeignJoin_CountedAsAPassedJoin_NotAsAPassedConnection()
    {
        await using var h = new EngineHarness();
        uint join = h.JoinSyn(40_301, 0xabc);

        Assert.Multiple(() =>
        {
            Assert.That(h.Verdicts.For(join)!.Kind, Is.EqualTo("accept"));
            Assert.That(h.Engine.Counters.JoinsPassed, Is.EqualTo(1));
            Assert.That(h.Engine.Counters.Passed, Is.Zero);
            Assert.That(h.Engine.Counters.Snapshot()["joins_passed"], Is.EqualTo(1));
        });
    }
}
