using System.Globalization;
using ProxySelection.Negotiation;
using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.LabTool.Interop;

/// <summary>
/// One downgrade proxy of a cell: its mode, policy and priority; <see cref="AtCapacity"/> runs it with
/// <c>--capacity 1</c> and fills that slot with another connection first (capacity-aware deferral, spec §7.7).
/// </summary>
internal sealed record InteropProxy(SignalingMode Mode, SelectionPolicy Policy, byte Priority = 8, bool AtCapacity = false)
{
    public string PolicyName => Policy switch
    {
        SelectionPolicy.NearestServer => "nearest-server",
        SelectionPolicy.Priority => "priority",
        _ => "first",
    };

    public string ModeName => Mode == SignalingMode.Implicit ? "implicit" : "explicit";

    public override string ToString() =>
        Mode == SignalingMode.Implicit ? "impl" :
        PolicyName + (Policy == SelectionPolicy.Priority ? string.Create(CultureInfo.InvariantCulture, $"({Priority})") : "") + (AtCapacity ? "+full" : "");
}

/// <summary>
/// One cell of the interop matrix: client and server kind, the proxies P1..Pn in path order, the address family;
/// <paramref name="Tier"/> above 1 makes P1 a tier of that many instances behind ECMP (<see cref="TierChainRunner"/>), all
/// configured as P1 (the chain simulator sees one hop: which instance the hash picks does not enter the decision).
/// </summary>
internal sealed record InteropCell(bool ClientMptcp, bool ServerMptcp, IReadOnlyList<InteropProxy> Proxies, bool V6 = false, int Tier = 1)
{
    /// <summary>v4 or v6.</summary>
    public string Family => V6 ? "v6" : "v4";

    /// <summary>explicit, implicit or mixed (some of each), or "-" without proxies.</summary>
    public string ModeName =>
        Proxies.Count == 0 ? "-" :
        Proxies.All(p => p.Mode == SignalingMode.Explicit) ? "explicit" :
        Proxies.All(p => p.Mode == SignalingMode.Implicit) ? "implicit" : "mixed";

    /// <summary>The policy of the explicit proxies (capacity when one is full), or "-".</summary>
    public string PolicyName
    {
        get
        {
            var explicitProxies = Proxies.Where(p => p.Mode == SignalingMode.Explicit).ToList();
            if (explicitProxies.Count == 0)
            {
                return "-";
            }

            return explicitProxies.Any(p => p.AtCapacity) ? "capacity" : explicitProxies[0].PolicyName;
        }
    }

    /// <summary>
    /// A stable, unique name, e.g. <c>mptcp-tcp-3-explicit-first</c>, <c>mptcp-tcp-2-mixed-first.impl</c>, or with
    /// <c>-v6</c> at the end for IPv6; a tier in front is <c>tierN</c> in place of the count, and the proxies behind it
    /// <c>+k</c> (<c>mptcp-tcp-tier3-explicit-first</c>, <c>mptcp-tcp-tier3+1-mixed-impl.first</c>).
    /// </summary>
    public string Name => V6 ? ShapeName + "-v6" : ShapeName;

    private string ShapeName
    {
        get
        {
            var ends = $"{(ClientMptcp ? "mptcp" : "tcp")}-{(ServerMptcp ? "mptcp" : "tcp")}-{Count}";
            if (Proxies.Count == 0)
            {
                return ends;
            }

            var shape = ModeName switch
            {
                "implicit" => "",
                "mixed" => "-" + string.Join(".", Proxies),
                _ when PolicyName == "priority" => "-priority" + string.Concat(Proxies.Select(p => p.Priority.ToString("x", CultureInfo.InvariantCulture))),
                _ => "-" + PolicyName,
            };
            return $"{ends}-{ModeName}{shape}";
        }
    }

    /// <summary>The proxy count in the name: <c>n</c>, or <c>tierN</c> and <c>+k</c> for the proxies behind the tier.</summary>
    private string Count =>
        Tier <= 1 ? Proxies.Count.ToString(CultureInfo.InvariantCulture)
        : string.Create(CultureInfo.InvariantCulture, $"tier{Tier}") + (Proxies.Count > 1 ? string.Create(CultureInfo.InvariantCulture, $"+{Proxies.Count - 1}") : "");

    /// <summary>The same chain for the simulator: it runs the real negotiator at every hop (one connection, cold caches).</summary>
    public ChainSpec ToChainSpec() =>
        new(ClientMptcp, ServerMptcp, [.. Proxies.Select((p, i) => (HopSpec)new ProxyHop((byte)(i + 1), ProxyRole.Downgrade, p.Policy, p.Priority, p.AtCapacity, p.Mode))])
        {
            Connections = 1,
        };
}

