using FsCheck;
using FsCheck.Fluent;
using ProxySelection.Negotiation.Simulation;
using static ProxySelection.Negotiation.Tests.Simulation.SpoofingTests;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>Rules of the revised spec in whole chains: another experiment's 0xF option (§5.6), a looped proxy id (§5.5).</summary>
public class SpecRuleScenarioTests
{
    [FsCheck.NUnit.Property(MaxTest = 500, QuietOnSuccess = true)]
    public Property ForeignExperimentOption_AnywhereInAnyChain_SameOutcomeAsAPlainHop() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var random = new Random(seed);
            var chain = ChainGenerator.Generate(seed, hostile: random.Next(2) == 0);
            int position = random.Next(0, chain.Hops.Count + 1);
            var foreign = ChainSimulator.Run(WithHop(chain, position, new MiddleboxHop(MiddleboxBehavior.AddForeignExperiment)), seed);
            var plain = ChainSimulator.Run(WithHop(chain, position, new MiddleboxHop(MiddleboxBehavior.Forward)), seed);
            Assert.That(Summary(foreign), Is.EqualTo(Summary(plain)), $"seed {seed}: {foreign.Spec}");
        });

    [Test]
    public void ForeignExperimentOption_OnEverySegment_ExplicitNearestServerStillSelectsTheLastProxy()
    {
        // The Probe, the Defer and the Claim all travel beside the foreign option; before §5.6's revision each made the
        // segment carry a Duplicate, so the chain fell back to implicit behaviour.
        static ChainSpec Chain(MiddleboxBehavior box) => new(ClientMptcp: true, ServerMptcp: false,
        [
            new MiddleboxHop(box),
            new ProxyHop(1, ProxyRole.Downgrade, SelectionPolicy.NearestServer),
            new MiddleboxHop(box),
            new ProxyHop(2, ProxyRole.Downgrade, SelectionPolicy.NearestServer),
            new MiddleboxHop(box),
        ]);
        var outcome = ChainSimulator.Run(Chain(MiddleboxBehavior.AddForeignExperiment), seed: 5);
        var plain = ChainSimulator.Run(Chain(MiddleboxBehavior.Forward), seed: 5);
        Assert.Multiple(() =>
        {
            foreach (var c in outcome.Connections)
            {
                Assert.That(c.Holders, Is.EqualTo(new[] { new Holder(4, 2, ProxyRole.Downgrade) }), outcome.ToString());
                Assert.That(c.ClientSawClaim, Is.True, "the Claim beside the foreign option verified at the client");
                Assert.That(c.Violations, Is.Empty);
            }

            Assert.That(Summary(outcome), Is.EqualTo(Summary(plain)), "P1 learnt Defer(2) from the answer beside the foreign option, as without it");
        });
    }

    [Test]
    public void TwoProxiesWithOneId_NearestServer_TheSecondTakesTheProbeForALoopAndPasses()
    {
        // Misconfigured: both proxies have id 1. The second sees a verified Probe naming its own id and passes it
        // untouched (spec §5.5); the first learns the server is TCP-only from its own probe and holds.
        var spec = new ChainSpec(ClientMptcp: true, ServerMptcp: false,
            [new ProxyHop(1, ProxyRole.Downgrade, SelectionPolicy.NearestServer), new ProxyHop(1, ProxyRole.Downgrade, SelectionPolicy.NearestServer)]);
        var outcome = ChainSimulator.Run(spec, seed: 3);
        Assert.Multiple(() =>
        {
            foreach (var c in outcome.Connections)
            {
                Assert.That(c.Completed, Is.True);
                Assert.That(c.Holders, Is.EqualTo(new[] { new Holder(1, 1, ProxyRole.Downgrade) }), outcome.ToString());
                Assert.That(c.Violations, Is.Empty);
            }
        });
    }
}
