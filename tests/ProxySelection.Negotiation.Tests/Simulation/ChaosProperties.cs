using FsCheck;
using FsCheck.Fluent;
using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>
/// Chains outside the design's assumptions (<see cref="ChainGenerator.Chaos"/>). Fail-safety holds everywhere;
/// "one holder per side" and "SYN/ACK well before 1 s" are checked where their premises hold, and the cases where
/// they do not are the documented limits: a downgrader nearer the client than an upgrader combined with a box
/// that strips MPTCP or a non-P-aware proxy (each MPTCP stretch then gets its own pair of holders), and paths
/// whose round trip rivals the probe timeout or that lose more than one probe.
/// </summary>
public class ChaosProperties
{
    [FsCheck.NUnit.Property(MaxTest = 3_000, QuietOnSuccess = true)]
    public Property ChaosChain_AlwaysFailsSafe() =>
        Prop.ForAll(Gen.Choose(0, int.MaxValue).ToArbitrary(), seed =>
        {
            var spec = ChainGenerator.Chaos(seed);
            var outcome = ChainSimulator.Run(spec, seed);
            var failures = new List<string>();
            var roles = spec.Proxies.Select(p => p.Role).ToList();
            bool rolesOrdered = !roles.SkipWhile(r => r == ProxyRole.Upgrade).Contains(ProxyRole.Upgrade);
            bool stripsMptcp = spec.Hops.OfType<MiddleboxHop>().Any(m => m.Behavior == MiddleboxBehavior.StripMptcp);
            bool nonPAware = spec.Proxies.Any(p => p.Mode == SignalingMode.Implicit || p.ForeignKey);
            int losses = spec.Hops.OfType<MiddleboxHop>().Count(m => m.Behavior is MiddleboxBehavior.LoseFirstProbe or MiddleboxBehavior.LoseFirstProbeAnswer);
            foreach (var c in outcome.Connections)
            {
                bool fastPath = c.DirectRoundTrip <= TimeSpan.FromMilliseconds(100) && spec.ProbeTimeout >= 2 * c.DirectRoundTrip;
                failures.AddRange(c.Violations.Where(v => !v.StartsWith("client SYN/ACK after", StringComparison.Ordinal)));
                if (!c.Completed || !c.JoinsLanded)
                {
                    failures.Add($"#{c.Index} did not complete, or a join went astray");
                }

                if (ChainOracle.CanRunMptcpEndToEnd(spec) && (c.Holders.Count > 0 || !c.MptcpEndToEnd))
                {
                    failures.Add($"#{c.Index} terminated an end-to-end MPTCP connection");
                }

                bool twoOnASide = c.Holders.GroupBy(h => h.Role).Any(g => g.Count() > 1);
                if (twoOnASide && (rolesOrdered || (!stripsMptcp && !nonPAware)))
                {
                    failures.Add($"#{c.Index} has two holders on one side");
                }

                if (fastPath && losses <= 1 && c.SetupTime >= TimeSpan.FromSeconds(1))
                {
                    failures.Add($"#{c.Index} took {c.SetupTime.TotalMilliseconds} ms on a fast path");
                }
            }

            if (failures.Count > 0)
            {
                throw new AssertionException($"{string.Join("; ", failures)}{Environment.NewLine}reproduce: ChainSimulator.Run(ChainGenerator.Chaos({seed}), {seed}){Environment.NewLine}{outcome}");
            }
        });
}