/// <summary>What a cell should show, computed by the chain simulator rather than written by hand a second time.</summary>
internal sealed record InteropExpectation(string Holder, int Subflows)
{
    public static InteropExpectation For(InteropCell cell)
    {
        ArgumentNullException.ThrowIfNull(cell);
        var outcome = ChainSimulator.Run(cell.ToChainSpec(), seed: 1).Connections[0];
        // The simulator names a holder per terminated leg; a chain of downgrade proxies has at most one (single holder).
        var holder = outcome.Holders.Count == 0 ? "none" : string.Join("+", outcome.Holders.Select(h => $"P{h.ProxyId}"));
        // An MPTCP connection gets the client's second path as a join; a plain (or fallen back) one stays on one subflow.
        return new InteropExpectation(holder, outcome.ClientGotMptcp ? 2 : 1);
    }
}

/// <summary>The cells <c>proxysel interop</c> runs.</summary>
internal static class InteropMatrix
{
    private static readonly InteropProxy First = new(SignalingMode.Explicit, SelectionPolicy.First);
    private static readonly InteropProxy Nearest = new(SignalingMode.Explicit, SelectionPolicy.NearestServer);
    private static readonly InteropProxy Implicit = new(SignalingMode.Implicit, SelectionPolicy.First);

    private static InteropProxy Priority(byte priority) => new(SignalingMode.Explicit, SelectionPolicy.Priority, priority);

    /// <summary>The proxy configurations of an n-proxy chain in the full matrix.</summary>
    public static IEnumerable<IReadOnlyList<InteropProxy>> Chains(int n)
    {
        if (n == 0)
        {
            yield return [];
            yield break;
        }

        yield return Repeat(First, n);
        yield return Repeat(Nearest, n);
        yield return Repeat(Implicit, n);
        // Priorities that pick a proxy in the middle (or P1 alone): 5, 3, 7 from spec §7.7 shifted per length.
        byte[] priorities = n switch { 1 => [5], 2 => [3, 7], _ => [3, 7, 5] };
        yield return [.. priorities.Select(Priority)];
        yield return [First with { AtCapacity = true }, .. Repeat(First, n - 1)];
        if (n >= 2)
        {
            // An implicit instance stands in for a proxy that does not know the P flag, at either end of the chain.
            yield return [.. Repeat(First, n - 1), Implicit];
            yield return [Implicit, .. Repeat(First, n - 1)];
        }
    }

    /// <summary>
    /// Every client × server × 0..3 proxies × configuration over IPv4, and over IPv6 every configuration of 0..3 proxies
    /// for the case the proxies exist for (an MPTCP client, a TCP-only server); then the <see cref="Tiers"/> cells.
    /// </summary>
    public static IReadOnlyList<InteropCell> Full() =>
    [
        .. from clientMptcp in new[] { true, false }
           from serverMptcp in new[] { false, true }
           from n in Enumerable.Range(0, 4)
           from chain in Chains(n)
           select new InteropCell(clientMptcp, serverMptcp, chain),
        .. from n in Enumerable.Range(0, 4)
           from chain in Chains(n)
           select new InteropCell(true, false, chain, V6: true),
        .. Tiers(),
    ];

    /// <summary>The instances of a tier in the tier cells.</summary>
    public const int TierInstances = 3;

    /// <summary>
    /// Scale-out cells (issue 14): an MPTCP client, a TCP-only server, P1 a tier of <see cref="TierInstances"/> instances
    /// behind ECMP, alone or in front of one more proxy; the selection between the positions as in a chain of single
    /// proxies: the tier holds (explicit first), or the proxy behind it does (the tier implicit, or nearest-server).
    /// Not in the CI subset: a tier cell takes a minute or more (BGP per instance, a warm-up of every instance's cache).
    /// </summary>
    public static IReadOnlyList<InteropCell> Tiers() =>
    [
        new(true, false, [First], Tier: TierInstances),
        new(true, false, [First, First], Tier: TierInstances),
        new(true, false, [Implicit, First], Tier: TierInstances),
        new(true, false, [Nearest, Nearest], Tier: TierInstances),
    ];

    /// <summary>
    /// The CI subset: each client and server kind, 0 to 3 proxies, every mode (explicit, implicit, mixed) and every
    /// policy (first, nearest-server, priority, capacity) at least once, the 3-proxy chain under each policy; over IPv6
    /// a 3-proxy explicit chain and a 2-proxy implicit one.
    /// </summary>
    public static IReadOnlyList<InteropCell> CiSubset() =>
    [
        new(false, false, []),
        new(true, true, []),
        new(true, false, [First]),
        new(false, false, [First, First]),
        new(true, true, [First, First]),
        new(false, true, [Nearest, Nearest]),
        new(true, false, [Implicit, Implicit]),
        new(true, false, [First, Implicit]),
        new(true, false, [Implicit, First, First]),
        new(true, false, [First, First, First]),
        new(true, false, [Nearest, Nearest, Nearest]),
        new(true, false, [Priority(3), Priority(7), Priority(5)]),
        new(true, false, [First with { AtCapacity = true }, First, First]),
        new(true, false, [Implicit, Implicit, Implicit]),
        new(true, false, [First, First, First], V6: true),
        new(true, false, [Implicit, Implicit], V6: true),
    ];

    private static InteropProxy[] Repeat(InteropProxy proxy, int n) => [.. Enumerable.Repeat(proxy, n)];
}
