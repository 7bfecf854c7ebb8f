using FsCheck;
using FsCheck.Fluent;
using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>
/// The design's properties (§2) over random chains. Each case is a seed; <see cref="ChainGenerator"/> rebuilds the
/// chain from it, and a failure message carries the seed, the chain and what happened to each connection.
/// </summary>
public class ChainProperties
{
    private const int Chains = 10_000;

    private static Arbitrary<int> Seeds => Gen.Choose(0, int.MaxValue).ToArbitrary();

    [FsCheck.NUnit.Property(MaxTest = Chains, QuietOnSuccess = true)]
    public Property AnyChain_SafetyPropertiesHold() =>
        Prop.ForAll(Seeds, seed => Check(seed, ChainGenerator.Generate(seed, hostile: true), exactPolicy: false));

    [FsCheck.NUnit.Property(MaxTest = Chains, QuietOnSuccess = true)]
    public Property PAwareChain_HolderIsThePolicysChoice() =>
        Prop.ForAll(Seeds, seed => Check(seed, ChainGenerator.Generate(seed, hostile: false), exactPolicy: true));

    /// <summary>Runs one chain and throws with a reproducible description when a property fails.</summary>
    internal static void Check(int seed, ChainSpec spec, bool exactPolicy)
    {
        var outcome = ChainSimulator.Run(spec, seed);
        var failures = new List<string>();
        var expected = exactPolicy ? ChainOracle.ExpectedHolders(spec) : null;
        foreach (var connection in outcome.Connections)
        {
            string at = $"connection #{connection.Index}: ";
            failures.AddRange(connection.Violations.Select(v => at + v));
            if (!connection.Completed)
            {
                failures.Add(at + "did not complete");
            }

            if (!connection.JoinsLanded)
            {
                failures.Add(at + "an MP_JOIN went astray");
            }

            var downgraders = connection.Holders.Where(h => h.Role == ProxyRole.Downgrade).ToList();
            var upgraders = connection.Holders.Where(h => h.Role == ProxyRole.Upgrade).ToList();
            if (downgraders.Count > 1 || upgraders.Count > 1)
            {
                failures.Add(at + "more than one holder on a side");
            }

            if (upgraders.Count == 1 && downgraders.Count == 1 && upgraders[0].HopIndex > downgraders[0].HopIndex)
            {
                failures.Add(at + "the downgrade holder is nearer the client than the upgrade holder");
            }

            if (ChainOracle.CanRunMptcpEndToEnd(spec) && (connection.Holders.Count > 0 || !connection.MptcpEndToEnd))
            {
                failures.Add(at + "an end-to-end MPTCP connection was terminated or lost MPTCP");
            }

            if (expected is not null && !connection.Holders.SequenceEqual(expected))
            {
                failures.Add(at + $"holders [{string.Join(",", connection.Holders)}], policy names [{string.Join(",", expected)}]");
            }

            if (expected is not null && spec.ClientMptcp && expected.Any(h => h.Role == ProxyRole.Downgrade) && !connection.ClientGotMptcp)
            {
                failures.Add(at + "the client did not get MPTCP from its downgrade holder");
            }
        }

        if (failures.Count > 0)
        {
            throw new AssertionException($"{string.Join(Environment.NewLine, failures)}{Environment.NewLine}reproduce: ChainSimulator.Run(ChainGenerator.Generate({seed}, hostile: {(!exactPolicy).ToString().ToLowerInvariant()}), {seed}){Environment.NewLine}{outcome}");
        }
    }
}
