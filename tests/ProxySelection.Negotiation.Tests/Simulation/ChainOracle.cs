using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Simulation;

/// <summary>
/// What the design says should happen, computed from the chain's description alone (no simulation): which proxy
/// the policy names on each side. Valid for chains of P-aware proxies with one policy, no stripping middlebox and
/// no lost probe; other chains are held to the safety properties only.
/// </summary>
internal static class ChainOracle
{
    public static bool CanRunMptcpEndToEnd(ChainSpec spec) =>
        spec.ClientMptcp && spec.ServerMptcp && !spec.Hops.OfType<MiddleboxHop>().Any(m => m.Behavior == MiddleboxBehavior.StripMptcp);

    public static IReadOnlyList<Holder> ExpectedHolders(ChainSpec spec)
    {
        var positions = spec.Hops
            .Select((hop, i) => (Hop: hop as ProxyHop, Index: i + 1))
            .Where(p => p.Hop is not null)
            .Select(p => (Hop: p.Hop!, p.Index))
            .ToList();

        List<(ProxyHop Hop, int Index)> Candidates(ProxyRole role, int after) =>
            positions.Where(p => p.Hop.Role == role && !p.Hop.AtCapacity && p.Index > after).ToList();

        var holders = new List<Holder>();
        int origin = 0;
        if (!spec.ClientMptcp)
        {
            var upgrader = Pick(Candidates(ProxyRole.Upgrade, 0));
            if (upgrader is not { } u)
            {
                return holders;
            }

            // An upgrader acts only when MPTCP is reachable: the server speaks it or a downgrader will terminate it.
            if (!spec.ServerMptcp && Pick(Candidates(ProxyRole.Downgrade, u.Index)) is null)
            {
                return holders;
            }

            holders.Add(new Holder(u.Index, u.Hop.ProxyId, ProxyRole.Upgrade));
            origin = u.Index;
        }

        if (!spec.ServerMptcp && Pick(Candidates(ProxyRole.Downgrade, origin)) is { } d)
        {
            holders.Add(new Holder(d.Index, d.Hop.ProxyId, ProxyRole.Downgrade));
        }

        return holders;
    }

    private static (ProxyHop Hop, int Index)? Pick(List<(ProxyHop Hop, int Index)> candidates)
    {
        if (candidates.Count == 0)
        {
            return null;
        }

        return candidates[0].Hop.Policy switch
        {
            SelectionPolicy.First => candidates[0],
            SelectionPolicy.NearestServer => candidates[^1],
            // Highest priority; a tie goes to the proxy nearer the client.
            _ => candidates.OrderByDescending(c => c.Hop.Priority).ThenBy(c => c.Index).First(),
        };
    }
}
