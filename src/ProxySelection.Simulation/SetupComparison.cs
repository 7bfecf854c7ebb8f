using System.Globalization;
using System.Text;

namespace ProxySelection.Negotiation.Simulation;

/// <summary>One line of the implicit-vs-explicit comparison.</summary>
public sealed record ComparisonRow(
    int Proxies,
    string Mode,
    string Holder,
    int ContextHoldersCold,
    int ContextHoldersWarm,
    int ExtraUpstreamConnectionsCold,
    int ProbesCold,
    TimeSpan SetupCold,
    double RoundTripsAddedCold,
    double RoundTripsAddedWarm);

/// <summary>
/// The IETF 91 analysis' comparison (implicit vs explicit proxies on one path), in numbers from the simulator:
/// an MPTCP client, a TCP-only server, 1..N downgrade proxies, the first connection on cold caches and the next
/// on warm ones.
/// </summary>
public static class SetupComparison
{
    private static readonly (string Name, SignalingMode Mode, SelectionPolicy Policy)[] Modes =
    [
        ("implicit", SignalingMode.Implicit, SelectionPolicy.First),
        ("explicit first", SignalingMode.Explicit, SelectionPolicy.First),
        ("explicit nearest-server", SignalingMode.Explicit, SelectionPolicy.NearestServer),
    ];

    /// <summary>Runs the scenarios; every link has <paramref name="linkLatency"/> (default 5 ms) one way.</summary>
    public static IReadOnlyList<ComparisonRow> Compute(int maxProxies = 4, TimeSpan? linkLatency = null, int seed = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxProxies, 1);
        var rows = new List<ComparisonRow>();
        for (int n = 1; n <= maxProxies; n++)
        {
            foreach (var (name, mode, policy) in Modes)
            {
                var hops = Enumerable.Range(1, n)
                    .Select(i => (HopSpec)new ProxyHop((byte)i, ProxyRole.Downgrade, policy, Mode: mode))
                    .ToList();
                var spec = new ChainSpec(ClientMptcp: true, ServerMptcp: false, hops)
                {
                    LinkLatency = linkLatency ?? TimeSpan.FromMilliseconds(5),
                    Connections = 2,
                };
                var outcome = ChainSimulator.Run(spec, seed);
                var cold = outcome.Connections[0];
                var warm = outcome.Connections[1];
                rows.Add(new ComparisonRow(
                    n,
                    name,
                    cold.Holders.Count == 1 ? $"P{cold.Holders[0].ProxyId}" : string.Join("+", cold.Holders.Select(h => $"P{h.ProxyId}")),
                    cold.ContextHolders,
                    warm.ContextHolders,
                    cold.ExtraUpstreamConnections,
                    cold.Probes,
                    cold.SetupTime,
                    cold.RoundTripsAdded,
                    warm.RoundTripsAdded));
            }
        }

        return rows;
    }

    /// <summary>The rows as a fixed-width text table (for a CLI verb, a test log or the spec appendix).</summary>
    public static string Format(IReadOnlyList<ComparisonRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var text = new StringBuilder();
        text.AppendLine("proxies | mode                    | holder | context cold | context warm | extra upstream conns | probes | setup cold | RTTs added cold | RTTs added warm");
        text.AppendLine("--------|-------------------------|--------|--------------|--------------|----------------------|--------|------------|-----------------|----------------");
        foreach (var r in rows)
        {
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Proxies,7} | {r.Mode,-23} | {r.Holder,-6} | {r.ContextHoldersCold,12} | {r.ContextHoldersWarm,12} | {r.ExtraUpstreamConnectionsCold,20} | {r.ProbesCold,6} | {r.SetupCold.TotalMilliseconds,7:0} ms | {r.RoundTripsAddedCold,15:+0.00;-0.00;0.00} | {r.RoundTripsAddedWarm,15:+0.00;-0.00;0.00}"));
        }

        text.AppendLine("MPTCP client, TCP-only server, N downgrade proxies, equal links. context = proxies that held a SYN or intercepted");
        text.AppendLine("anything during setup; extra upstream conns = connections proxies opened toward the server that do not carry the");
        text.AppendLine("client's data; RTTs added = (client's SYN to SYN/ACK - direct client-server RTT) / direct RTT; warm = second");
        text.AppendLine("connection, caches filled by the first (negative: the holder answers nearer the client than the server would).");
        return text.ToString();
    }
}
